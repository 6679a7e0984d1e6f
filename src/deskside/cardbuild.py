"""The ``[card]`` layout compiled once, at config load, into plain Python pieces.

Everything that depends only on the config is done here once: each expression, condition and
template is already a compiled function (:mod:`deskside.expressions`), labels are cleaned and
cut, what each piece is called in notes is written, and each field's type chooses its steps.
Per customer only the data-dependent work is left: evaluate, check, coerce, build the model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, TypeVar

from jinja2 import UndefinedError
from pydantic import BaseModel

from deskside.card import (
    Badge,
    Card,
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
from deskside.expressions import Expression, Scope, TextTemplate, is_blank, missing_values
from deskside.render.budget import MORE_NOT_SHOWN, fit
from deskside.resolve import Profile

if TYPE_CHECKING:
    from deskside.layout import CardLayout, FieldLayout, LinkLayout

__all__ = ["MAX_CARDS", "MAX_URL_LENGTH", "CompiledCard", "LeftOut", "expression_context"]

log = logging.getLogger("deskside.layout")

MAX_CARDS = 10
MAX_URL_LENGTH = 2048
"""Longer links and ``url`` values are left out: cut, they would lead somewhere else."""
_LINK_SCHEMES = ("https://", "http://", "mailto:")
_NOT_IN_ADDRESSES = re.compile(
    r"[\s\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)
"""White space, control and bidi characters: refused in URLs and addresses, never removed."""
_NOT_IN_URLS = re.compile(rf"[\"'<>`]|{_NOT_IN_ADDRESSES.pattern}")
_MARKDOWN_ALLOWANCE = 4
"""A markdown value may be this many times ``max_value_length``: its markup and escapes."""
_EXACT_VALUES = frozenset({str, int, float, Decimal, datetime, date, bool})
"""Value types that validating a :class:`Field` keeps as they are."""
_LARGEST_NUMBER = Decimal("1e300")


_set = object.__setattr__
_M = TypeVar("_M", bound=BaseModel)


def _maker(model: type[_M]) -> Callable[..., _M]:
    """``model`` built from every one of its fields, already valid, without validating them
    again: what ``model_construct`` does, without its per-call look at aliases and defaults."""
    names = tuple(model.__pydantic_fields__)
    if model.__pydantic_root_model__ or model.__pydantic_post_init__:  # pragma: no cover
        return model.model_construct

    def make(**values: Any) -> _M:
        built = model.__new__(model)
        _set(built, "__dict__", {name: values[name] for name in names})
        _set(built, "__pydantic_fields_set__", set(names))
        _set(built, "__pydantic_extra__", None)
        _set(built, "__pydantic_private__", None)
        return built

    return make


class LeftOut(str):
    """A piece of the card left out because a value it shows is missing (or too long to show
    whole): information for whoever previews a customer, not a failure of the config."""

    __slots__ = ()


_MAKE_BADGE, _MAKE_CARD = _maker(Badge), _maker(Card)
_MAKE_FIELD, _MAKE_LINK, _MAKE_SECTION = _maker(Field), _maker(Link), _maker(Section)


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


class _Run:
    """One sidebar being built: its notes, and the names of missing values shown so far
    (:func:`~deskside.expressions.missing_values`, listened to once per card)."""

    __slots__ = ("missing", "problems")

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        self.missing: list[str] = []

    def attempt(self, what: str, compute: Callable[[Scope], Any], scope: Scope) -> Any:
        """What ``compute`` returns; None, with a note, when it fails or shows a missing value."""
        missing = self.missing
        missing.clear()
        try:
            result = compute(scope)
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

    def shown(self, what: str, when: Expression | None, scope: Scope) -> bool:
        """Whether ``when`` holds. Testing a missing value is fine (``when = "app.x"``);
        computing with one (``app.x > 3``) leaves the piece out, with a note."""
        if when is None:
            return True
        self.missing.clear()
        try:
            return bool(when.evaluate(scope))
        except UndefinedError as exc:
            self.left_out(what, str(exc))
        except Exception as exc:
            self.problem(f"condition {when.source!r}", f"{type(exc).__name__}: {exc}")
        return False

    def left_out(self, what: str, why: str) -> None:
        """Note a piece left out for this customer's data; not logged (nothing failed)."""
        self.problems.append(LeftOut(f"{what} left out: {why}"))

    def problem(self, where: str, detail: str) -> None:
        """Record what failed; the log names only the config piece, since ``detail`` may quote
        customer data (``problems`` goes to whoever ran ``check``/``preview`` for a customer)."""
        log.warning("card: %s failed for this customer (see deskside preview)", where)
        self.problems.append(f"{where}: {detail}")


