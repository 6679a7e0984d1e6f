"""Grouping (:class:`Grouping`, on top of :class:`~.labelling.Labelling`): labelled
conversations put in topics, regrouped when people decided something, a correction was stored,
or the conversations grew; people's renames, merges, undos and splits, which stick; and which
topics trend (notes stored with the topics). Deleted conversations leave the topic model too."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights import audit
from deskside.insights.analysis import merges
from deskside.insights.analysis.labelling import Labelling, corrections_stamp, still_stored
from deskside.insights.analysis.merges import UnknownTopic, live_topic
from deskside.insights.analysis.topics import (
    PATTERN_MIN_CUSTOMERS,
    UNNAMED,
    Decisions,
    Item,
    TopicModel,
)
from deskside.insights.analysis.topics import Topic as ModelTopic
from deskside.insights.models import (
    Classification,
    Conversation,
    Topic,
    TopicMember,
    utcnow,
)
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, insert_for

__all__ = ["Grouping", "UnknownTopic"]

log = logging.getLogger("deskside.insights.analysis")

_TRENDS_REUSE_SECONDS = 60.0
_REGROUP_GROWTH = 1.25
_REGROUP_SECONDS = 3600.0


class Grouping(Labelling):
    """Topics of the labelled conversations in ``store`` (see the module docstring)."""

    def __init__(self, store: Store, settings: InsightsSettings) -> None:
        super().__init__(store, settings)
        self._model: TopicModel | None = None
        self._grouped_with: tuple[str, tuple[int, Any]] | None = None
        """The people's decisions and :func:`~.labelling.corrections_stamp` the topics were last
        regrouped with: when either changes (in any process), :meth:`group` regroups
        everything."""
        self._grouping = asyncio.Lock()
        self._fitted = self._grouped = 0
        """Conversations in topics at the last regrouping, and now."""
        self._fitted_at = time.monotonic()
        self._trends_saved_at = -_TRENDS_REUSE_SECONDS

    async def group(self) -> int:
        """Put every labelled conversation in a topic: the first time, after a relabel or a
        person's decision, and when new conversations came after the conversations grew by a
        quarter or an hour passed since (the words that tell topics apart are learnt from them)
        by regrouping everything, keeping existing topics and decisions; otherwise new
        conversations join incrementally. The number of conversations placed."""
        async with self._grouping:
            decisions = await self._decisions()
            async with self.store.read() as session:
                grouped_with = (json.dumps(decisions.to_json()), await corrections_stamp(session))
                placed_before = select(TopicMember.conversation_id)
                new = await self._items(session, ~Classification.conversation_id.in_(placed_before))
            grown = bool(new) and (
                self._grouped + len(new) > _REGROUP_GROWTH * self._fitted
                or time.monotonic() - self._fitted_at > _REGROUP_SECONDS
            )
            if self._model is None or grouped_with != self._grouped_with or grown:
                placed = await self._regroup_all(decisions)
                self._grouped_with = grouped_with
                return placed
            if not new:
                return 0
            self._grouped += len(new)
            memberships = await asyncio.to_thread(self._model.assign, new, decisions)
            await self._save_topics(set(memberships))
            return len(new)

    async def rename_topic(self, topic_id: int, name: str, *, by: str) -> None:
        """A person's name for a topic; it replaces the generated one for good (audited as
        ``by``)."""
        name = _person_name(name)
        if not name:
            raise ValueError("the name is empty")
        async with self.store.session() as session:
            topic = await live_topic(session, topic_id)
            topic.name, topic.named_by_person = name, True
            audit.record(session, by, "topic_renamed", f"topic {topic_id} to {name!r}")

    async def merge_topics(
        self, topic_id: int, into: int, *, by: str, name: str | None = None
    ) -> int:
        """Merge ``topic_id`` into ``into``: its conversations, and later ones like them, go
        there for good, under ``name`` when given. Both must be live topics with the same
        label (audited as ``by``). The merge's id, to undo it (see :mod:`merges`)."""
        return await merges.merge_topics(
            self.store, topic_id, into, by=by, name=_person_name(name or "") or None
        )

    async def undo_merge(self, merge_id: int, *, by: str) -> int:
        """Undo the merge ``merge_id`` (see :func:`merges.undo_merge`); the restored topic."""
        return await merges.undo_merge(self.store, merge_id, by=by)

    async def split_topic(
        self, topic_id: int, conversation_ids: Sequence[int], name: str | None = None, *, by: str
    ) -> int:
        """Move ``conversation_ids`` out of ``topic_id`` into a new topic, for good (they are
        pinned there), named ``name`` unless that is blank. The new topic's id (audited as
        ``by``)."""
        name = _person_name(name or "")
        async with self.store.session() as session:
            source = await live_topic(session, topic_id)
            members = set(
                await session.scalars(
                    select(TopicMember.conversation_id).where(TopicMember.topic_id == topic_id)
                )
            )
            leaving = set(conversation_ids)
            if not leaving or not leaving <= members or leaving == members:
                raise ValueError("choose some, not all, of the topic's conversations")
            newest = await session.scalar(select(func.max(Topic.id))) or 0
            new_id = max(newest + 1, self._model.new_topic_id() if self._model else 0)
            label = f"{source.name} (split)"[:200]
            session.add(
                Topic(id=new_id, label=source.label, name=name or label, named_by_person=bool(name))
            )
            await session.execute(
                update(TopicMember)
                .where(TopicMember.conversation_id.in_(leaving))
                .values(topic_id=new_id, pinned=True)
            )
            detail = f"topic {topic_id}: {len(leaving)} conversations to new topic {new_id}"
            audit.record(session, by, "topic_split", detail)
        return new_id

    async def trends(self) -> dict[int, str]:
        """The trending topics' notes by topic id, as :meth:`update` last stored them."""
        async with self.store.read() as session:
            rows = await session.execute(
                select(Topic.id, Topic.trend_note).where(
                    Topic.trend_note.is_not(None), Topic.merged_into.is_(None)
                )
            )
            return {topic_id: note for topic_id, note in rows if note}

    async def save_trends(self) -> None:
        """Work out which topics trend (last 7 days against the 6 weeks before) and store
        their notes; at most once a minute, and after every regrouping."""
        if self._model is None or time.monotonic() - self._trends_saved_at < _TRENDS_REUSE_SECONDS:
            return
        model, now = self._model, utcnow()

        def compute() -> dict[int, str]:
            found = {}
            for topic in model.topics(min_customers=PATTERN_MIN_CUSTOMERS):
                trend = model.trend(topic.id, now)
                if trend.trending:
                    found[topic.id] = trend.explanation
            return found

        notes = await asyncio.to_thread(compute)
        async with self.store.session() as session:
            for topic in await session.scalars(
                select(Topic).where(or_(Topic.trend_note.is_not(None), Topic.id.in_(notes)))
            ):
                if topic.trend_note != notes.get(topic.id):
                    topic.trend_note = notes.get(topic.id)
        self._trends_saved_at = time.monotonic()

    async def _regroup_all(self, decisions: Decisions) -> int:
        async with self.store.read() as session:
            items = await self._items(session)
            previous = {
                member.conversation_id: member.topic_id
                for member in await session.scalars(select(TopicMember))
            }
            newest_topic = await session.scalar(select(func.max(Topic.id))) or 0
        model = self._model or TopicModel()
        model.reserve_ids(newest_topic + 1)
        await asyncio.to_thread(model.fit, items, decisions, previous)
        self._model, self._fitted, self._grouped = model, len(items), len(items)
        self._fitted_at = time.monotonic()
        self._trends_saved_at = -_TRENDS_REUSE_SECONDS
        await self._save_topics(None)
        return len(items)

    @staticmethod
    async def _first_subjects(
        session: AsyncSession, memberships: Mapping[int, int], topics: Mapping[int, ModelTopic]
    ) -> dict[int, str]:
        """For each topic the model could not name from its words (:data:`UNNAMED`), the
        subject of its first conversation (``memberships``: every conversation's topic),
        shortened."""
        unnamed = {topic_id for topic_id, topic in topics.items() if topic.name == UNNAMED}
        first: dict[int, int] = {}
        for conversation_id, topic_id in memberships.items():
            if topic_id in unnamed and conversation_id < first.get(topic_id, conversation_id + 1):
                first[topic_id] = conversation_id
        if not first:
            return {}
        rows = await session.execute(
            select(Conversation.id, Conversation.subject).where(Conversation.id.in_(first.values()))
        )
        subject_of = {cid: " ".join((subject or "").split()) for cid, subject in rows}
        named = {topic_id: subject_of.get(cid, "") for topic_id, cid in first.items()}
        return {
            topic_id: subject if len(subject) <= 60 else subject[:59].rstrip() + "…"
            for topic_id, subject in named.items()
            if subject
        }

    async def _items(self, session: AsyncSession, *where: Any) -> list[Item]:
        rows = await session.execute(
            select(
                Conversation.id,
                Conversation.customer_email,
                Conversation.customer_id,
                Conversation.created_at,
                Conversation.stored_at,
                Classification.label,
            )
            .join(Classification, Classification.conversation_id == Conversation.id)
            .where(*where)
            .order_by(Conversation.id)
        )
        found = list(rows)
        texts = {t.conversation_id: t.text for t in await self._texts([r[0] for r in found])}
        return [
            Item(
                conversation_id=cid,
                customer=email or (str(customer_id) if customer_id is not None else None),
                created_at=created_at or stored_at,
                text=texts.get(cid, ""),
                label=label,
            )
            for cid, email, customer_id, created_at, stored_at, label in found
        ]

    async def _decisions(self) -> Decisions:
        async with self.store.read() as session:
            topics = list(await session.scalars(select(Topic)))
            pinned = await session.execute(
                select(TopicMember.conversation_id, TopicMember.topic_id).where(
                    TopicMember.pinned.is_(True)
                )
            )
            return Decisions(
                merged={t.id: t.merged_into for t in topics if t.merged_into is not None},
                pinned={conversation_id: topic_id for conversation_id, topic_id in pinned},
                names={t.id: t.name for t in topics if t.named_by_person},
            )

    async def _save_topics(self, conversation_ids: set[int] | None) -> None:
        """Write the model's topics, and the memberships of ``conversation_ids`` (``None``:
        all); a person's pins and names are never overwritten."""
        model = self._model
        assert model is not None
        every = model.memberships()
        memberships = every
        if conversation_ids is not None:
            memberships = {c: t for c, t in every.items() if c in conversation_ids}
        topics = {topic.id: topic for topic in model.topics()}
        async with self.store.session() as session:
            alive = await still_stored(session, memberships)
            if len(alive) < len(memberships):  # deleted during the pass
                model.forget(set(memberships) - alive)
                every = model.memberships()
                memberships = {c: t for c, t in memberships.items() if c in alive}
                topics = {topic.id: topic for topic in model.topics()}
            stored = {topic.id: topic for topic in await session.scalars(select(Topic))}
            subjects = await self._first_subjects(session, every, topics)
            for topic_id in set(memberships.values()):
                topic = topics.get(topic_id)
                row = stored.get(topic_id)
                if topic is None:
                    continue
                name = subjects.get(topic_id) or topic.name
                if row is None:
                    session.add(Topic(id=topic_id, label=topic.label or "other", name=name))
                elif not row.named_by_person:
                    row.name, row.label = name, topic.label or row.label
            await session.flush()
            if conversation_ids is None:
                await session.execute(delete(TopicMember).where(TopicMember.pinned.is_(False)))
            pinned = set(
                await session.scalars(
                    select(TopicMember.conversation_id).where(TopicMember.pinned.is_(True))
                )
            )
            rows = [
                {"conversation_id": c, "topic_id": t, "pinned": False}
                for c, t in memberships.items()
                if c not in pinned
            ]
            if rows:
                statement = insert_for(session)(TopicMember)
                await session.execute(
                    statement.on_conflict_do_update(
                        index_elements=["conversation_id"],
                        set_={"topic_id": statement.excluded.topic_id},
                        where=TopicMember.__table__.c.pinned.is_(False),
                    ),
                    rows,
                )


def _person_name(name: str) -> str:
    """A topic name a person gave, its whitespace collapsed, at most 200 characters (maybe
    empty); ``ValueError`` for a NUL character, which PostgreSQL cannot store."""
    if "\x00" in name:
        raise ValueError("the name contains a NUL character")
    return " ".join(name.split())[:200]
