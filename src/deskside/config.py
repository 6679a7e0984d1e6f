"""``deskside.toml`` → validated :class:`Settings`; every mistake reported with file, line, key
and a fix."""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    AfterValidator,
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from deskside.configtypes import ConfigModel, Secret, SecretList
from deskside.errors import ConfigError
from deskside.insights.settings import HelpScoutSettings, InsightsSettings
from deskside.layout import CardLayout
from deskside.protocols import AnyHelpdeskConfig
from deskside.proxy import normalise_public_url
from deskside.references import BUILT_IN_NAMES, Location, Problem, unknown_names
from deskside.sources import SourceConfig, config_union, source_kinds
from deskside.web.sso_settings import UISettings

__all__ = [
    "AdminSettings",
    "LookupSettings",
    "ServerSettings",
    "Settings",
    "config_location",
    "load_insights_settings",
    "load_settings",
]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_HEADER = re.compile(r"^\[(\[)?\s*([^\]]+?)\s*\]\]?")
_KEY = re.compile(r"^([A-Za-z0-9_\-.\"' ]+?)\s*=")
_RESERVED = BUILT_IN_NAMES

if TYPE_CHECKING:  # what every registered kind's model is
    AnySourceConfig = SourceConfig
else:  # a table of any registered source kind, told apart by ``kind``
    AnySourceConfig = config_union()


class LookupSettings(ConfigModel):
    fold_plus_addressing: bool = True
    """Also look up ``name@host`` when a helpdesk sends ``name+tag@host``."""


class ServerSettings(ConfigModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    deadline_ms: int = Field(default=2500, ge=50, le=30_000)
    """All sources together get this long, counted from when the request arrived; what is not
    back by then is reported missing."""
    shed_load: bool = True
    """Whether a worker with more in hand than it can answer inside the deadline answers new
    helpdesk requests at once from the cache (or with "… unavailable" notes) instead of queueing
    them; see ``deskside.admission``."""
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=10 * 1024 * 1024)
    metrics_public: bool = True
    """Whether ``GET /metrics`` answers anyone; false: only with an ``[admin] token``."""
    public_url: str | None = None
    """The address people and helpdesks reach the server at (``https://deskside.example.com``),
    shown on the Setup page and by the demo instead of the address a request came to."""
    trusted_proxies: list[IPvAnyNetwork] = []
    """Proxies (addresses or CIDR ranges) whose ``X-Forwarded-Proto``, ``-Host`` and ``-For``
    headers are believed; from any other peer they are ignored."""

    @field_validator("public_url")
    @classmethod
    def _public_url_is_a_base_url(cls, value: str | None) -> str | None:
        return None if value is None else normalise_public_url(value)


class AdminSettings(ConfigModel):
    token: SecretList = []
    """Bearer token(s) for the admin endpoints (``POST /admin/cache/clear``); none: no admin."""
    password: Secret | None = None
    """The web UI's admin password (``env:NAME``, ``file:PATH`` or inline); hashed in memory
    with a random salt at start-up. With it (or ``password_hash``) the server serves ``/ui/``."""
    password_hash: str | None = None
    """The password as ``deskside.web.auth.hash_password`` writes it (``scrypt$…``), so the
    config need not hold the password itself."""
    session_secret: Secret | None = None
    """Signs the UI's session cookies; default: random per process (sessions then end when the
    server restarts and do not cross workers: set it when running several)."""
    session_hours: float = Field(default=12, gt=0, le=24 * 30)
    """How long a UI login lasts."""

    @field_validator("password")
    @classmethod
    def _password_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 8:
            raise ValueError("the admin password is shorter than 8 characters")
        return value

    @field_validator("password_hash")
    @classmethod
    def _hash_well_formed(cls, value: str | None) -> str | None:
        if value is not None:
            from deskside.web.auth import PasswordHash

            PasswordHash.parse(value)  # ValueError saying what is wrong
        return value

    @property
    def ui_enabled(self) -> bool:
        """Whether an admin password is configured (the web UI exists only then)."""
        return self.password is not None or self.password_hash is not None


def _cache_url(url: SecretStr) -> SecretStr:
    if url.get_secret_value() != "memory" and not url.get_secret_value().startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ValueError('use "memory" or a Redis URL: redis://host:6379/0 (or env:NAME)')
    return url


