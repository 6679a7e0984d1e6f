"""Merging topics, and undoing a merge within :data:`UNDO_MINUTES`.

A merge moves a topic's conversations into another of the same label for good (new ones like
them follow), optionally under a name the person typed. Its audit row (``topic_merged``) keeps
what an undo needs: the members it moved (with their pins) and the target's name before; an
undo puts both topics back as they were and is audited as ``merge_undone``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights import audit
from deskside.insights.models import ErasureAudit, Topic, TopicMember, utcnow
from deskside.insights.store import Store

__all__ = [
    "UNDO_MINUTES",
    "RecentMerge",
    "UnknownTopic",
    "latest_merge",
    "merge_topics",
    "undo_merge",
]

UNDO_MINUTES = 10
MERGED, UNDONE = "topic_merged", "merge_undone"


class UnknownTopic(LookupError):
    """No live topic has that id (never existed, or merged into another)."""


@dataclass(frozen=True)
class RecentMerge:
    """A merge that can still be undone: its id, the topic merged away, the topic it went
    into."""

    id: int
    source: int
    target: int


async def live_topic(session: AsyncSession, topic_id: int) -> Topic:
    """The topic ``topic_id`` unless it is missing or merged away (:class:`UnknownTopic`)."""
    topic = await session.get(Topic, topic_id)
    if topic is None or topic.merged_into is not None:
        raise UnknownTopic(f"no topic {topic_id}")
    return topic


async def merge_topics(
    store: Store, topic_id: int, into: int, *, by: str, name: str | None = None
) -> int:
    """Merge ``topic_id`` into ``into`` (both live, same label), naming the result ``name``
    when given (a person's name then). The merge's id, for :func:`undo_merge`."""
    if topic_id == into:
        raise ValueError("a topic cannot be merged into itself")
    async with store.session() as session:
        source = await live_topic(session, topic_id)
        target = await live_topic(session, into)
        if source.label != target.label:
            raise ValueError(f"a {source.label} topic cannot merge into a {target.label} one")
        members = await session.execute(
            select(TopicMember.conversation_id, TopicMember.pinned).where(
                TopicMember.topic_id == topic_id
            )
        )
        undo: dict[str, Any] = {
            "from": topic_id,
            "into": into,
            "members": [[conversation, bool(pinned)] for conversation, pinned in members],
            "into_name": target.name,
            "into_named_by_person": bool(target.named_by_person),
        }
        source.merged_into = into
        if name:
            target.name, target.named_by_person = name, True
        await session.execute(
            update(TopicMember).where(TopicMember.topic_id == topic_id).values(topic_id=into)
        )
        renamed = f" named {name!r}" if name else ""
        row = audit.record(session, by, MERGED, f"topic {topic_id} into {into}{renamed}", undo)
        await session.flush()
        return row.id


async def undo_merge(store: Store, merge_id: int, *, by: str) -> int:
    """Put back both topics of the merge ``merge_id`` as they were (members, pins, names),
    within :data:`UNDO_MINUTES` of it and while the merged topic is still as it left it. The
    restored topic's id; ``LookupError`` for no such merge, ``ValueError`` when too late."""
    async with store.session() as session:
        row = await session.get(ErasureAudit, merge_id)
        if row is None or row.action != MERGED or "from" not in row.counts:
            raise LookupError(f"no merge {merge_id}")
        facts = dict(row.counts)
        if facts.get("undone"):
            raise ValueError("this merge was already undone")
        if utcnow() - row.at > timedelta(minutes=UNDO_MINUTES):
            raise ValueError(f"a merge can be undone for {UNDO_MINUTES} minutes only")
        source = await session.get(Topic, int(facts["from"]))
        target = await live_topic(session, int(facts["into"]))
        if source is None or source.merged_into != target.id:
            raise ValueError("the topics changed since the merge")
        source.merged_into = None
        target.name = str(facts["into_name"])
        target.named_by_person = bool(facts["into_named_by_person"])
        for pinned in (True, False):
            moved = [int(c) for c, was_pinned in facts["members"] if bool(was_pinned) is pinned]
            if moved:
                await session.execute(
                    update(TopicMember)
                    .where(TopicMember.conversation_id.in_(moved))
                    .values(topic_id=source.id, pinned=pinned)
                )
        row.counts = {**facts, "undone": True}
        audit.record(session, by, UNDONE, f"topic {source.id} out of {target.id} again")
        return source.id


async def latest_merge(store: Store, topic_id: int) -> RecentMerge:
    """The latest merge of ``topic_id`` (merged away, or merged into) not undone yet and made
    within :data:`UNDO_MINUTES`. :class:`UnknownTopic` when no topic ever had that id;
    ``ValueError`` when there is no such merge (none, undone, or too late)."""
    since = utcnow() - timedelta(minutes=UNDO_MINUTES)
    async with store.read() as session:
        if await session.get(Topic, topic_id) is None:
            raise UnknownTopic(f"no topic {topic_id}")
        rows = await session.scalars(
            select(ErasureAudit)
            .where(ErasureAudit.action == MERGED, ErasureAudit.at >= since)
            .order_by(ErasureAudit.id.desc())
        )
        for row in rows:
            facts = row.counts
            if topic_id in (facts.get("from"), facts.get("into")) and not facts.get("undone"):
                return RecentMerge(row.id, int(facts["from"]), int(facts["into"]))
    raise ValueError(
        f"topic {topic_id} has no merge to undo (a merge can be undone for {UNDO_MINUTES} minutes)"
    )
