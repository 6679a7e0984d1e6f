"""Reads of the store shared by the commands, the JSON API and the web UI."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import String, cast, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights.analysis.labels import LABELS, UNSURE, UNSURE_BELOW, is_unsure
from deskside.insights.models import (
    Classification,
    Conversation,
    Event,
    Thread,
    Topic,
    TopicMember,
    utcnow,
)

__all__ = [
    "ConversationItem",
    "ConversationSummary",
    "EventSummary",
    "LabelCounts",
    "TopicSummary",
    "event_counts",
    "label_counts",
    "labelled_conversations",
    "list_conversations",
    "list_events",
    "retry_parked",
    "topic_summaries",
]


class ConversationSummary(BaseModel):
    """One line of ``deskside conversations``."""

    id: int
    number: int | None
    subject: str
    customer: str | None
    messages: int
    """Messages written by the customer or an agent (notes included, activity lines not)."""
    status: str | None
    created_at: datetime | None
    modified_at: datetime | None


class ConversationItem(BaseModel):
    """A conversation with its label and topic, as the API and the dashboard list them."""

    id: int
    number: int | None
    subject: str
    customer: str | None
    status: str | None
    created_at: datetime | None
    label: str | None
    confidence: float | None
    labelled_by: str | None
    """``model``, ``llm`` or ``agent``."""
    unsure: bool
    """A machine's label below :data:`~deskside.insights.analysis.labels.UNSURE_BELOW`: one
    for a person to check."""
    topic_id: int | None
    url: str


async def labelled_conversations(
    session: AsyncSession, *, label: str | None = None, topic: int | None = None, limit: int = 100
) -> list[ConversationItem]:
    """The newest conversations first, with label and topic: only ``label`` when given
    (``"unlabelled"``: those without one; ``"unsure"``: a machine's unsure labels, least
    confident first), only topic ``topic`` when given."""
    from deskside.insights.reports.report import conversation_url

    query = (
        select(Conversation, Classification, TopicMember.topic_id)
        .outerjoin(Classification, Classification.conversation_id == Conversation.id)
        .outerjoin(TopicMember, TopicMember.conversation_id == Conversation.id)
        .order_by(Conversation.created_at.desc().nulls_last(), Conversation.id.desc())
        .limit(limit)
    )
    if label == "unlabelled":
        query = query.where(Classification.label.is_(None))
    elif label == UNSURE:
        query = (
            query.where(Classification.by != "agent", Classification.confidence < UNSURE_BELOW)
            .order_by(None)
            .order_by(Classification.confidence, Conversation.id.desc())
        )
    elif label is not None:
        query = query.where(Classification.label == label)
    if topic is not None:
        query = query.where(TopicMember.topic_id == topic)
    rows = (await session.execute(query)).all()
    return [
        ConversationItem(
            id=conversation.id,
            number=conversation.number,
            subject=conversation.subject,
            customer=conversation.customer_email,
            status=conversation.status,
            created_at=conversation.created_at,
            label=classification.label if classification else None,
            confidence=classification.confidence if classification else None,
            labelled_by=classification.by if classification else None,
            unsure=bool(classification) and is_unsure(classification.confidence, classification.by),
            topic_id=topic_id,
            url=conversation_url(conversation.id, conversation.number),
        )
        for conversation, classification, topic_id in rows
    ]


class LabelCounts(BaseModel):
    """Conversations by label, and new ones per week and label."""

    conversations: int
    labels: dict[str, int]
    """Every label of :data:`~deskside.insights.analysis.classify.LABELS`, with zeros."""
    unsure: int = 0
    """Machine labels a person should check (``unsure``)."""
    weeks: list[tuple[date, dict[str, int]]]
    """Each week's Monday, oldest first, every week of the period (empty ones too), with the
    conversations begun that week by label (``unlabelled`` for those without one)."""


async def label_counts(
    session: AsyncSession, *, weeks: int, today: date | None = None
) -> LabelCounts:
    """:class:`LabelCounts` for the last ``weeks`` weeks, this one included."""
    first = _monday((today or utcnow().date()) - timedelta(weeks=weeks - 1))
    total = await session.scalar(select(func.count()).select_from(Conversation)) or 0
    by_label = dict(
        (label, count)
        for label, count in await session.execute(
            select(Classification.label, func.count()).group_by(Classification.label)
        )
    )
    unsure = await session.scalar(
        select(func.count())
        .select_from(Classification)
        .where(Classification.by != "agent", Classification.confidence < UNSURE_BELOW)
    )
    rows = await session.execute(
        select(Conversation.created_at, Classification.label)
        .outerjoin(Classification, Classification.conversation_id == Conversation.id)
        .where(Conversation.created_at >= datetime.combine(first, datetime.min.time(), UTC))
    )
    per_week: dict[date, dict[str, int]] = defaultdict(dict)
    for created_at, label in rows:
        if created_at is None:
            continue
        key = label if label in LABELS else "unlabelled"
        week = per_week[_monday(created_at.date())]
        week[key] = week.get(key, 0) + 1
    mondays = [first + timedelta(weeks=n) for n in range(weeks)]
    return LabelCounts(
        conversations=total,
        labels={label: by_label.get(label, 0) for label in LABELS},
        unsure=unsure or 0,
        weeks=[(monday, per_week.get(monday, {})) for monday in mondays],
    )


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


class TopicSummary(BaseModel):
    """A live topic (not merged away) with the counts of its conversations."""

    id: int
    label: str
    name: str
    named_by_person: bool
    conversations: int
    customers: int
    """Distinct customers: by address, else by Help Scout customer id, else each conversation
    (as the reports count them)."""
    first_seen: datetime | None
    last_seen: datetime | None
    trending: bool
    trend_note: str | None
    """Why it is trending; None when it is not."""


async def topic_summaries(
    session: AsyncSession,
    trends: Mapping[int, str],
    *,
    label: str | None = None,
    ids: list[int] | None = None,
) -> list[TopicSummary]:
    """Live topics with at least one conversation (only ``label``'s, or only ``ids``, when
    given): trending first (``trends``: the trending topics' notes by id), then by customers,
    conversations, the most recently seen, and id."""
    customer = func.coalesce(
        func.lower(Conversation.customer_email),
        cast(Conversation.customer_id, String),
        "conversation:" + cast(Conversation.id, String),
    )
    query = (
        select(
            Topic.id,
            Topic.label,
            Topic.name,
            Topic.named_by_person,
            func.count(TopicMember.conversation_id),
            func.count(func.distinct(customer)),
            func.min(Conversation.created_at),
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
    found = [
        TopicSummary(
            id=topic_id,
            label=topic_label,
            name=name,
            named_by_person=bool(by_person),
            conversations=count,
            customers=customers,
            first_seen=first,
            last_seen=last,
            trending=topic_id in trends,
            trend_note=trends.get(topic_id),
        )
        for topic_id, topic_label, name, by_person, count, customers, first, last in (
            await session.execute(query)
        )
    ]
    found.sort(
        key=lambda t: (not t.trending, -t.customers, -t.conversations, -_stamp(t.last_seen), t.id)
    )
    return found


def _stamp(moment: datetime | None) -> float:
    if moment is None:
        return float("-inf")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class EventSummary(BaseModel):
    """A stored webhook delivery, without its body."""

    id: int
    event: str
    status: str
    attempts: int
    received_at: datetime
    last_error: str | None


async def list_conversations(
    session: AsyncSession, *, limit: int = 100
) -> list[ConversationSummary]:
    """The most recently changed conversations first."""
    messages = (
        select(func.count())
        .where(Thread.conversation_id == Conversation.id, Thread.author != "system")
        .scalar_subquery()
    )
    rows = await session.execute(
        select(Conversation, messages)
        .order_by(Conversation.modified_at.desc().nulls_last(), Conversation.id.desc())
        .limit(limit)
    )
    return [
        ConversationSummary(
            id=conversation.id,
            number=conversation.number,
            subject=conversation.subject,
            customer=conversation.customer_email,
            messages=count,
            status=conversation.status,
            created_at=conversation.created_at,
            modified_at=conversation.modified_at,
        )
        for conversation, count in rows
    ]


async def event_counts(session: AsyncSession) -> dict[str, int]:
    """How many stored deliveries are ``pending``, ``done`` and ``parked``."""
    rows = await session.execute(select(Event.status, func.count()).group_by(Event.status))
    counts = {"pending": 0, "done": 0, "parked": 0}
    counts.update({status: count for status, count in rows})
    return counts


async def list_events(
    session: AsyncSession, *, status: str | None = None, limit: int = 100
) -> list[EventSummary]:
    """The newest deliveries first (only those with ``status`` when given)."""
    query = select(Event).order_by(Event.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Event.status == status)
    return [
        EventSummary.model_validate(event, from_attributes=True)
        for event in (await session.execute(query)).scalars()
    ]


async def retry_parked(session: AsyncSession) -> int:
    """Queue every parked delivery again (after a fix); the number re-queued."""
    parked = await session.scalar(
        select(func.count()).select_from(Event).where(Event.status == "parked")
    )
    await session.execute(
        update(Event)
        .where(Event.status == "parked")
        .values(status="pending", attempts=0, next_attempt_at=utcnow())
    )
    return parked or 0
