"""Keeps the store's insight current: every conversation classified from what its customer
wrote, relabels by agents learnt from, and the topics regrouped.

One process at a time keeps it current (:meth:`Analysis.update`, under the store's
``analysis`` lease); any process reads the results from the store and records people's
decisions there. The classifier trains on the shipped examples, the configured example files and
every stored correction; when any process stores a correction, the next
:meth:`Analysis.classify_pending` retrains first, in a thread, while the old model keeps
answering, and the next :meth:`Analysis.group` regroups. Trending notes are stored with the
topics.

Conversations may be deleted while a pass works (webhooks keep arriving): each write keeps
only the conversations still stored, in the same transaction that writes (see
:func:`_still_stored`), so a pass always finishes; the deleted ones leave the topic model too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights import audit
from deskside.insights.analysis import merges
from deskside.insights.analysis.classify import (
    Classifier,
    Example,
    Prediction,
    canonical_label,
    labels_for,
    load_shipped_examples,
    read_examples_file,
)
from deskside.insights.analysis.customer_text import conversation_text
from deskside.insights.analysis.merges import UnknownTopic, live_topic
from deskside.insights.analysis.topics import (
    PATTERN_MIN_CUSTOMERS,
    UNNAMED,
    Decisions,
    Item,
    TopicModel,
)
from deskside.insights.analysis.topics import Topic as ModelTopic
from deskside.insights.helpscout.docs import DocsAPIError, fetch_article_titles
from deskside.insights.models import (
    Classification,
    Conversation,
    LabelledExample,
    Thread,
    Topic,
    TopicMember,
    utcnow,
)
from deskside.insights.privacy.retention import Retention
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, finish_before_cancel, insert_for, take_lease

__all__ = ["ANALYSIS_LEASE", "Analysis", "UnknownConversation", "UnknownTopic"]

log = logging.getLogger("deskside.insights.analysis")

ANALYSIS_LEASE = "analysis"
"""The store's lease of the process that keeps the analysis current."""
_LEASE_SECONDS = 30.0
"""How long the lease outlives its holder: another process takes over after that."""
_TRENDS_REUSE_SECONDS = 60.0
_REGROUP_GROWTH = 1.25
_REGROUP_SECONDS = 3600.0
_TITLES_REUSE_SECONDS = 3600.0
_IDS_PER_STATEMENT = 5000


class UnknownConversation(LookupError):
    """No stored conversation has that id."""


@dataclass(frozen=True)
class _Text:
    conversation_id: int
    text: str