class _Text:
    """A template shown as one shortened line; "" when it fails or shows a missing value."""

    __slots__ = ("limit", "render", "what")

    def __init__(self, what: str, template: TextTemplate, limit: int) -> None:
        self.what, self.render, self.limit = what, template.render, limit

    def __call__(self, run: _Run, scope: Scope) -> str:
        text = run.attempt(self.what, self.render, scope)
        return shorten(one_line(text).strip(), self.limit) if text else ""


class _Field:
    __slots__ = (
        "compute",
        "copyable",
        "currency",
        "label",
        "limit",
        "lines",
        "type",
        "what",
        "when",
    )

    def __init__(self, layout: FieldLayout, currency: str, limit: int) -> None:
        self.what = f"field {layout.label!r}"
        self.when = layout.when
        template = layout._template
        if template is not None:
            self.compute: Callable[[Scope], Any] = template.render
        else:
            assert layout.value is not None
            self.compute = layout.value.evaluate
        self.type = layout.type
        self.lines = layout.type not in (FieldType.URL, FieldType.EMAIL)
        self.label = shorten(one_line(layout.label), limit)
        self.currency = (layout.currency or currency) if layout.type is FieldType.CURRENCY else None
        self.copyable = layout.copyable
        if layout.type is FieldType.MARKDOWN:
            self.limit = limit * _MARKDOWN_ALLOWANCE
        elif layout.type is FieldType.URL:
            self.limit = MAX_URL_LENGTH
        else:
            self.limit = limit

    def build(self, run: _Run, scope: Scope) -> Field | None:
        if not run.shown(self.what, self.when, scope):
            return None
        raw = run.attempt(self.what, self.compute, scope)
        if isinstance(raw, str) and self.lines:
            raw = text_lines(raw).strip()  # URLs and addresses are refused, not changed
        if is_blank(raw):
            return None
        try:
            value = _coerce(raw, self.type)
        except ValueError as exc:
            run.problem(self.what, str(exc))
            return None
        if isinstance(value, str):
            if self.type is FieldType.MARKDOWN:
                value = _shorten_markdown(value, self.limit)
            elif self.lines:
                value = shorten(value, self.limit)
            elif len(value) > self.limit:
                run.left_out(self.what, f"its value is longer than {self.limit:,} characters")
                return None
        if type(value) not in _EXACT_VALUES:
            return Field(
                label=self.label,
                value=value,
                type=self.type,
                currency=self.currency,
                copyable=self.copyable,
            )
        # What validation would keep as it is (a string: cleaned as the validator does).
        return _MAKE_FIELD(
            label=self.label,
            value=text_lines(value) if isinstance(value, str) else value,
            type=self.type,
            currency=self.currency,
            copyable=self.copyable,
        )


class _Link:
    __slots__ = ("label", "url", "what", "when")

    def __init__(self, layout: LinkLayout, limit: int) -> None:
        self.what = f"link {layout.label.source!r}"
        self.when = layout.when
        self.url = layout.url.render
        self.label = _Text(self.what, layout.label, limit)

    def build(self, run: _Run, scope: Scope) -> Link | None:
        what = self.what
        if not run.shown(what, self.when, scope):
            return None
        url = (run.attempt(what, self.url, scope) or "").strip()
        label = self.label(run, scope) if url else ""
        if not label:
            return None
        if not url.lower().startswith(_LINK_SCHEMES) or _NOT_IN_URLS.search(url):
            run.problem(what, f"{one_line(url[:80])!r} is not an http(s) or mailto URL")
            return None
        if len(url) > MAX_URL_LENGTH:
            run.left_out(what, f"its URL is longer than {MAX_URL_LENGTH:,} characters")
            return None
        return _MAKE_LINK(label=label, url=url)  # both one clean line already


class _Group:
    """Fields, then links: a card's own, or a section's."""

    __slots__ = ("fields", "links")

    def __init__(self, fields: Sequence[_Field], links: Sequence[_Link]) -> None:
        self.fields, self.links = tuple(fields), tuple(links)

    def build(self, run: _Run, scope: Scope) -> tuple[tuple[Field, ...], tuple[Link, ...]]:
        fields = tuple(f for piece in self.fields if (f := piece.build(run, scope)) is not None)
        links = tuple(k for piece in self.links if (k := piece.build(run, scope)) is not None)
        return fields, links


