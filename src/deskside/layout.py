"""The ``[card]`` config, and how it turns a :class:`~deskside.resolve.Profile` into a Sidebar."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import Field as ConfigField
from pydantic import PrivateAttr, model_validator

from deskside.card import Badge, Card, Color, Field, FieldType, Link, Section, Sidebar, Value
from deskside.configtypes import ConfigModel
from deskside.expressions import Expression, MarkdownTemplate, Scope, TextTemplate, is_blank
from deskside.resolve import Profile

__all__ = ["CardLayout", "build_sidebar", "expression_context"]

log = logging.getLogger(__name__)

MAX_CARDS = 10
_LINK_SCHEMES = ("https://", "http://", "mailto:")
_NOT_IN_URLS = frozenset(" \t\r\n\"'<>`")
_LARGEST_NUMBER = Decimal("1e300")


class FieldLayout(ConfigModel):
    """A labelled value: ``value`` is an expression, or ``template`` is text with placeholders.

    Fields whose value is empty are left out. ``type = "markdown"`` needs a ``template``: its
    text is the author's markdown, every placeholder's value is escaped.
    """

    label: str
    value: Expression | None = None
    template: str | None = None
    type: FieldType = FieldType.TEXT
    currency: str | None = ConfigField(default=None, pattern=r"^[A-Z]{3}$")
    copyable: bool = False
    """Offer a copy button where the helpdesk has one (Plain), e.g. for ids."""
    when: Expression | None = None
    _template: TextTemplate | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _value_or_template(self) -> FieldLayout:
        if (self.value is None) == (self.template is None):
            raise ValueError("set exactly one of `value` (an expression) or `template` (text)")
        if self.type is FieldType.MARKDOWN and self.template is None:
            raise ValueError('a markdown field takes `template = "**{{ app.plan }}**"`')
        if self.template is not None:
            cls = MarkdownTemplate if self.type is FieldType.MARKDOWN else TextTemplate
            self._template = cls(self.template)
        return self


class BadgeLayout(ConfigModel):
    text: TextTemplate
    color: Color = Color.GREY
    when: Expression | None = None


class LinkLayout(ConfigModel):
    """A link; ``url`` is a template (use ``| urlencode`` on values inside a path)."""

    label: TextTemplate
    url: TextTemplate
    when: Expression | None = None


class SectionLayout(ConfigModel):
    title: TextTemplate
    icon: str | None = ConfigField(default=None, pattern=r"^[a-z-]+$")
    collapsed: bool = False
    when: Expression | None = None
    fields: list[FieldLayout] = []
    links: list[LinkLayout] = []


class CardLayout(ConfigModel):
    """What an agent sees, built once per record of the ``each`` source (default: the first)."""

    each: str | None = None
    title: TextTemplate = TextTemplate("{{ email }}")
    subtitle: TextTemplate | None = None
    currency: str = ConfigField(default="USD", pattern=r"^[A-Z]{3}$")
    badges: list[BadgeLayout] = []
    fields: list[FieldLayout] = []
    links: list[LinkLayout] = []
    sections: list[SectionLayout] = []


def build_sidebar(
    layout: CardLayout,
    profile: Profile,
    *,
    now: datetime | None = None,
    problems: list[str] | None = None,
) -> Sidebar:
    """The sidebar for ``profile``. Expressions that fail are logged and appended to
    ``problems`` (when given), and the piece they belong to is left out."""
    builder = _Builder(layout, problems if problems is not None else [])
    return builder.sidebar(profile, now or datetime.now(UTC))


def expression_context(profile: Profile, now: datetime | None = None) -> dict[str, Any]:
    """What config expressions see: each source's first record by name, ``records``, ``now``,
    ``today``, ``email``, ``emails`` and ``helpdesk`` (what the helpdesk sent)."""
    now = now or datetime.now(UTC)
    context: dict[str, Any] = {
        "now": now,
        "today": now.date(),
        "email": profile.lookup.email,
        "emails": list(profile.lookup.emails),
        "helpdesk": dict(profile.lookup.context),
        "records": {name: r.records for name, r in profile.results.items()},
    }
    context.update({n: r.records[0] for n, r in profile.results.items() if r.records})
    return context


class _Builder:
    def __init__(self, layout: CardLayout, problems: list[str]) -> None:
        self.layout = layout
        self.problems = problems

    def sidebar(self, profile: Profile, now: datetime) -> Sidebar:
        notes = tuple(f"{label} unavailable" for label in profile.unavailable) + tuple(
            f"{label} as of {_as_of(fetched_at, now)}" for label, fetched_at in profile.stale
        )
        emails = profile.lookup.emails
        if not profile.found:
            return Sidebar(emails=emails, notes=notes)
        base = expression_context(profile, now)
        each = self.layout.each or next(iter(profile.results))
        rows = profile.results[each].records[:MAX_CARDS] if each in profile.results else []
        contexts = [{**base, each: row} for row in rows] or [base]
        cards = tuple(self.card(Scope(context)) for context in contexts)
        return Sidebar(emails=emails, cards=cards, notes=notes)

    def card(self, context: Mapping[str, Any]) -> Card:
        layout = self.layout
        return Card(
            title=self.text(layout.title, context) or str(context["email"]),
            subtitle=self.text(layout.subtitle, context) or None,
            badges=tuple(
                Badge(text=text, color=badge.color)
                for badge in layout.badges
                if self.shown(badge.when, context) and (text := self.text(badge.text, context))
            ),
            fields=self.fields(layout.fields, context),
            links=self.links(layout.links, context),
            sections=self.sections(context),
        )

    def sections(self, context: Mapping[str, Any]) -> tuple[Section, ...]:
        built = []
        for layout in self.layout.sections:
            if not self.shown(layout.when, context):
                continue
            fields = self.fields(layout.fields, context)
            links = self.links(layout.links, context)
            if fields or links:
                title = self.text(layout.title, context)
                built.append(
                    Section(
                        title=title,
                        icon=layout.icon,
                        collapsed=layout.collapsed,
                        fields=fields,
                        links=links,
                    )
                )
        return tuple(built)

    def fields(
        self, layouts: Sequence[FieldLayout], context: Mapping[str, Any]
    ) -> tuple[Field, ...]:
        built = []
        for layout in layouts:
            if not self.shown(layout.when, context):
                continue
            raw = self.evaluate(layout, context)
            if is_blank(raw):
                continue
            try:
                value = _coerce(raw, layout.type)
            except ValueError as exc:
                self.problem(f"field {layout.label!r}", str(exc))
                continue
            currency = layout.currency or self.layout.currency
            built.append(
                Field(
                    label=layout.label,
                    value=value,
                    type=layout.type,
                    currency=currency if layout.type is FieldType.CURRENCY else None,
                    copyable=layout.copyable,
                )
            )
        return tuple(built)

    def links(self, layouts: Sequence[LinkLayout], context: Mapping[str, Any]) -> tuple[Link, ...]:
        built = []
        for layout in layouts:
            if not self.shown(layout.when, context):
                continue
            url = self.text(layout.url, context)
            label = self.text(layout.label, context)
            if not url or not label:
                continue
            if not url.lower().startswith(_LINK_SCHEMES) or any(c in _NOT_IN_URLS for c in url):
                self.problem(
                    f"link {layout.label}", f"{url[:80]!r} is not an http(s) or mailto URL"
                )
                continue
            built.append(Link(label=label, url=url))
        return tuple(built)

    def evaluate(self, layout: FieldLayout, context: Mapping[str, Any]) -> Any:
        try:
            if layout._template is not None:
                return layout._template.render(context)
            assert layout.value is not None
            return layout.value.evaluate(context)
        except Exception as exc:
            self.problem(f"field {layout.label!r}", f"{type(exc).__name__}: {exc}")
            return None

    def shown(self, when: Expression | None, context: Mapping[str, Any]) -> bool:
        if when is None:
            return True
        try:
            return bool(when.evaluate(context))
        except Exception as exc:
            self.problem(f"condition {when.source!r}", f"{type(exc).__name__}: {exc}")
            return False

    def text(self, template: TextTemplate | None, context: Mapping[str, Any]) -> str:
        if template is None:
            return ""
        try:
            return template.render(context)
        except Exception as exc:
            self.problem(f"template {template.source!r}", f"{type(exc).__name__}: {exc}")
            return ""

    def problem(self, where: str, detail: str) -> None:
        """Record what failed; the log names only the config piece, since ``detail`` may quote
        customer data (``problems`` goes to whoever ran ``check``/``preview`` for a customer)."""
        log.warning("card: %s failed for this customer (see deskside preview)", where)
        self.problems.append(f"{where}: {detail}")


def _as_of(fetched_at: float, now: datetime) -> str:
    """``14:05 UTC`` today, ``20 Nov, 14:05 UTC`` before."""
    when = datetime.fromtimestamp(fetched_at, UTC)
    if when.date() == now.astimezone(UTC).date():
        return f"{when:%H:%M} UTC"
    return f"{when.day} {when:%b, %H:%M} UTC"


def _coerce(raw: Any, type_: FieldType) -> Value:
    """``raw`` as the value a field of ``type_`` holds; raises ValueError when it is not one."""
    if type_ in (FieldType.NUMBER, FieldType.CURRENCY):
        return _number(raw)
    if type_ is FieldType.DATE:
        value = _temporal(raw)
        return value.date() if isinstance(value, datetime) else value
    if type_ is FieldType.DATETIME:
        value = _temporal(raw)
        if not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        try:  # in UTC now: 0001-01-01T00:00+05:00 has no UTC time, and renderers show UTC
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        except OverflowError:
            raise ValueError(f"{value.isoformat()!r} is out of range") from None
    if type_ is FieldType.BOOLEAN:
        return _boolean(raw)
    text = str(raw).strip()
    if type_ is FieldType.URL and (
        not text.lower().startswith(_LINK_SCHEMES[:2]) or any(c in _NOT_IN_URLS for c in text)
    ):
        raise ValueError(f"{text[:80]!r} is not an http(s) URL")
    if type_ is FieldType.EMAIL and ("@" not in text or any(c.isspace() for c in text)):
        raise ValueError(f"{text[:80]!r} is not an email address")
    return text


def _number(raw: Any) -> int | float | Decimal:
    if isinstance(raw, bool):
        raise ValueError(f"{raw!r} is not a number")
    if isinstance(raw, int | float | Decimal):
        _check_magnitude(Decimal(raw))
        return raw
    try:
        number = Decimal(str(raw).strip().replace(",", ""))
    except InvalidOperation:
        raise ValueError(f"{str(raw)[:80]!r} is not a number") from None
    _check_magnitude(number)
    return int(number) if number == number.to_integral_value() else number


def _check_magnitude(number: Decimal) -> None:
    """Refuse NaN, infinities and absurd sizes (``1e999999``): no renderer can show them, and
    turning them into an int would hold the event loop for seconds."""
    if not number.is_finite():
        raise ValueError(f"{str(number)[:80]!r} is not a finite number")
    if abs(number) >= _LARGEST_NUMBER:
        raise ValueError(f"{str(number)[:80]!r} is too large to show")


def _temporal(raw: Any) -> date:
    if isinstance(raw, date):
        return raw
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        try:
            return datetime.fromtimestamp(raw, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"{raw!r} is not a Unix timestamp in range") from None
    try:
        text = str(raw).strip()
        return datetime.fromisoformat(text) if len(text) > 10 else date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{str(raw)[:80]!r} is not an ISO 8601 date") from None


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "t", "y", "on"}:
        return True
    if text in {"0", "false", "no", "f", "n", "off"}:
        return False
    raise ValueError(f"{str(raw)[:80]!r} is not a yes/no value")