class Analysis:
    """Classification (and, through it, topics) for the conversations in ``store``."""

    def __init__(self, store: Store, settings: InsightsSettings) -> None:
        self.store = store
        self.settings = settings
        self.classifier = Classifier()
        self._trained_with: tuple[int, Any] | None = None
        """The :func:`_corrections` the current model learnt from."""
        self._training = asyncio.Lock()
        self._file_examples: list[Example] | None = None
        self._model: TopicModel | None = None
        self._grouped_with: tuple[str, tuple[int, Any]] | None = None
        """The people's decisions and :func:`_corrections` the topics were last regrouped with:
        when either changes (in any process), :meth:`group` regroups everything."""
        self._grouping = asyncio.Lock()
        self._fitted = self._grouped = 0
        """Conversations in topics at the last regrouping, and now."""
        self._fitted_at = time.monotonic()
        self.leading = False
        """Whether this process holds the analysis lease, as of its last try to take it."""
        self._trends_saved_at = -_TRENDS_REUSE_SECONDS
        self._titles_read_at = -_TITLES_REUSE_SECONDS
        self._retention = Retention(store, settings)

    async def train(self, *, force: bool = False) -> bool:
        """Train if no model exists yet or a correction was stored since; whether it did."""
        async with self._training:
            async with self.store.read() as session:
                newest = await _corrections(session)
                if not force and self.classifier.trained and newest == self._trained_with:
                    return False
                stored = (await session.execute(select(LabelledExample))).scalars().all()
            corrections = [
                Example(row.text, row.label, "correction" if row.source == "correction" else "file")
                for row in stored
            ]
            examples = [*load_shipped_examples(), *self._examples_from_files(), *corrections]
            await asyncio.to_thread(self.classifier.train, examples, labels_for(examples))
            self._trained_with = newest
            log.info("classifier trained on %d examples", self.classifier.examples)
            return True

    async def update(self) -> None:
        """Bring everything up to date: labels for what is new, then the topics and which of
        them trend. One process at a time (see the module docstring)."""
        await self._refresh_article_titles()
        await self.classify_pending()
        await self.group()
        await self.save_trends()

    async def update_unless_elsewhere(self, holder: str) -> bool:
        """:meth:`update` as ``holder`` (a name unique to this process) unless another process
        holds the analysis lease; the lease is kept meanwhile, and afterwards until it
        expires or is released. Whether it ran."""
        if not await take_lease(self.store, ANALYSIS_LEASE, holder, _LEASE_SECONDS):
            self.leading = False
            return False
        if not self.leading:  # taking over: another process may have grouped meanwhile
            self._grouped_with = None
            self.leading = True

        async def keep_lease() -> None:
            while True:
                await asyncio.sleep(_LEASE_SECONDS / 3)
                await finish_before_cancel(
                    take_lease(self.store, ANALYSIS_LEASE, holder, _LEASE_SECONDS)
                )

        keeper = asyncio.create_task(keep_lease())
        try:
            if await self._retention.keep():  # keep_days; an erasure or a purge removed rows
                self._grouped_with = None
            await self.update()
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        return True

    async def _refresh_article_titles(self) -> None:
        """With ``docs_api_key``: the Help Scout Docs article titles, read again hourly; a
        failure keeps the titles read before."""
        key = self.settings.classifier.docs_api_key
        if key is None or time.monotonic() - self._titles_read_at < _TITLES_REUSE_SECONDS:
            return
        self._titles_read_at = time.monotonic()
        try:
            titles = await fetch_article_titles(
                key.get_secret_value(), base_url=self.settings.classifier.docs_api_url
            )
        except DocsAPIError as exc:
            log.warning("Help Scout Docs titles not read: %s", exc)
            return
        self.classifier.use_article_titles(titles)

    async def group(self) -> int:
        """Put every labelled conversation in a topic: the first time, after a relabel or a
        person's decision, and when new conversations came after the conversations grew by a
        quarter or an hour passed since (the words that tell topics apart are learnt from them)
        by regrouping everything, keeping existing topics and decisions; otherwise new
        conversations join incrementally. The number of conversations placed."""
        async with self._grouping:
            decisions = await self._decisions()
            async with self.store.read() as session:
                grouped_with = (json.dumps(decisions.to_json()), await _corrections(session))
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
            alive = await _still_stored(session, memberships)
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

    async def classify_pending(self, *, batch: int = 500) -> int:
        """Classify every conversation that has no label yet, or whose model label is older
        than its latest change; an agent's label stays. The number classified."""
        await self.train()
        total = 0
        while texts := await self._pending(batch):
            predictions = await self._predict([item.text for item in texts])
            now = utcnow()
            rows = [
                {
                    "conversation_id": item.conversation_id,
                    "label": prediction.label,
                    "confidence": prediction.confidence,
                    "by": prediction.by,
                    "classified_at": now,
                }
                for item, prediction in zip(texts, predictions, strict=True)
            ]
            async with self.store.session() as session:
                alive = await _still_stored(session, [item.conversation_id for item in texts])
                kept = [row for row in rows if row["conversation_id"] in alive]
                statement = insert_for(session)(Classification)
                agent = Classification.__table__.c.by == "agent"
                if kept:
                    await session.execute(
                        statement.on_conflict_do_update(
                            index_elements=["conversation_id"],
                            set_={
                                key: statement.excluded[key]
                                for key in rows[0]
                                if key != "conversation_id"
                            },
                            where=~agent,
                        ),
                        kept,
                    )
            total += len(kept)
            if len(texts) < batch:
                break
        return total

    async def relabel(self, conversation_id: int, label: str, *, by: str) -> str:
        """Set a conversation's label as an agent decided (it sticks), and learn from it: the
        customer's words become a labelled example, replacing an earlier correction of the same
        conversation (the next :meth:`update`, in whichever process, retrains). Returns the
        canonical label; raises ``ValueError`` for an unknown label and
        :class:`UnknownConversation`. Audited as ``by``."""
        label = canonical_label(label)
        found = await self._texts([conversation_id])
        if not found:
            raise UnknownConversation(f"no conversation {conversation_id}")
        text = found[0]
        async with self.store.session() as session:
            if not await _still_stored(session, [conversation_id]):
                raise UnknownConversation(f"no conversation {conversation_id}")
            await session.execute(
                delete(LabelledExample).where(LabelledExample.conversation_id == conversation_id)
            )
            session.add(
                LabelledExample(text=text.text, label=label, conversation_id=conversation_id)
            )
            statement = insert_for(session)(Classification)
            values = {"label": label, "confidence": 1.0, "by": "agent", "classified_at": utcnow()}
            await session.execute(
                statement.values(conversation_id=conversation_id, **values).on_conflict_do_update(
                    index_elements=["conversation_id"], set_=values
                )
            )
            audit.record(session, by, "relabel", f"conversation {conversation_id} to {label}")
        return label

    async def _pending(self, limit: int) -> list[_Text]:
        async with self.store.read() as session:
            ids = await session.scalars(
                select(Conversation.id)
                .outerjoin(Classification, Classification.conversation_id == Conversation.id)
                .where(
                    or_(
                        Classification.conversation_id.is_(None),
                        (Classification.by != "agent")
                        & (Classification.classified_at < Conversation.stored_at),
                    )
                )
                .order_by(Conversation.id)
                .limit(limit)
            )
            wanted = list(ids)
        return await self._texts(wanted)

    async def _texts(self, conversation_ids: Sequence[int]) -> list[_Text]:
        """What each conversation's customers wrote (its subject when they wrote nothing)."""
        if not conversation_ids:
            return []
        async with self.store.read() as session:
            rows = await session.execute(
                select(Conversation.id, Conversation.subject).where(
                    Conversation.id.in_(conversation_ids)
                )
            )
            subjects = {conversation_id: subject for conversation_id, subject in rows}
            threads = defaultdict(list)
            for thread in await session.scalars(
                select(Thread)
                .where(Thread.conversation_id.in_(conversation_ids))
                .order_by(Thread.created_at, Thread.id)
            ):
                threads[thread.conversation_id].append(thread)
        return [
            _Text(cid, conversation_text(threads[cid], subjects[cid]))
            for cid in conversation_ids
            if cid in subjects
        ]

    async def _predict(self, texts: list[str]) -> list[Prediction]:
        options = self.settings.classifier
        if options.llm_url:
            from deskside.insights.analysis.llm import LLMClassifier, LLMSettings

            key = options.llm_api_key.get_secret_value() if options.llm_api_key else None
            llm = LLMClassifier(
                LLMSettings(url=options.llm_url, model=options.llm_model, api_key=key),
                self.classifier,
            )
            return await llm.classify(texts)
        return await asyncio.to_thread(self.classifier.predict, texts)

    def _examples_from_files(self) -> list[Example]:
        if self._file_examples is None:
            self._file_examples = [
                example
                for path in self.settings.classifier.examples
                for example in read_examples_file(path)
            ]
        return self._file_examples


