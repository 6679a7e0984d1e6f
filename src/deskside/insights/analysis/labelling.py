"""Labelling (:class:`Labelling`): every stored conversation classified from what its customer
wrote, and agents' relabels stored as corrections and learnt from. The classifier trains on the
shipped examples, the configured example files and every stored correction; when any process
stores a correction, the next :meth:`Labelling.classify_pending` retrains first, in a thread,
while the old model keeps answering. With ``docs_api_key`` the Help Scout Docs article titles
(read hourly) tell documentation questions apart.

Each write keeps only the conversations still stored, in the same transaction
(:func:`still_stored`), so a pass finishes while webhooks delete conversations."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights import audit
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
from deskside.insights.helpscout.docs import DocsAPIError, fetch_article_titles
from deskside.insights.models import (
    Classification,
    Conversation,
    LabelledExample,
    Thread,
    utcnow,
)
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, insert_for

__all__ = ["Labelling", "UnknownConversation", "corrections_stamp", "still_stored"]

log = logging.getLogger("deskside.insights.analysis")

_TITLES_REUSE_SECONDS = 3600.0
_IDS_PER_STATEMENT = 5000


class UnknownConversation(LookupError):
    """No stored conversation has that id."""


@dataclass(frozen=True)
class _Text:
    conversation_id: int
    text: str


class Labelling:
    """Classification of the conversations in ``store`` (see the module docstring)."""

    def __init__(self, store: Store, settings: InsightsSettings) -> None:
        self.store = store
        self.settings = settings
        self.classifier = Classifier()
        self._trained_with: tuple[int, Any] | None = None
        """The :func:`corrections_stamp` the current model learnt from."""
        self._training = asyncio.Lock()
        self._file_examples: list[Example] | None = None
        self._titles_read_at = -_TITLES_REUSE_SECONDS

    async def train(self, *, force: bool = False) -> bool:
        """Train if no model exists yet or a correction was stored since; whether it did."""
        async with self._training:
            async with self.store.read() as session:
                newest = await corrections_stamp(session)
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
                alive = await still_stored(session, [item.conversation_id for item in texts])
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
            if not await still_stored(session, [conversation_id]):
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


async def still_stored(session: AsyncSession, conversation_ids: Iterable[int]) -> set[int]:
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


async def corrections_stamp(session: AsyncSession) -> tuple[int, Any]:
    """How many labelled examples are stored, and when the newest was: changed by every
    correction (a relabel replaces one) and every example file read in."""
    count, newest = (
        await session.execute(select(func.count(), func.max(LabelledExample.created_at)))
    ).one()
    return int(count), newest
