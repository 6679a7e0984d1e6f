"""The neutral model of what an agent sees; every renderer reads it, none writes it.

Values here are typed (numbers, dates, booleans) and *unescaped*: each renderer escapes for
its own target. The one exception is :attr:`FieldType.MARKDOWN`, whose value is markdown
already built from an author's template with every customer value escaped.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

__all__ = ["Badge", "Card", "Color", "Field", "FieldType", "Link", "Section", "Sidebar", "Value"]

Value = bool | int | float | Decimal | datetime | date | str


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

    label: str
    value: Value
    type: FieldType = FieldType.TEXT
    currency: str | None = None
    copyable: bool = False


class Badge(_Model):
    text: str
    color: Color = Color.GREY


class Link(_Model):
    """A link to open in a new tab; ``url`` is always http(s) or mailto."""

    label: str
    url: str


class Section(_Model):
    """A titled, collapsible group of fields and links."""

    title: str
    icon: str | None = None
    collapsed: bool = False
    fields: tuple[Field, ...] = ()
    links: tuple[Link, ...] = ()


class Card(_Model):
    """One account of the customer: a company, workspace or subscription."""

    title: str
    subtitle: str | None = None
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
    notes: tuple[str, ...] = ()
    message: str | None = None

    @property
    def found(self) -> bool:
        return bool(self.cards)