class Settings(ConfigModel):
    """The whole config file."""

    cache: Annotated[Secret, AfterValidator(_cache_url)] = SecretStr("memory")
    """``memory`` (in each process) or ``redis://…`` (shared by every worker and replica)."""
    sources: dict[str, AnySourceConfig]
    optional_sources: list[str] = []
    """Names that expressions may read though no ``[sources.NAME]`` of this file defines them
    (they then see nothing), e.g. a source only some deployments add; any other undefined name
    is a mistake."""
    card: CardLayout = CardLayout()
    helpdesks: dict[str, AnyHelpdeskConfig] = {}
    lookup: LookupSettings = LookupSettings()
    server: ServerSettings = ServerSettings()
    admin: AdminSettings = AdminSettings()
    insights: InsightsSettings = InsightsSettings()
    ui: UISettings = UISettings()

    @property
    def insights_enabled(self) -> bool:
        """Whether the file has an ``[insights]`` table (the server then takes webhooks)."""
        return "insights" in self.model_fields_set

    @model_validator(mode="before")
    @classmethod
    def _helpdesk_kind_defaults_to_name(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("helpdesks"), dict):
            data = dict(data)
            data["helpdesks"] = {
                name: {"kind": name, **table} if isinstance(table, dict) else table
                for name, table in data["helpdesks"].items()
            }
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if not self.sources:
            raise ValueError("add at least one [sources.NAME] table")
        for name in [*self.sources, *self.optional_sources, *self.helpdesks]:
            if not _NAME.match(name) or name in _RESERVED:
                raise ValueError(
                    f"{name!r} cannot be a name: use lower-case letters, digits and _ "
                    f"(and none of {', '.join(sorted(_RESERVED))})"
                )
        if self.card.each is not None and self.card.each not in self.sources:
            raise ValueError(
                f"card.each = {self.card.each!r} names no source; use one of "
                + ", ".join(repr(n) for n in self.sources)
            )
        paths = [table.path or f"/{name}" for name, table in self.helpdesks.items()]
        if len(paths) != len(set(paths)):
            raise ValueError("two helpdesks use the same path: give each its own `path`")
        reserved = {"/healthz", "/readyz", "/metrics", "/webhooks/helpscout"}.intersection(paths)
        reserved |= {p for p in paths if p.startswith(("/ui", "/api", "/admin", "/insights"))}
        if reserved:
            raise ValueError(f"{min(reserved)} is deskside's own path: give the helpdesk a `path`")
        if not self.server.metrics_public and not self.admin.token:
            raise ValueError(
                "server.metrics_public = false needs an [admin] token to read /metrics with"
            )
        if self.ui.oidc is not None and not (self.insights_enabled and self.admin.ui_enabled):
            raise ValueError(
                "[ui.oidc] needs an [insights] table (people are kept there) and an [admin] "
                "password (the web UI)"
            )
        return self


def load_settings(
    path: str | Path,
    *,
    extra_sources: dict[str, Any] | None = None,
    extra_helpdesks: dict[str, Any] | None = None,
) -> Settings:
    """The validated config at ``path``; raises :class:`ConfigError` listing every problem,
    names that expressions and templates read but no source defines included.

    ``extra_sources`` adds ``[sources.NAME]`` tables (the demo adds Stripe when it has a key);
    ``extra_helpdesks`` adds the ``[helpdesks.NAME]`` tables the file does not have (the demo
    serves every registered helpdesk).
    """
    path = Path(path)
    text, document = _read(path)
    if extra_sources:
        document["sources"] = {**document.get("sources", {}), **extra_sources}
    if extra_helpdesks:
        helpdesks = document.get("helpdesks", {})
        extra = {name: table for name, table in extra_helpdesks.items() if name not in helpdesks}
        document["helpdesks"] = {**helpdesks, **extra}
    try:
        settings = Settings.model_validate(document, context={"base_dir": path.resolve().parent})
    except ValidationError as exc:
        raise ConfigError([_describe(path, text, error) for error in exc.errors()]) from None
    problems = _reference_problems(settings)
    if problems:
        raise ConfigError([_place(path, text, p.location, p.message) for p in problems])
    return settings


