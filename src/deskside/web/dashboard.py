"""What the Insights pages show, read from the store as ``/api/insights`` reads it: counts by
label, new conversations per week (drawn as an SVG bar chart on the server), the newest
conversations with their labels, and the topics' reports."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import distinct, func, select

from deskside.insights.classify import LABELS
from deskside.insights.models import (
    Classification,
    Conversation,
    Topic,
    TopicMember,
    utcnow,
)
from deskside.insights.queries import ConversationItem, event_counts, labelled_conversations
from deskside.insights.store import Store

__all__ = [
    "Chart",
    "ConversationRow",
    "Overview",
    "TopicRow",
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
    events: dict[str, int]
    chart: Chart


ConversationRow = ConversationItem
"""A conversation with its label and topic (:mod:`deskside.insights.queries`)."""


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


async def overview(store: Store, *, weeks: int = 12, today: date | None = None) -> Overview:
    """Totals by label, deliveries by status, and the last ``weeks`` weeks' chart."""
    first = _monday((today or utcnow().date()) - timedelta(weeks=weeks - 1))
    since = datetime.combine(first, datetime.min.time(), UTC)
    async with store.read() as session:
        total = await session.scalar(select(func.count()).select_from(Conversation)) or 0
        by_label = dict(
            (label, count)
            for label, count in await session.execute(
                select(Classification.label, func.count()).group_by(Classification.label)
            )
        )
        rows = await session.execute(
            select(Conversation.created_at, Classification.label)
            .outerjoin(Classification, Classification.conversation_id == Conversation.id)
            .where(Conversation.created_at >= since)
        )
        per_week: dict[str, dict[str, int]] = defaultdict(dict)
        for created_at, label in rows:
            if created_at is None:
                continue
            key = label if label in LABELS else "unlabelled"
            week = _monday(created_at.date()).isoformat()
            per_week[week][key] = per_week[week].get(key, 0) + 1
        events = await event_counts(session)
    all_weeks = [(first + timedelta(weeks=n)).isoformat() for n in range(weeks)]
    data = [(week, per_week.get(week, {})) for week in all_weeks]
    return Overview(
        conversations=total,
        labels={label: by_label.get(label, 0) for label in LABELS},
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
    """:func:`~deskside.insights.queries.labelled_conversations` in a read session."""
    async with store.read() as session:
        return await labelled_conversations(session, label=label, topic=topic, limit=limit)


@dataclass(frozen=True)
class TopicRow:
    """A live topic (not merged away) with its size."""

    id: int
    label: str
    name: str
    named_by_person: bool
    conversations: int
    customers: int
    """Distinct customer addresses."""
    last_seen: datetime | None
    trend: str | None
    """Why it is trending; None when it is not."""


async def topics(
    store: Store,
    trending: Mapping[int, str],
    *,
    label: str | None = None,
    ids: list[int] | None = None,
) -> list[TopicRow]:
    """Live topics with at least one conversation: trending first, then by customers,
    conversations and recency (only ``label``'s, or only ``ids``, when given)."""
    query = (
        select(
            Topic.id,
            Topic.label,
            Topic.name,
            Topic.named_by_person,
            func.count(TopicMember.conversation_id),
            func.count(distinct(Conversation.customer_email)),
            func.max(Conversation.created_at),
        )
        .join(TopicMember, TopicMember.topic_id == Topic.id)
        .join(Conversation, Conversation.id == TopicMember.conversation_id)
        .where(Topic.merged_into.is_(None))
        .group_by(Topic.id, Topic.label, Topic.name, Topic.named_by_person)
    )
    if label is not None:
        query = query.where(Topic.label == label)
    if ids is not None:
        query = query.where(Topic.id.in_(ids))
    async with store.read() as session:
        rows = (await session.execute(query)).all()
    found = [
        TopicRow(
            id=topic_id,
            label=topic_label,
            name=name,
            named_by_person=bool(by_person),
            conversations=int(count),
            customers=int(customers),
            last_seen=last_seen,
            trend=trending.get(topic_id),
        )
        for topic_id, topic_label, name, by_person, count, customers, last_seen in rows
    ]
    oldest = datetime.min.replace(tzinfo=UTC)
    found.sort(
        key=lambda t: (
            t.trend is None,
            -t.customers,
            -t.conversations,
            -_stamp(t.last_seen, oldest),
        )
    )
    return found


def _stamp(value: datetime | None, default: datetime) -> float:
    moment = value or default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() if moment > default else float("-inf")
