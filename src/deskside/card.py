"""The neutral model of what an agent sees; every renderer reads it, none writes it.

Values here are typed (numbers, dates, booleans) and *unescaped*: each renderer escapes for
its own target. The one exception is :attr:`FieldType.MARKDOWN`, whose value is markdown
already built from an author's template with every customer value escaped.

Every string here is shown as it is, so none holds a control character (NUL included) or a
bidirectional override: they are removed when a model is built. Only a field's value keeps its
line breaks (as ``\\n``); every other string is one line.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

__all__ = [
    "Badge",
    "Card",
    "Color",
    "Field",
    "FieldType",
    "Link",
    "Section",
    "Sidebar",
    "Value",
    "one_line",
    "shorten",
    "text_lines",
]

Value = bool | int | float | Decimal | datetime | date | str

# What str.splitlines() breaks on; "\r\n" is one break.
_LINE_BREAK = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
# The other C0 and C1 controls (a tab becomes a space), and the marks, embeddings, overrides
# and isolates that change the direction text is shown in (a name that reads backwards).
_INVISIBLE = re.compile(
    r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def one_line(text: str) -> str:
    """``text`` without control or bidi characters, its line breaks and tabs as spaces."""
    if text.isprintable():  # none of those (they are all "Other" or "Separator" characters)
        return text
    return _INVISIBLE.sub("", _LINE_BREAK.sub(" ", text)).replace("\t", " ")


def text_lines(text: str) -> str:
    """``text`` without control or bidi characters, its line breaks as ``\\n``, tabs as spaces."""
    if text.isprintable():
        return text
    return _INVISIBLE.sub("", _LINE_BREAK.sub("\n", text)).replace("\t", " ")


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending with "…" when it was cut."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + "…"


Line = Annotated[str, AfterValidator(one_line)]
"""A string shown on one line."""


class FieldType(StrEnum):
    TEXT = "text"
    MARKDOWN = "markdown"
    NUMBER = "number"
    CURRENCY = "currency"
    DATE = "date"
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    URL = "url"
    EMAIL = "email"


class Color(StrEnum):
    GREY = "grey"
    GREEN = "green"
    BLUE = "blue"
    ORANGE = "orange"
    RED = "red"
    PURPLE = "purple"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Field(_Model):
    """One labelled value. ``currency`` is an ISO 4217 code, set for currency fields only;
    ``copyable`` asks helpdesks that can for a copy button (ids)."""

    label: Line
    value: Value
    type: FieldType = FieldType.TEXT
    currency: str | None = None
    copyable: bool = False

    @field_validator("value")
    @classmethod
    def _text_lines(cls, value: Any) -> Any:
        return text_lines(value) if isinstance(value, str) else value


class Badge(_Model):
    text: Line
    color: Color = Color.GREY


class Link(_Model):
    """A link to open in a new tab; ``url`` is always http(s) or mailto."""

    label: Line
    url: Line


class Section(_Model):
    """A titled, collapsible group of fields and links."""

    title: Line
    icon: str | None = None
    collapsed: bool = False
    fields: tuple[Field, ...] = ()
    links: tuple[Link, ...] = ()


class Card(_Model):
    """One account of the customer: a company, workspace or subscription."""

    title: Line
    subtitle: Line | None = None
    badges: tuple[Badge, ...] = ()
    fields: tuple[Field, ...] = ()
    links: tuple[Link, ...] = ()
    sections: tuple[Section, ...] = ()


class Sidebar(_Model):
    """Everything one answer shows.

    ``cards`` is empty when nobody was found. ``notes`` are short warnings (a source that was
    unavailable). ``message`` replaces everything else when the request was not a lookup at all
    (a mailbox deskside is not set up for, a conversation without an address).
    """

    emails: tuple[str, ...] = ()
    cards: tuple[Card, ...] = ()
    notes: tuple[Line, ...] = ()
    message: Line | None = None

    @property
    def found(self) -> bool:
        return bool(self.cards)
