"""Sidebar → There There's typed rows: ``markdown``, ``numeric``, ``date``, ``boolean``, ``url``."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from deskside.card import Card, Field, FieldType, Link, Sidebar
from deskside.render.format import display, json_number
from deskside.render.markdown import escape_markdown, markdown_name

__all__ = ["render_rows"]

Row = dict[str, Any]


def render_rows(sidebar: Sidebar) -> list[Row]:
    """One row per fact. Unknown customers give ``[]``. ``markdown`` values from customer data
    are escaped; so is every row name that markdown would show differently (a link label, a
    section title from data)."""
    if sidebar.message:
        return []
    rows: list[Row] = []
    for card in sidebar.cards:
        rows += _card_rows(card)
    rows += [_text("Note", note) for note in sidebar.notes]
    return rows


def _card_rows(card: Card) -> list[Row]:
    rows = [_text("Account", card.title)]
    if card.badges:
        rows.append(_text("Status", " · ".join(badge.text for badge in card.badges)))
    rows += [_field(field) for field in card.fields]
    rows += [_link(link) for link in card.links]
    for section in card.sections:
        rows += [_field(field) for field in section.fields]
        rows += [_link(link) for link in section.links]
    return rows


def _field(field: Field) -> Row:
    value, name = field.value, markdown_name(field.label)
    match field.type:
        case FieldType.MARKDOWN:
            return {"name": name, "value": str(value), "type": "markdown"}
        case FieldType.NUMBER:
            return {"name": name, "value": json_number(value), "type": "numeric"}
        case FieldType.DATE if isinstance(value, date):
            return {"name": name, "value": value.isoformat(), "type": "date"}
        case FieldType.DATETIME if isinstance(value, datetime):
            stamp = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
            return {"name": name, "value": stamp, "type": "date"}
        case FieldType.BOOLEAN:
            return {"name": name, "value": bool(value), "type": "boolean"}
        case FieldType.URL:
            return _url(field.label, str(value))
    return _text(field.label, display(field))


def _link(link: Link) -> Row:
    return _url(link.label, link.url)


def _url(name: str, url: str) -> Row:
    """A ``url`` row; There There's ``url`` is http(s) only, so a mailto link shows its address."""
    if not url.startswith(("https://", "http://")):
        return _text(name, url.removeprefix("mailto:"))
    return {"name": markdown_name(name), "value": url, "type": "url"}


def _text(name: str, text: str) -> Row:
    return {"name": markdown_name(name), "value": escape_markdown(text), "type": "markdown"}