class _Section:
    __slots__ = ("collapsed", "group", "icon", "title", "what", "when")

    def __init__(self, what: str, when: Expression | None, title: _Text, group: _Group) -> None:
        self.what, self.when, self.title, self.group = what, when, title, group
        self.icon: str | None = None
        self.collapsed = False

    def build(self, run: _Run, scope: Scope) -> Section | None:
        if not run.shown(self.what, self.when, scope):
            return None
        title = self.title(run, scope)
        if not title:
            return None
        fields, links = self.group.build(run, scope)
        if not (fields or links):
            return None
        return _MAKE_SECTION(
            title=title, icon=self.icon, collapsed=self.collapsed, fields=fields, links=links
        )


class CompiledCard:
    """A :class:`~deskside.layout.CardLayout` compiled once: :meth:`sidebar` builds a
    customer's sidebar as :func:`~deskside.layout.build_sidebar` documents."""

    def __init__(self, layout: CardLayout) -> None:
        self.layout = layout
        limit = layout.max_value_length
        self.each = layout.each
        self.title = _Text("title", layout.title, limit)
        self.subtitle = _Text("subtitle", layout.subtitle, limit) if layout.subtitle else None
        self.badges = tuple(
            (f"badge {b.text.source!r}", b.when, _Text(f"badge {b.text.source!r}", b.text, limit))
            for b in layout.badges
        )
        self.colors = tuple(badge.color for badge in layout.badges)
        self.group = _group(layout.fields, layout.links, layout.currency, limit)
        self.sections = []
        for section in layout.sections:
            what = f"section {section.title.source!r}"
            group = _group(section.fields, section.links, layout.currency, limit)
            piece = _Section(what, section.when, _Text(what, section.title, limit), group)
            piece.icon, piece.collapsed = section.icon, section.collapsed
            self.sections.append(piece)

    # Compiled once and never changed: copies (pydantic copies private attributes) share it.
    def __copy__(self) -> CompiledCard:
        return self

    def __deepcopy__(self, _memo: dict[int, Any]) -> CompiledCard:
        return self

    def sidebar(self, profile: Profile, now: datetime, problems: list[str]) -> Sidebar:
        """The sidebar for ``profile`` at ``now``; notes for whoever previews in ``problems``."""
        notes = tuple(f"{label} unavailable" for label in profile.unavailable) + tuple(
            f"{label} as of {_as_of(fetched_at, now)}" for label, fetched_at in profile.stale
        )
        emails = profile.lookup.emails
        if not profile.found:
            return Sidebar(emails=emails, notes=notes)
        base = expression_context(profile, now)
        each = self.each or next(iter(profile.results))
        rows = profile.results[each].records[:MAX_CARDS] if each in profile.results else []
        contexts = [{**base, each: row} for row in rows] or [base]
        run = _Run(problems)
        cards, cut = fit(tuple(self.card(run, Scope(context)) for context in contexts))
        if cut:
            notes += (MORE_NOT_SHOWN,)
        return Sidebar(emails=emails, cards=cards, notes=notes)

    def card(self, run: _Run, scope: Scope) -> Card:
        with missing_values(scope) as missing:
            run.missing = missing
            title = self.title(run, scope)
            subtitle = self.subtitle(run, scope) if self.subtitle else ""
            badges = []
            for (what, when, text), color in zip(self.badges, self.colors, strict=True):
                if run.shown(what, when, scope) and (shown := text(run, scope)):
                    badges.append(_MAKE_BADGE(text=shown, color=color))
            fields, links = self.group.build(run, scope)
            sections = tuple(s for piece in self.sections if (s := piece.build(run, scope)))
        return _MAKE_CARD(
            title=title or one_line(str(scope["email"])),
            subtitle=subtitle or None,
            badges=tuple(badges),
            fields=fields,
            links=links,
            sections=sections,
        )


def _group(
    fields: Sequence[FieldLayout], links: Sequence[LinkLayout], currency: str, limit: int
) -> _Group:
    return _Group(
        [_Field(field, currency, limit) for field in fields],
        [_Link(link, limit) for link in links],
    )


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
