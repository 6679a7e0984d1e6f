"""How much of a sidebar one answer holds: every helpdesk's answer stays under 64 KiB.

The bound is Intercom's limit for a canvas (the lowest any helpdesk documents); Help Scout,
There There, Helper and Plain document none lower. Pieces are weighed by the most any
renderer can make of them, so the bound holds for every format without rendering each one:
a letter, digit or space is one byte everywhere, another character its UTF-8 bytes, ASCII
punctuation and line breaks at most six bytes (``&amp;`` in HTML, ``\\\\`` in markdown written as
JSON), in an author's markdown at most twelve (``[a](b)`` becomes a link tag), and each piece
carries a few hundred bytes of markup. Trailing pieces that do not fit are dropped
whole, never cut, and the answer says so (:data:`MORE_NOT_SHOWN`).
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from deskside.card import Card, Field, FieldType, Link

__all__ = ["ANSWER_BYTES", "MORE_NOT_SHOWN", "fit"]

ANSWER_BYTES = 64 * 1024
"""What no answer exceeds, whichever helpdesk it is for (a Plain answer: per card key)."""
MORE_NOT_SHOWN = "… more not shown"
"""The note of an answer whose trailing pieces were dropped."""

_RESERVED_BYTES = 12 * 1024
"""For what is not weighed: the addresses (20 of up to 320 characters), notes, envelopes."""
_PIECE_BYTES = 400
"""Markup around one piece: a Plain row with a copy button, an HTML list item, JSON keys."""
_PUNCTUATION_BYTES = 6
_MARKDOWN_PUNCTUATION_BYTES = 12
_WITHOUT_PUNCTUATION = str.maketrans("", "", string.punctuation + "\n")
_TWICE_SHOWN = (FieldType.URL, FieldType.EMAIL)
"""Field types whose value is written twice (Help Scout: the link and its text)."""
_Piece = TypeVar("_Piece")


def fit(cards: Sequence[Card], budget: int = ANSWER_BYTES) -> tuple[tuple[Card, ...], bool]:
    """The leading ``cards`` and pieces that fit in an answer of ``budget`` bytes, and whether
    anything was dropped. Pieces go in the order every renderer shows them: each card's title,
    subtitle and badges, its fields, its links, then each section's title, fields and links."""
    if sum(map(_most, cards)) <= budget - _RESERVED_BYTES:
        return tuple(cards), False
    room = _Room(budget - _RESERVED_BYTES)
    kept: list[Card] = []
    for card in cards:
        if not room.take(_heading_weight(card)):
            break
        links = functools.partial(_link_weight, card=card)
        update: dict[str, Any] = {
            "fields": room.leading(card.fields, _field_weight),
            "links": room.leading(card.links, links),
        }
        sections = []
        for section in card.sections:
            if not room.take(_PIECE_BYTES + _weight(section.title)):
                break
            shown: dict[str, Any] = {
                "fields": room.leading(section.fields, _field_weight),
                "links": room.leading(section.links, links),
            }
            if shown["fields"] or shown["links"]:
                sections.append(section.model_copy(update=shown))
        update["sections"] = tuple(sections)
        kept.append(card.model_copy(update=update))
    return tuple(kept), room.full


class _Room:
    """What is left of the budget; once a piece does not fit, no later piece does either."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.full = False

    def take(self, weight: int) -> bool:
        if self.full or weight > self.left:
            self.full = True
            return False
        self.left -= weight
        return True

    def leading(
        self, pieces: Sequence[_Piece], weight: Callable[[_Piece], int]
    ) -> tuple[_Piece, ...]:
        """The first of ``pieces`` that fit, taken."""
        kept = []
        for piece in pieces:
            if not self.take(weight(piece)):
                break
            kept.append(piece)
        return tuple(kept)


def _most(card: Card) -> int:
    """At least what every piece of ``card`` weighs (a character weighs at most 6 bytes, in
    an author's markdown 12): when all cards together weigh less, all of them fit. An empty
    section (which :func:`fit` drops) makes it count as too heavy."""
    if not all(section.fields or section.links for section in card.sections):
        return ANSWER_BYTES
    pieces = 2 + len(card.badges) + 2 * len(card.links)
    chars = len(card.title) + len(card.subtitle or "") + sum(len(b.text) for b in card.badges)
    for fields, links in [(card.fields, card.links)] + [
        (section.fields, section.links) for section in card.sections
    ]:
        pieces += 1 + len(fields) + len(links)
        chars += sum(len(link.label) + len(link.url) + len(card.title) for link in links)
        for field in fields:
            chars += 2 * len(field.label) + 2 * len(str(field.value))
            if field.type is FieldType.MARKDOWN:
                chars += 2 * len(str(field.value))
    chars += sum(len(section.title) for section in card.sections)
    return _PIECE_BYTES * pieces + _MARKDOWN_PUNCTUATION_BYTES * chars


def _weight(text: str, punctuation: int = _PUNCTUATION_BYTES) -> int:
    """The most bytes ``text`` becomes once escaped and encoded, by any renderer."""
    marks = len(text) - len(text.translate(_WITHOUT_PUNCTUATION))
    return len(text.encode("utf-8", "replace")) + (punctuation - 1) * marks


def _heading_weight(card: Card) -> int:
    """The card's heading: title, subtitle and badges (There There joins badges in one row)."""
    texts = [card.title, card.subtitle or "", *(badge.text for badge in card.badges)]
    return _PIECE_BYTES * (1 + len(card.badges)) + sum(map(_weight, texts))


def _field_weight(field: Field) -> int:
    """The label twice (Plain's copy button names it), the value twice where it is a link's
    address and text, or is copied."""
    value = str(field.value)
    if field.type is FieldType.MARKDOWN:
        shown = _weight(value, _MARKDOWN_PUNCTUATION_BYTES)
    else:
        times = 2 if field.type in _TWICE_SHOWN or field.copyable else 1
        shown = _weight(value) * times
    return _PIECE_BYTES + 2 * _weight(field.label) + shown


def _link_weight(link: Link, card: Card) -> int:
    """Helper names a link after its card when there are several: the title is counted."""
    return _PIECE_BYTES + _weight(link.label) + _weight(link.url) + _weight(card.title)
