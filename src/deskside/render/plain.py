"""Sidebar → Plain's customer-card components (single-key objects, docs/protocols.md §5).

Text from customer data (titles, labels, values, notes) is ``componentPlainText``, which Plain
shows as it is; ``componentText`` (markdown) holds only a ``markdown`` field, the author's own
markdown with the data inside it already escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deskside.card import Card, Color, Field, FieldType, Link, Section, Sidebar
from deskside.render.format import display

__all__ = ["card_components", "message_components"]

Component = dict[str, Any]

_BADGE_COLORS = {
    Color.GREY: "GREY",
    Color.GREEN: "GREEN",
    Color.BLUE: "BLUE",
    Color.ORANGE: "YELLOW",
    Color.RED: "RED",
    Color.PURPLE: "BLUE",
}


def card_components(
    sidebar: Sidebar, *, main: bool, sections: Sequence[str]
) -> list[Component] | None:
    """The components of one Plain card: each account's title, badges, fields and links (when
    ``main``) and its sections titled in ``sections``. None when there is nothing to show."""
    components: list[Component] = []
    for card in sidebar.cards:
        chosen = [s for s in card.sections if s.title in sections]
        if not main and not chosen:
            continue
        if components:
            components.append(_divider())
        if main or len(sidebar.cards) > 1:
            components += _heading(card)
        if main:
            components += _facts(card.fields, card.links)
        for section in chosen:
            components += _section(section, divided=main)
    if not components:
        return None
    return components + message_components(sidebar.notes, color="WARNING")


def message_components(messages: Sequence[str], *, color: str = "MUTED") -> list[Component]:
    """Short lines of text, e.g. "Billing unavailable"."""
    return [_plain_text(message, size="S", color=color) for message in messages]


def _heading(card: Card) -> list[Component]:
    components = [_plain_text(card.title, size="L")]
    if card.subtitle:
        components.append(_plain_text(card.subtitle, size="S", color="MUTED"))
    components += [
        {"componentBadge": {"badgeLabel": b.text, "badgeColor": _BADGE_COLORS[b.color]}}
        for b in card.badges
    ]
    return components


def _section(section: Section, *, divided: bool) -> list[Component]:
    heading = [_divider()] if divided else []
    return [*heading, _plain_text(section.title), *_facts(section.fields, section.links)]


def _facts(fields: Sequence[Field], links: Sequence[Link]) -> list[Component]:
    components = [_row(field) for field in fields]
    components += [
        {"componentLinkButton": {"linkButtonLabel": link.label, "linkButtonUrl": link.url}}
        for link in links
    ]
    return components


def _row(field: Field) -> Component:
    if field.type is FieldType.MARKDOWN:
        value: Component = {"componentText": {"text": str(field.value), "textSize": "S"}}
    elif field.type is FieldType.URL:
        value = {"componentLinkButton": {"linkButtonLabel": "Open", "linkButtonUrl": field.value}}
    else:
        value = _plain_text(display(field), size="S")
    aside = [value]
    if field.copyable:
        aside.append(
            {
                "componentCopyButton": {
                    "copyButtonValue": str(field.value),
                    "copyButtonTooltipLabel": f"Copy {field.label}",
                }
            }
        )
    return {
        "componentRow": {
            "rowMainContent": [_plain_text(field.label, size="S", color="MUTED")],
            "rowAsideContent": aside,
        }
    }


def _plain_text(text: str, *, size: str = "M", color: str = "NORMAL") -> Component:
    """Text shown exactly as it is: no markdown, so nothing to escape."""
    return {
        "componentPlainText": {"plainText": text, "plainTextSize": size, "plainTextColor": color}
    }


def _divider() -> Component:
    return {"componentDivider": {"dividerSpacingSize": "M"}}
