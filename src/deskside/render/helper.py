"""Sidebar → Helper's ``customer`` object: typed ``metadata`` and link ``actions``.

Helper shows metadata values as plain text and hands them to its AI: no markdown is rendered,
so a ``markdown`` field is given as the plain text a reader would see (no ``**``, no escapes).
"""

from __future__ import annotations

from typing import Any

from deskside.card import Card, Field, FieldType, Link, Sidebar
from deskside.render.format import json_value
from deskside.render.markdown import markdown_to_text

__all__ = ["actions", "metadata"]


def metadata(sidebar: Sidebar) -> dict[str, Any]:
    """The cards as typed JSON for agents and Helper's AI: one account's facts directly, several
    under ``Accounts``; sections nest under their titles; notes under ``Notes``."""
    if len(sidebar.cards) == 1:
        facts = _card_facts(sidebar.cards[0])
    else:
        facts = {"Accounts": [_card_facts(card) for card in sidebar.cards]}
    if sidebar.notes:
        facts["Notes"] = list(sidebar.notes)
    return facts


def actions(sidebar: Sidebar) -> dict[str, str]:
    """Every link as ``{label: url}``; with several accounts, labels name their account."""
    found: dict[str, str] = {}
    for card in sidebar.cards:
        for link in _links(card):
            label = link.label if len(sidebar.cards) == 1 else f"{link.label} ({card.title})"
            found.setdefault(label, link.url)
    return found


def _card_facts(card: Card) -> dict[str, Any]:
    facts: dict[str, Any] = {"Account": card.title}
    if card.subtitle:
        facts["About"] = card.subtitle
    if card.badges:
        facts["Status"] = [badge.text for badge in card.badges]
    facts.update({field.label: _plain_value(field) for field in card.fields})
    for section in card.sections:
        if section.fields:
            key = section.title if section.title not in facts else f"{section.title} details"
            facts[key] = {field.label: _plain_value(field) for field in section.fields}
    return facts


def _plain_value(field: Field) -> bool | int | float | str:
    if field.type is FieldType.MARKDOWN:
        return markdown_to_text(str(field.value))
    return json_value(field)


def _links(card: Card) -> list[Link]:
    return [*card.links, *(link for section in card.sections for link in section.links)]
