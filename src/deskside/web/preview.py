"""What the Preview and Setup pages show: each helpdesk's answer for a customer, probes against
the live endpoint, the values to paste into each helpdesk, and each source's check."""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from jinja2 import Template, pass_context
from jinja2.runtime import Context
from markupsafe import Markup

from deskside.errors import SourceError
from deskside.helpdesks import in_list_order
from deskside.insights import DEFAULT_WORKSPACE
from deskside.insights.helpscout.webhook_paths import webhook_path
from deskside.insights.settings import HelpScoutSettings
from deskside.lookup import Lookup, normalise_emails
from deskside.probe import ProbeReport, probe
from deskside.protocols import PROTOCOLS, Protocol
from deskside.protocols.base import PasteValue, secret_values
from deskside.service import Answer, SidebarService

__all__ = [
    "DeskPreview",
    "DeskSetup",
    "PasteValue",
    "SourceCheck",
    "SourceRow",
    "check_sources",
    "desk_setups",
    "preview",
    "probe_desk",
]

_FRAGMENTS: dict[tuple[int, str], Template] = {}
"""Compiled preview fragments by (environment, source)."""


@dataclass(frozen=True)
class SourceRow:
    """One source's part of a lookup, as the preview shows it."""

    name: str
    label: str
    records: int
    error: str | None
    elapsed_ms: float
    cached: bool
    stale: bool


@dataclass
class DeskPreview:
    """One helpdesk's answer: its JSON ``body``, or the ``error`` that stopped it."""

    name: str
    kind: str
    title: str
    method: str
    path: str
    configured: bool
    body: Any = None
    error: str | None = None
    probe: ProbeReport | None = None
    can_probe: bool = False
    template: str = ""
    """The helpdesk's preview fragment (:attr:`Protocol.preview_template`)."""

    @property
    def pretty(self) -> str:
        """The body as indented JSON."""
        return json.dumps(self.body, indent=2, ensure_ascii=False, default=str)

    @pass_context
    def fragment(self, context: Context) -> Markup:
        """The answer as the helpdesk shows it: :attr:`template` rendered in the page's
        environment and context (``{{ desk.fragment() }}`` in the page)."""
        env = context.environment
        key = (id(env), self.template)
        template = _FRAGMENTS.get(key)
        if template is None:
            template = _FRAGMENTS[key] = env.from_string(self.template)
        return Markup(template.render({**context.get_all(), "desk": self}))  # noqa: S704 - autoescaped


@dataclass
class PreviewResult:
    emails: list[str]
    answer: Answer | None
    sources: list[SourceRow] = field(default_factory=list)
    desks: list[DeskPreview] = field(default_factory=list)
    elapsed_ms: float = 0.0


def parse_emails(raw: str, *, fold_plus: bool) -> list[str]:
    """The addresses in ``raw`` (separated by commas, semicolons or spaces, each maybe as
    ``Name <address>``), normalised; [] when none."""
    return list(normalise_emails(re.split(r"[\s,;<>]+", raw), fold_plus=fold_plus))


def _desks(service: SidebarService) -> list[tuple[Protocol, bool]]:
    """The configured helpdesks; with none configured, one of every kind (render only); in
    the registry's listing order."""
    if service.protocols:
        return [(protocol, True) for protocol in in_list_order(service.protocols)]
    unconfigured = []
    for config_class, protocol_class in PROTOCOLS.items():
        config = config_class.model_construct(kind=protocol_class.kind, path="", secret=[])
        unconfigured.append((protocol_class(protocol_class.kind, config), False))
    return unconfigured


async def preview(service: SidebarService, emails: list[str]) -> PreviewResult:
    """Look ``emails`` up through the server's own service (its cache included) and render
    every helpdesk's answer; a helpdesk that fails to render reports its error."""
    started = time.perf_counter()
    answer = await service.answer(Lookup(emails=tuple(emails), context={"desk": "preview"}))
    result = PreviewResult(
        emails=list(emails), answer=answer, elapsed_ms=(time.perf_counter() - started) * 1000
    )
    profile = answer.profile
    for name, source in profile.results.items():
        result.sources.append(
            SourceRow(
                name=name,
                label=profile.labels.get(name, name),
                records=len(source.records),
                error=source.error,
                elapsed_ms=source.elapsed_ms,
                cached=source.cached,
                stale=source.stale_since is not None,
            )
        )
    for protocol, configured in _desks(service):
        desk = DeskPreview(
            name=protocol.name,
            kind=protocol.kind,
            title=protocol.title,
            method=protocol.method,
            path=protocol.path,
            configured=configured,
            can_probe=configured and bool(protocol.config.secret),
            template=protocol.preview_template,
        )
        try:
            desk.body = protocol.respond(answer.sidebar, answer.profile)
        except Exception as exc:  # shown on the page; the server log has the rest
            desk.error = f"{type(exc).__name__}: {exc}"
        result.desks.append(desk)
    return result


