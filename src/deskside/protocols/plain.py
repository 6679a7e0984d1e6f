"""Plain's customer cards: requested card keys in, one entry per key out (docs/protocols.md §5).

Every requested key is answered — with ``"components": null`` when deskside has nothing for
it — because Plain treats a missing key as an error and caches that for five minutes.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Hashable, Sequence
from typing import Annotated, Any, Literal

from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, model_validator

from deskside.card import Sidebar
from deskside.configtypes import ConfigModel
from deskside.errors import BadRequest
from deskside.expressions import encodable
from deskside.http import optional_string, parse_json_object
from deskside.layout import CardLayout
from deskside.lookup import Lookup
from deskside.openapi import openapi_route, schema_problems
from deskside.protocols.base import (
    HelpdeskConfig,
    PasteValue,
    Protocol,
    RawRequest,
    SignatureVector,
)
from deskside.references import Problem
from deskside.render import plain as render
from deskside.resolve import Profile
from deskside.signing import Scheme

__all__ = ["HELPDESK", "Plain", "PlainAnswer", "PlainCard", "PlainConfig", "PlainRequest"]

MAX_CARD_KEYS = 25
DEMO_CARD_KEYS = ("account", "billing")


class PlainCard(ConfigModel):
    """What one Plain card key shows: the main card and/or some of its sections."""

    main: bool = True
    """The title, badges, fields and links of ``[card]``."""
    sections: list[str] = []
    """Titles of ``[[card.sections]]`` to include."""
    ttl_seconds: int | None = Field(default=None, ge=15, le=31_536_000)


class PlainConfig(HelpdeskConfig):
    kind: Literal["plain"]
    ttl_seconds: int = Field(default=300, ge=15, le=31_536_000)
    """How long Plain may cache a card (``timeToLiveSeconds``)."""
    cards: dict[str, PlainCard] = {"customer": PlainCard()}
    """Card keys as configured in Plain → what each shows."""

    def card_problems(self, card: CardLayout) -> list[Problem]:
        """Section names that no ``[[card.sections]]`` title has (any name may be meant for a
        templated title)."""
        titles = [str(section.title) for section in card.sections]
        if any("{" in title for title in titles):
            return []
        problems = []
        for key, shown in self.cards.items():
            for index, name in enumerate(shown.sections):
                if name not in titles:
                    close = difflib.get_close_matches(name, titles, n=1)
                    hint = f"did you mean `{close[0]}`?" if close else f"titles: {titles}"
                    message = f"no [[card.sections]] has the title {name!r}: {hint}"
                    problems.append(Problem(("cards", key, "sections", index), message))
        return problems


# The answer's shape, for ``deskside probe`` and the OpenAPI schema: every component is a
# single-key object.
class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextComponent(_Shape):
    text: str
    textSize: Literal["S", "M", "L"] | None = None
    textColor: Literal["NORMAL", "MUTED", "SUCCESS", "WARNING", "ERROR"] | None = None


class PlainTextComponent(_Shape):
    plainText: str
    plainTextSize: Literal["S", "M", "L"] | None = None
    plainTextColor: Literal["NORMAL", "MUTED", "SUCCESS", "WARNING", "ERROR"] | None = None


class BadgeComponent(_Shape):
    badgeLabel: str
    badgeColor: Literal["GREY", "GREEN", "YELLOW", "RED", "BLUE"] | None = None


class LinkButtonComponent(_Shape):
    linkButtonLabel: str
    linkButtonUrl: Annotated[str, Field(pattern=r"^(https?://|mailto:)")]


class CopyButtonComponent(_Shape):
    copyButtonValue: str
    copyButtonTooltipLabel: str | None = None


_Size = Literal["XS", "S", "M", "L", "XL"]


class DividerComponent(_Shape):
    dividerSpacingSize: _Size | None = None


class SpacerComponent(_Shape):
    spacerSize: _Size


class RowComponent(_Shape):
    rowMainContent: list[PlainComponent]
    rowAsideContent: list[PlainComponent]


class ContainerComponent(_Shape):
    containerContent: list[PlainComponent]


class PlainComponent(_Shape):
    componentText: TextComponent | None = None
    componentPlainText: PlainTextComponent | None = None
    componentBadge: BadgeComponent | None = None
    componentLinkButton: LinkButtonComponent | None = None
    componentCopyButton: CopyButtonComponent | None = None
    componentDivider: DividerComponent | None = None
    componentSpacer: SpacerComponent | None = None
    componentRow: RowComponent | None = None
    componentContainer: ContainerComponent | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PlainComponent:
        if len(self.model_fields_set) != 1:
            raise ValueError("a component is an object with exactly one component key")
        return self


class PlainCardAnswer(_Shape):
    key: str
    timeToLiveSeconds: int | None = None
    components: list[PlainComponent] | None


class PlainAnswer(BaseModel):
    cards: list[PlainCardAnswer]


class PlainCustomer(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    email: str | None = None
    externalId: str | None = None


class PlainReference(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    externalId: str | None = None


class PlainRequest(BaseModel):
    """What Plain posts for a thread's customer: the card keys it wants answered."""

    model_config = ConfigDict(extra="allow")
    cardKeys: list[str] = Field(max_length=MAX_CARD_KEYS)
    customer: PlainCustomer
    thread: PlainReference | None = None
    tenant: PlainReference | None = None


