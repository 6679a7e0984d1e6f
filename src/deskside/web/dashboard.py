"""What the Insights pages show, read from the store as ``/api/insights`` reads it: counts by
label, new conversations per week (drawn as an SVG bar chart on the server), the newest
conversations with their labels, and the topics' reports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select

from deskside.insights.analysis.labels import LABELS
from deskside.insights.analysis.queries import (
    ConversationItem,
    TopicSummary,
    event_counts,
    label_counts,
    labelled_conversations,
    topic_summaries,
)
from deskside.insights.models import Conversation
from deskside.insights.store import Store

__all__ = [
    "Chart",
    "ConversationRow",
    "Overview",
    "conversation_number",
    "conversations",
    "overview",
    "topics",
]

SERIES = (*LABELS, "unlabelled")
"""The chart's series, bottom to top."""


@dataclass(frozen=True)
class Bar:
    """One label's part of one week's bar, in chart coordinates."""

    x: float
    y: float
    width: float
    height: float
    series: str
    count: int
    week: str


@dataclass(frozen=True)
class Tick:
    position: float
    text: str


@dataclass(frozen=True)
class Chart:
    """A stacked bar chart: new conversations per week and label."""

    width: int
    height: int
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    plot_left: int
    plot_bottom: int
    weeks: list[tuple[str, dict[str, int]]]
    """The data, for the table beside the chart."""


@dataclass(frozen=True)
class Overview:
    conversations: int
    labels: dict[str, int]
    unsure: int
    """Machine labels to check first."""
    events: dict[str, int]
    chart: Chart


ConversationRow = ConversationItem
"""A conversation with its label and topic (:mod:`deskside.insights.analysis.queries`)."""


async def overview(store: Store, *, weeks: int = 12, today: date | None = None) -> Overview:
    """Totals by label, deliveries by status, and the last ``weeks`` weeks' chart."""
    async with store.read() as session:
        counts = await label_counts(session, weeks=weeks, today=today)
        events = await event_counts(session)
    data = [(monday.isoformat(), per_label) for monday, per_label in counts.weeks]
    return Overview(
        conversations=counts.conversations,
        labels=counts.labels,
        unsure=counts.unsure,
        events=events,
        chart=chart(data),
    )


def chart(data: list[tuple[str, dict[str, int]]], *, width: int = 640, height: int = 240) -> Chart:
    """Geometry of a stacked bar per week (``data``: week → counts by series)."""
    left, right, top, bottom = 36, 8, 10, 28
    plot_width, plot_height = width - left - right, height - top - bottom
    peak = max([sum(counts.values()) for _, counts in data] + [0])
    step = _nice_step(peak)
    scale_top = max(step * -(-peak // step), step)
    slot = plot_width / max(len(data), 1)
    bar_width = max(slot * 0.7, 2)
    bars: list[Bar] = []
    x_ticks: list[Tick] = []
    for index, (week, counts) in enumerate(data):
        x = left + index * slot + (slot - bar_width) / 2
        y = float(top + plot_height)
        for series in SERIES:
            count = counts.get(series, 0)
            if not count:
                continue
            h = plot_height * count / scale_top
            y -= h
            bars.append(Bar(x, y, bar_width, h, series, count, week))
        if index % max(1, len(data) // 6) == 0:
            x_ticks.append(Tick(x + bar_width / 2, datetime.fromisoformat(week).strftime("%d %b")))
    y_ticks = [
        Tick(top + plot_height - plot_height * value / scale_top, str(value))
        for value in range(0, scale_top + 1, step)
    ]
    return Chart(width, height, bars, x_ticks, y_ticks, left, top + plot_height, data)


def _nice_step(peak: int) -> int:
    """A tick step giving at most five gridlines above zero: 1, 2, 5, 10, 20, 50, …"""
    power = 1
    while True:
        for factor in (1, 2, 5):
            if peak <= 5 * factor * power:
                return factor * power
        power *= 10


async def conversations(
    store: Store, *, label: str | None = None, topic: int | None = None, limit: int = 100
) -> list[ConversationRow]:
    """:func:`~deskside.insights.analysis.queries.labelled_conversations` in a read session."""
    async with store.read() as session:
        return await labelled_conversations(session, label=label, topic=topic, limit=limit)


async def conversation_number(store: Store, conversation_id: int) -> int | None:
    """The Help Scout number of a stored conversation (None without one, or when not stored)."""
    async with store.read() as session:
        return await session.scalar(
            select(Conversation.number).where(Conversation.id == conversation_id)
        )


async def topics(
    store: Store,
    trending: Mapping[int, str],
    *,
    label: str | None = None,
    ids: list[int] | None = None,
) -> list[TopicSummary]:
    """:func:`~deskside.insights.analysis.queries.topic_summaries` in a read session."""
    async with store.read() as session:
        return await topic_summaries(session, trending, label=label, ids=ids)