async def probe_desk(
    service: SidebarService, name: str, base_url: str, email: str
) -> ProbeReport | None:
    """``deskside probe`` against this server's own endpoint of helpdesk ``name``, signed with
    its first secret; None for an unknown or secret-less helpdesk."""
    protocol = next((p for p in service.protocols if p.name == name), None)
    if protocol is None or not protocol.config.secret:
        return None
    url = base_url.rstrip("/") + protocol.path
    secret = protocol.config.secret[0].get_secret_value()
    return await probe(url, protocol.kind, secret, email=email)


# ── Setup ────────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class DeskSetup:
    """One panel of the Setup page: a configured helpdesk (``name`` is its table's), or the
    insights side's webhooks and OAuth app (``name`` and ``kind`` ``insights-…``, names no
    helpdesk table takes)."""

    name: str
    kind: str
    title: str
    where: str
    values: list[PasteValue]


def desk_setups(
    service: SidebarService,
    base_url: str,
    webhook: list[str] | None,
    *,
    workspace: str = DEFAULT_WORKSPACE,
) -> list[DeskSetup]:
    """What to paste into each configured helpdesk (in the registry's listing order), its URLs
    under ``base_url`` (the server's public address); ``webhook``: the Help Scout webhook's
    secrets when insights are on, its URL that of ``workspace`` (the session's)."""
    base = base_url.rstrip("/")
    setups = []
    for protocol in in_list_order(service.protocols):
        values = [PasteValue(f"{protocol.method} URL", base + protocol.path)]
        values += secret_values("Secret", protocol.config.secrets())
        values += protocol.setup_values(base)
        setups.append(
            DeskSetup(
                name=protocol.name,
                kind=protocol.kind,
                title=protocol.title,
                where=protocol.setup_where,
                values=values,
            )
        )
    if webhook is not None:
        values = [PasteValue("Webhook URL", base + webhook_path(workspace))]
        values += secret_values("Webhook secret", webhook)
        if not webhook:
            values.append(
                PasteValue(
                    "Webhook secret",
                    "none configured",
                    note="set [insights.helpscout] webhook_secret, or run deskside connect",
                )
            )
        setups.append(
            DeskSetup(
                name="insights-webhooks",
                kind="insights-webhooks",
                title="Help Scout webhooks (insights)",
                where="Help Scout → Manage → Apps → Webhooks: this URL and secret, payload "
                "version 2, conversation events.",
                values=values,
            )
        )
        helpscout = service.settings.insights.helpscout
        if helpscout.mode == "oauth":
            setups.append(_helpscout_app(base, helpscout))
    return setups


def _helpscout_app(base: str, helpscout: HelpScoutSettings) -> DeskSetup:
    """The Help Scout OAuth app's Redirection URL: this server's callback, where Connect on the
    Help Scout page comes back to."""
    from deskside.web.helpscout_oauth import CALLBACK_PATH

    url = base + CALLBACK_PATH
    note = "Connect on the Help Scout page comes back here"
    redirect = helpscout.redirect_url
    if redirect != url:
        note += f"; deskside connect uses [insights.helpscout] redirect_url instead: {redirect}"
    return DeskSetup(
        name="insights-oauth",
        kind="insights-oauth",
        title="Help Scout app (insights connection)",
        where="Help Scout → Your Profile → My Apps → your app: the Redirection URL.",
        values=[PasteValue("Redirection URL", url, note=note)],
    )


@dataclass(frozen=True)
class SourceCheck:
    name: str
    kind: str
    ok: bool
    message: str
    elapsed_ms: float


async def check_sources(service: SidebarService, seconds: float = 5.0) -> list[SourceCheck]:
    """Every source's connection check, concurrently, each within ``seconds``."""

    async def one(name: str) -> SourceCheck:
        source = service.resolver.sources[name]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(seconds):
                await source.check()
            ok, message = True, "ok"
        except TimeoutError:
            ok, message = False, f"no answer within {seconds:g} s"
        except SourceError as exc:
            ok, message = False, str(exc) or type(exc).__name__
        except Exception as exc:
            ok, message = False, f"check raised {type(exc).__name__}"
        return SourceCheck(name, source.kind, ok, message, (time.perf_counter() - started) * 1000)

    return list(await asyncio.gather(*(one(name) for name in service.resolver.sources)))