def config_location(path: Path, location: Location) -> str:
    """``file:line: key.path`` of ``location`` in the config at ``path`` (best effort)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        text = ""
    return _where(path, text, location)


def _reference_problems(settings: Settings) -> list[Problem]:
    """Names the expressions and templates read that nothing defines; Plain sections that no
    ``[[card.sections]]`` has."""
    reports = settings.insights.reports
    strings: dict[Location, str | None] = {
        ("insights", "reports", "plan"): reports.plan,
        ("insights", "reports", "revenue_cents"): reports.revenue_cents,
    }
    extra = {location: text for location, text in strings.items() if text}
    sources = [*settings.sources, *settings.optional_sources]
    problems = unknown_names(settings, sources, extra_expressions=extra)
    for name, helpdesk in settings.helpdesks.items():
        problems += [
            Problem(("helpdesks", name, *problem.location), problem.message)
            for problem in helpdesk.card_problems(settings.card)
        ]
    return problems


def load_insights_settings(path: str | Path | None) -> InsightsSettings:
    """Only the ``[insights]`` table of the config at ``path`` (the insights commands need no
    sources or helpdesks); defaults when there is no such file."""
    if path is None or not Path(path).is_file():
        return InsightsSettings()
    path = Path(path)
    text, document = _read(path)
    try:
        return InsightsSettings.model_validate(
            document.get("insights", {}), context={"base_dir": path.resolve().parent}
        )
    except ValidationError as exc:
        raise ConfigError(
            [
                _describe(path, text, {**error, "loc": ("insights", *error["loc"])})
                for error in exc.errors()
            ]
        ) from None


def _read(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the config: {exc.strerror}"]) from None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def _describe(path: Path, text: str, error: Any) -> str:
    """One line: ``file:line: key.path: what is wrong — how to fix it``."""
    location = _clean_location(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    kind = error["type"]
    if kind == "missing":
        table = f"to [{_key_path(location[:-1])}]" if location[:-1] else "at the top level"
        message = f"required: add `{location[-1]} = …` {table}"
    elif kind == "extra_forbidden":
        close = difflib.get_close_matches(str(location[-1]), _known_keys(), n=1)
        message = "unknown key" + (f": did you mean `{close[0]}`?" if close else "; remove it")
    elif kind == "union_tag_invalid":
        message = (
            f"unknown kind {error['ctx']['tag']!r}: use one of {error['ctx']['expected_tags']}"
        )
    elif kind == "union_tag_not_found" and location[:1] == ["sources"]:
        kinds = ", ".join(repr(name) for name in source_kinds())
        message = f"required: add `kind = …`, one of {kinds}"
    return _place(path, text, location, message)


def _place(path: Path, text: str, location: Location | list[str | int], message: str) -> str:
    """``file:line: key.path: message``."""
    return f"{_where(path, text, location)}: {message}"


def _where(path: Path, text: str, location: Location | list[str | int]) -> str:
    """``file:line: key.path``; without the line when it cannot be found."""
    line = _find_line(text, list(location))
    where = f"{path}:{line}" if line else str(path)
    return f"{where}: {_key_path(location)}" if location else where


def _key_path(location: Location | list[str | int]) -> str:
    """``card.fields[2].value``."""
    return "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" if index else str(part)
        for index, part in enumerate(location)
    )


def _clean_location(loc: tuple[Any, ...]) -> list[str | int]:
    """The error's key path as written in the file.

    Discriminated unions add the ``kind`` (``sources.app.sql.query``) and single secrets their
    list index (``secret.0``); neither is a key in the file.
    """
    parts: list[str | int] = []
    for index, part in enumerate(loc):
        if index == 2 and loc[0] in ("sources", "helpdesks") and part in _kinds():
            continue
        if isinstance(part, int) and index > 0 and loc[index - 1] == "secret":
            continue
        parts.append(part)
    return parts


def _kinds() -> set[str]:
    from deskside import protocols

    return {p.kind for p in protocols.PROTOCOLS.values()} | set(source_kinds())


def _known_keys() -> list[str]:
    from deskside import layout, protocols

    models: list[Any] = [Settings, LookupSettings, ServerSettings, AdminSettings]
    models += [layout.CardLayout]
    models += [InsightsSettings, HelpScoutSettings]
    models += [layout.FieldLayout, layout.BadgeLayout, layout.LinkLayout, layout.SectionLayout]
    models += list(protocols.PROTOCOLS) + [s.config for s in source_kinds().values()]
    return sorted({name for model in models for name in model.model_fields})


def _find_line(text: str, location: list[str | int]) -> int | None:
    """The line that holds ``location`` (or else its nearest table), best effort: array
    tables (``[[card.fields]]``) are counted, multi-line strings skipped."""
    best: tuple[int, int] | None = None  # (depth, line) of the nearest enclosing table or key
    current: list[str | int] = []
    arrays: dict[tuple[str | int, ...], int] = {}  # each array table's latest index
    in_string = ""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if in_string:
            in_string = "" if in_string in line else in_string
            continue
        header = _HEADER.match(line)
        key = None if header else _KEY.match(line)
        if header:
            current = _table_path(header.group(2), is_array=bool(header.group(1)), arrays=arrays)
            path = current
        elif key:
            path = [*current, *(part.strip().strip("\"'") for part in key.group(1).split("."))]
            for quotes in ('"""', "'''"):
                if line.count(quotes) == 1:
                    in_string = quotes
        else:
            continue
        if path != location[: len(path)]:
            continue
        if key and all(isinstance(part, int) for part in location[len(path) :]):
            return number  # the key, or an item of the array it holds
        if best is None or len(path) > best[0]:
            best = (len(path), number)
    return best[1] if best else None


def _table_path(
    header: str, *, is_array: bool, arrays: dict[tuple[str | int, ...], int]
) -> list[str | int]:
    """The key path of a table header, with the index of every array table in it."""
    path: list[str | int] = []
    names = [part.strip().strip("\"'") for part in header.split(".")]
    for position, name in enumerate(names):
        path.append(name)
        last = position == len(names) - 1
        if last and is_array:
            index = arrays.get(tuple(path), -1) + 1
            arrays[tuple(path)] = index
            path.append(index)
        elif tuple(path) in arrays:
            path.append(arrays[tuple(path)])
    return path
