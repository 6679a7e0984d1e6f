"""Keeps the store's insight current: every conversation classified from what its customer
wrote, relabels by agents learnt from, and the topics regrouped.

One :class:`Analysis` per process. The classifier trains on the shipped examples, the
configured example files and every stored correction; when another process (or this one)
stores a correction, the next :meth:`Analysis.classify_pending` retrains first, in a thread,
while the old model keeps answering.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select

from deskside.insights.classify import (
    Classifier,
    Example,
    Prediction,
    canonical_label,
    labels_for,
    load_shipped_examples,
    read_examples_file,
)
from deskside.insights.customer_text import conversation_text
from deskside.insights.models import Classification, Conversation, LabelledExample, Thread, utcnow
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, insert_for

__all__ = ["Analysis", "UnknownConversation"]

log = logging.getLogger("deskside.insights.analysis")


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
        self._trained_with: int | None = None
        """The newest stored example the current model learnt from (0: none stored)."""
        self._training = asyncio.Lock()
        self._file_examples: list[Example] | None = None

    async def train(self, *, force: bool = False) -> bool:
        """Train if no model exists yet or a correction was stored since; whether it did."""
        async with self._training:
            async with self.store.read() as session:
                newest = await session.scalar(select(func.max(LabelledExample.id))) or 0
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
        """Bring everything up to date: labels for what is new (topics follow)."""
        await self.classify_pending()

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
                statement = insert_for(session)(Classification)
                agent = Classification.__table__.c.by == "agent"
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
                    rows,
                )
            total += len(rows)
            if len(texts) < batch:
                break
        return total

    async def relabel(self, conversation_id: int, label: str) -> str:
        """Set a conversation's label as an agent decided (it sticks), and learn from it: the
        customer's words become a labelled example, replacing an earlier correction of the same
        conversation. Returns the canonical label; raises ``ValueError`` for an unknown label
        and :class:`UnknownConversation`."""
        label = canonical_label(label)
        found = await self._texts([conversation_id])
        if not found:
            raise UnknownConversation(f"no conversation {conversation_id}")
        text = found[0]
        async with self.store.session() as session:
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
        await self.train()
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
            from deskside.insights.llm import LLMClassifier, LLMSettings

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
