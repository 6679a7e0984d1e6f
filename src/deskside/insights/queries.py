"""Reads of the store shared by the commands, the JSON API and the web UI."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights.models import (
    Classification,
    Conversation,
    Event,
    Thread,
    TopicMember,
    utcnow,
)

__all__ = [
    "ConversationItem",
    "ConversationSummary",
    "EventSummary",
    "event_counts",
    "labelled_conversations",
    "list_conversations",
    "list_events",
    "retry_parked",
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
    topic_id: int | None
    url: str


async def labelled_conversations(
    session: AsyncSession, *, label: str | None = None, topic: int | None = None, limit: int = 100
) -> list[ConversationItem]:
    """The newest conversations first, with label and topic: only ``label`` when given
    (``"unlabelled"``: those without one), only topic ``topic`` when given."""
    from deskside.insights.reports import conversation_url

    query = (
        select(Conversation, Classification, TopicMember.topic_id)
        .outerjoin(Classification, Classification.conversation_id == Conversation.id)
        .outerjoin(TopicMember, TopicMember.conversation_id == Conversation.id)
        .order_by(Conversation.created_at.desc().nulls_last(), Conversation.id.desc())
        .limit(limit)
    )
    if label == "unlabelled":
        query = query.where(Classification.label.is_(None))
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
            topic_id=topic_id,
            url=conversation_url(conversation.id, conversation.number),
        )
        for conversation, classification, topic_id in rows
    ]


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