class Plain(Protocol):
    """Verifies ``Plain-Request-Signature`` (hex HMAC-SHA256 over the raw body)."""

    kind = "plain"
    title = "Plain"
    list_order = 40  # before the default (100): an established helpdesk
    signature_header = "plain-request-signature"
    scheme = Scheme.SHA256_HEX
    timeout_seconds = 15.0  # Plain waits 15 s, then retries once
    config: PlainConfig
    config_model = PlainConfig
    setup_where = (
        "Plain → Settings → Customer cards → Add card: one card per key below, each with "
        "this URL and the secret."
    )
    preview_template = """{% macro plain_component(component) %}
{% for kind, c in component.items() %}
{% if kind == "componentText" %}
<div class="plain-text plain-text--{{ (c.textSize or 'M') | lower }}{% if c.textColor == 'MUTED' %} muted{% endif %}">{{ c.text | markdown }}</div>
{% elif kind == "componentPlainText" %}
<div class="plain-text plain-text--plain plain-text--{{ (c.plainTextSize or 'M') | lower }}{% if c.plainTextColor == 'MUTED' %} muted{% endif %}">{{ c.plainText }}</div>
{% elif kind == "componentBadge" %}
<span class="badge badge--{{ (c.badgeColor or 'GREY') | lower }}">{{ c.badgeLabel }}</span>
{% elif kind == "componentRow" %}
<div class="plain-row">
  <div class="plain-row__main">{% for part in c.rowMainContent or [] %}{{ plain_component(part) }}{% endfor %}</div>
  <div class="plain-row__aside">{% for part in c.rowAsideContent or [] %}{{ plain_component(part) }}{% endfor %}</div>
</div>
{% elif kind == "componentLinkButton" %}
{% set href = c.linkButtonUrl | safe_href %}
{% if href %}<a class="button button--small" href="{{ href }}" target="_blank" rel="noopener noreferrer">{{ c.linkButtonLabel }}</a>{% else %}<span class="button button--small" aria-disabled="true">{{ c.linkButtonLabel }}</span>{% endif %}
{% elif kind == "componentCopyButton" %}
<button type="button" class="button button--small button--quiet" data-copy="{{ c.copyButtonValue }}" title="{{ c.copyButtonTooltipLabel }}">Copy</button>
{% elif kind == "componentDivider" %}
<hr class="plain-divider">
{% elif kind == "componentSpacer" %}
<div class="plain-spacer"></div>
{% else %}
<pre class="json">{{ {kind: c} | tojson_pretty }}</pre>
{% endif %}
{% endfor %}
{% endmacro %}
{% for card in desk.body.cards or [] %}
<div class="plain-card">
  <p class="plain-card__key muted small">card “{{ card.key }}”{% if card.timeToLiveSeconds %} · cached {{ card.timeToLiveSeconds }} s{% endif %}</p>
  {% if card.components %}
  {% for component in card.components %}{{ plain_component(component) }}{% endfor %}
  {% else %}
  <p class="muted">No components (Plain shows nothing for this key).</p>
  {% endif %}
</div>
{% endfor %}"""  # noqa: E501
    demo_env = "PLAIN_SECRET"
    signature_vectors = (  # computed with an independent HMAC (docs/protocols.md §5)
        SignatureVector(
            "plainTest",
            b'{"cardKeys":["account"],"customer":{"email":"customer@example.com"}}',
            "7caad35389449d2b4d57c851919bd5bebbe86b6c85cc73ab69bf1c6b711e3bf6",
        ),
    )
    openapi = openapi_route(
        summary="Plain customer cards",
        description="Called by Plain for a thread's customer; every requested key is answered.",
        body=PlainRequest,
        answer=PlainAnswer,
        security=APIKeyHeader(
            name="Plain-Request-Signature",
            scheme_name="plain_signature",
            description="Lower-case hex HMAC-SHA256(workspace secret, raw body).",
            auto_error=False,
        ),
        parameters=[
            {
                "name": "Plain-Workspace-Id",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "The Plain workspace asking (not used by deskside).",
            }
        ],
    )

    @classmethod
    def example_request(
        cls,
        secret: str,
        emails: Sequence[str],
        *,
        card_keys: Sequence[str] = DEMO_CARD_KEYS,
    ) -> RawRequest:
        document = {
            "cardKeys": list(card_keys),
            "customer": {"id": "c_01H1P4TG", "email": emails[0], "externalId": None},
            "thread": {"id": "th_01H1P4TG", "externalId": None},
        }
        request = cls._signed_json(secret, document)
        return RawRequest(
            method=request.method,
            body=request.body,
            query=b"",
            headers={**request.headers, "plain-workspace-id": "w_01H1P4TG"},
        )

    @classmethod
    def check_answer(cls, status: int, document: Any, request: RawRequest) -> list[str]:
        problems = schema_problems(PlainAnswer, document)
        if problems:
            return problems
        answered = [card["key"] for card in document["cards"]]
        requested = _card_keys(json.loads(request.body))
        missing = [key for key in requested if key not in answered]
        if missing:
            problems.append(
                f"card key(s) {', '.join(missing)} missing: Plain treats that as an error "
                "and caches it for 5 minutes (answer them with components null)"
            )
        return problems

    @classmethod
    def shown_markup(cls, document: Any) -> list[tuple[Literal["html", "markdown"], str]]:
        """The text of every ``componentText`` (Plain renders it as markdown)."""
        shown: list[tuple[Literal["html", "markdown"], str]] = []
        pending = [c for card in document["cards"] for c in card["components"] or []]
        while pending:
            component = pending.pop()
            if "componentText" in component:
                shown.append(("markdown", component["componentText"]["text"]))
            row = component.get("componentRow") or {}
            pending += row.get("rowMainContent", []) + row.get("rowAsideContent", [])
            pending += (component.get("componentContainer") or {}).get("containerContent", [])
        return shown

    @classmethod
    def shows_customer(cls, document: Any) -> bool:
        return any(card["components"] for card in document["cards"])

    def setup_values(self, base_url: str) -> list[PasteValue]:
        return [PasteValue("Card keys", ", ".join(self.config.cards))]

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        document = parse_json_object(request.body)
        _card_keys(document)  # malformed keys are a 400 before any lookup
        customer = document.get("customer")
        if customer is not None and not isinstance(customer, dict):
            raise BadRequest("`customer` must be an object")
        email = optional_string(customer or {}, "email", where="customer.")
        return self.lookup([email], fold_plus=fold_plus)

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> dict[str, Any]:
        keys = _card_keys(json.loads(request.body)) if request else list(self.config.cards)
        return {"cards": [self._card(key, sidebar) for key in keys]}

    def answer_variant(self, request: RawRequest) -> Hashable:
        return tuple(_card_keys(json.loads(request.body)))

    def _card(self, key: str, sidebar: Sidebar) -> dict[str, Any]:
        shown = self.config.cards.get(key)
        components = None
        if shown is not None and sidebar.found:
            components = render.card_components(sidebar, main=shown.main, sections=shown.sections)
        if components is None and shown is not None and sidebar.notes:
            components = render.message_components(sidebar.notes, color="WARNING")
        ttl = shown.ttl_seconds if shown and shown.ttl_seconds else self.config.ttl_seconds
        if sidebar.notes:
            ttl = min(ttl, 30)  # a source was down: let Plain ask again soon
        return {"key": key, "timeToLiveSeconds": ttl, "components": components}


HELPDESK = Plain


def _card_keys(document: dict[str, Any]) -> list[str]:
    keys = document.get("cardKeys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadRequest("`cardKeys` must be a list of strings")
    if len(keys) > MAX_CARD_KEYS:
        raise BadRequest(f"at most {MAX_CARD_KEYS} card keys")
    # Keys are echoed back: a lone surrogate ("\ud800" in the JSON) cannot be written as UTF-8.
    if not all(encodable(key) for key in keys):
        raise BadRequest("`cardKeys` must be valid Unicode")
    return list(dict.fromkeys(keys))