async def _still_stored(session: AsyncSession, conversation_ids: Iterable[int]) -> set[int]:
    """Those of ``conversation_ids`` still stored, for the writing ``session`` to write about:
    a deletion cannot land before it commits. SQLite's write lock holds every writer off;
    PostgreSQL holds those rows (``FOR KEY SHARE``, as a foreign key check does) and leaves
    out the ones being deleted right now (``SKIP LOCKED``) rather than wait for them."""
    wanted = sorted(set(conversation_ids))
    found: set[int] = set()
    for start in range(0, len(wanted), _IDS_PER_STATEMENT):
        statement = (
            select(Conversation.id)
            .where(Conversation.id.in_(wanted[start : start + _IDS_PER_STATEMENT]))
            .order_by(Conversation.id)
        )
        if session.get_bind().dialect.name == "postgresql":
            statement = statement.with_for_update(read=True, key_share=True, skip_locked=True)
        found.update(await session.scalars(statement))
    return found


def _person_name(name: str) -> str:
    """A topic name a person gave, its whitespace collapsed, at most 200 characters (maybe
    empty); ``ValueError`` for a NUL character, which PostgreSQL cannot store."""
    if "\x00" in name:
        raise ValueError("the name contains a NUL character")
    return " ".join(name.split())[:200]


async def _corrections(session: AsyncSession) -> tuple[int, Any]:
    """How many labelled examples are stored, and when the newest was: changed by every
    correction (a relabel replaces one) and every example file read in."""
    count, newest = (
        await session.execute(select(func.count(), func.max(LabelledExample.created_at)))
    ).one()
    return int(count), newest
