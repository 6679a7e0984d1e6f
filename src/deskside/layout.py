"""The ``[card]`` config, and how it turns a :class:`~deskside.resolve.Profile` into a Sidebar."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from jinja2 import UndefinedError
from pydantic import Field as ConfigField
from pydantic import PrivateAttr, model_validator

from deskside.card import (
    Badge,
    Card,
    Color,
    Field,
    FieldType,
    Link,
    Section,
    Sidebar,
    Value,
    one_line,
    shorten,
    text_lines,
)
from deskside.configtypes import ConfigModel
from deskside.expressions import (
    Expression,
    MarkdownTemplate,
    Scope,
    TextTemplate,
    is_blank,
    missing_values,
)
from deskside.render.budget import MORE_NOT_SHOWN, fit
from deskside.resolve import Profile

__all__ = ["CardLayout", "LeftOut", "build_sidebar", "expression_context"]

log = logging.getLogger(__name__)

MAX_CARDS = 10
MAX_URL_LENGTH = 2048
"""Longer links and ``url`` values are left out: cut, they would lead somewhere else."""
_LINK_SCHEMES = ("https://", "http://", "mailto:")
_NOT_IN_ADDRESSES = re.compile(
    r"[\s\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
"""White space, control and bidi characters: refused in URLs and addresses, never removed."""
_NOT_IN_URLS = re.compile(rf"[\"'<>`]|{_NOT_IN_ADDRESSES.pattern}")
_LARGEST_NUMBER = Decimal("1e300")
_MARKDOWN_ALLOWANCE = 4
"""A markdown value may be this many times ``max_value_length``: its markup and escapes."""
_T = TypeVar("_T")


class LeftOut(str):
    """A piece of the card left out because a value it shows is missing (or too long to show
    whole): information for whoever previews a customer, not a failure of the config."""

    __slots__ = ()


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
    max_value_length: int = ConfigField(default=500, ge=20, le=10_000)
    """Longer text is cut to this many characters, ending with "…"."""
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
    """The sidebar for ``profile``.

    Expressions that fail are logged and appended to ``problems`` (when given), and the piece
    they belong to is left out. A piece that shows a missing value is left out too, and
    ``problems`` gets a :class:`LeftOut` line saying why (``field 'Seats' left out:
    app.seat_limit is empty``). Text is one line without control or bidi characters (a
    field's value keeps its line breaks), at most ``max_value_length`` characters; pieces past
    what one answer can hold (:func:`~deskside.render.budget.fit`) are dropped with a note.
    """
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
        self.limit = layout.max_value_length

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
        cards, cut = fit(tuple(self.card(Scope(context)) for context in contexts))
        if cut:
            notes += (MORE_NOT_SHOWN,)
        return Sidebar(emails=emails, cards=cards, notes=notes)

    def card(self, context: Mapping[str, Any]) -> Card:
        layout = self.layout
        title = self.text("title", layout.title, context)
        subtitle = self.text("subtitle", layout.subtitle, context)
        return Card(
            title=title or str(context["email"]),
            subtitle=subtitle or None,
            badges=tuple(
                Badge(text=text, color=badge.color)
                for badge in layout.badges
                if self.shown(f"badge {badge.text.source!r}", badge.when, context)
                and (text := self.text(f"badge {badge.text.source!r}", badge.text, context))
            ),
            fields=self.fields(layout.fields, context),
            links=self.links(layout.links, context),
            sections=self.sections(context),
        )

    def sections(self, context: Mapping[str, Any]) -> tuple[Section, ...]:
        built = []
        for layout in self.layout.sections:
            what = f"section {layout.title.source!r}"
            if not self.shown(what, layout.when, context):
                continue
            title = self.text(what, layout.title, context)
            if not title:
                continue
            fields = self.fields(layout.fields, context)
            links = self.links(layout.links, context)
            if fields or links:
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
            what = f"field {layout.label!r}"
            if not self.shown(what, layout.when, context):
                continue
            raw = self.attempt(what, functools.partial(_evaluate, layout, context), context)
            if isinstance(raw, str) and layout.type not in (FieldType.URL, FieldType.EMAIL):
                raw = text_lines(raw).strip()  # URLs and addresses are refused, not changed
            if is_blank(raw):
                continue
            try:
                value = _coerce(raw, layout.type)
            except ValueError as exc:
                self.problem(what, str(exc))
                continue
            if isinstance(value, str):
                shortened = self.shortened(what, value, layout.type)
                if shortened is None:
                    continue
                value = shortened
            currency = layout.currency or self.layout.currency
            built.append(
                Field(
                    label=shorten(one_line(layout.label), self.limit),
                    value=value,
                    type=layout.type,
                    currency=currency if layout.type is FieldType.CURRENCY else None,
                    copyable=layout.copyable,
                )
            )
        return tuple(built)

    def shortened(self, what: str, value: str, type_: FieldType) -> str | None:
        """``value`` cut to the length limit; None (and a note) for a URL or address too long
        to cut."""
        if type_ is FieldType.MARKDOWN:
            return _shorten_markdown(value, self.limit * _MARKDOWN_ALLOWANCE)
        if type_ in (FieldType.URL, FieldType.EMAIL):
            limit = MAX_URL_LENGTH if type_ is FieldType.URL else self.limit
            if len(value) > limit:
                self.left_out(what, f"its value is longer than {limit:,} characters")
                return None
            return value
        return shorten(value, self.limit)

    def links(self, layouts: Sequence[LinkLayout], context: Mapping[str, Any]) -> tuple[Link, ...]:
        built = []
        for layout in layouts:
            what = f"link {layout.label.source!r}"
            if not self.shown(what, layout.when, context):
                continue
            url = (
                self.attempt(what, functools.partial(layout.url.render, context), context) or ""
            ).strip()
            label = self.text(what, layout.label, context) if url else ""
            if not label:
                continue
            if not url.lower().startswith(_LINK_SCHEMES) or _NOT_IN_URLS.search(url):
                self.problem(what, f"{one_line(url[:80])!r} is not an http(s) or mailto URL")
                continue
            if len(url) > MAX_URL_LENGTH:
                self.left_out(what, f"its URL is longer than {MAX_URL_LENGTH:,} characters")
                continue
            built.append(Link(label=label, url=url))
        return tuple(built)

    def shown(self, what: str, when: Expression | None, context: Mapping[str, Any]) -> bool:
        """Whether ``when`` holds. Testing a missing value is fine (``when = "app.x"``);
        computing with one (``app.x > 3``) leaves the piece out, with a note."""
        if when is None:
            return True
        with missing_values(context):
            try:
                return bool(when.evaluate(context))
            except UndefinedError as exc:
                self.left_out(what, str(exc))
            except Exception as exc:
                self.problem(f"condition {when.source!r}", f"{type(exc).__name__}: {exc}")
        return False

    def text(self, what: str, template: TextTemplate | None, context: Mapping[str, Any]) -> str:
        """``template`` rendered as one shortened line; "" when it fails or shows a missing
        value."""
        if template is None:
            return ""
        text = self.attempt(what, functools.partial(template.render, context), context)
        return shorten(one_line(text).strip(), self.limit) if text else ""

    def attempt(
        self, what: str, compute: Callable[[], _T], context: Mapping[str, Any]
    ) -> _T | None:
        """What ``compute`` returns; None, with a note, when it fails or shows a missing value."""
        with missing_values(context) as missing:
            try:
                result = compute()
            except UndefinedError as exc:
                self.left_out(what, str(exc))
                return None
            except Exception as exc:
                self.problem(what, f"{type(exc).__name__}: {exc}")
                return None
        if missing:
            self.left_out(
                what, f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} empty"
            )
            return None
        return result

    def left_out(self, what: str, why: str) -> None:
        """Note a piece left out for this customer's data; not logged (nothing failed)."""
        self.problems.append(LeftOut(f"{what} left out: {why}"))

    def problem(self, where: str, detail: str) -> None:
        """Record what failed; the log names only the config piece, since ``detail`` may quote
        customer data (``problems`` goes to whoever ran ``check``/``preview`` for a customer)."""
        log.warning("card: %s failed for this customer (see deskside preview)", where)
        self.problems.append(f"{where}: {detail}")


def _evaluate(layout: FieldLayout, context: Mapping[str, Any]) -> Any:
    if layout._template is not None:
        return layout._template.render(context)
    assert layout.value is not None
    return layout.value.evaluate(context)


def _shorten_markdown(text: str, limit: int) -> str:
    """Markdown cut to ``limit`` characters, never between a backslash and what it escapes."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if (len(cut) - len(cut.rstrip("\\"))) % 2:
        cut = cut[:-1]
    return cut.rstrip() + "…"


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
        not text.lower().startswith(_LINK_SCHEMES[:2]) or _NOT_IN_URLS.search(text)
    ):
        raise ValueError(f"{text[:80]!r} is not an http(s) URL")
    if type_ is FieldType.EMAIL and ("@" not in text or _NOT_IN_ADDRESSES.search(text)):
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
