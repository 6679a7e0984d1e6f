"""The worker: turns stored webhook deliveries into conversations, exactly once.

A batch of due events is claimed, applied and marked done in one transaction, so an event's
effects and its "done" commit together: a worker killed halfway leaves the whole batch pending
for the next run, and nothing is applied twice. On PostgreSQL the claim is
``FOR UPDATE SKIP LOCKED``, so several workers (one per ``deskside serve`` process, or
``deskside worker``) share the queue; on SQLite the write lock does the same job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights.models import Event, utcnow
from deskside.insights.normalise import (
    ConversationRecord,
    CustomerRecord,
    conversation_record,
    customer_record,
)
from deskside.insights.store import (
    Store,
    delete_conversation,
    delete_customer,
    save_conversations,
    save_customers,
)

__all__ = ["UnprocessableEvent", "Worker", "apply_events"]

log = logging.getLogger("deskside.insights.worker")

_MAX_BACKOFF_SECONDS = 600


class UnprocessableEvent(ValueError):
    """The delivery can never be applied (not JSON, no id): it is parked at once."""


class Worker:
    """Applies pending events; ``attempts`` failures park an event with its error."""

    def __init__(
        self,
        store: Store,
        *,
        attempts: int = 8,
        batch_size: int = 200,
        idle_seconds: float = 1.0,
        under_pressure: Callable[[], bool] = lambda: False,
    ) -> None:
        """``under_pressure()`` true (deliveries are arriving in this process): the worker
        takes at most a quarter of the time, so acknowledging comes first during a burst."""
        self._store = store
        self._under_pressure = under_pressure
        self._attempts = attempts
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._wake = asyncio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Look for work now instead of at the next poll (new events were stored)."""
        self._wake.set()

    def stop(self) -> None:
        """Make :meth:`run` return after the batch in hand (a batch is never abandoned)."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Process events until :meth:`stop`; database outages are waited out, not fatal."""
        failures = 0
        self._stopping = False
        while not self._stopping:
            self._wake.clear()  # before looking: an event stored from now on wakes us again
            started = time.monotonic()
            try:
                processed = await self.run_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("worker: cannot reach the insights database: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(0.5 * 2**failures, 30))
                continue
            if self._under_pressure() and not self._stopping:
                await asyncio.sleep(3 * (time.monotonic() - started))
            if processed < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_seconds)

    async def run_once(self) -> int:
        """Claim, apply and commit one batch of due events; the number of events handled."""
        async with self._store.session() as session:
            claim = (
                select(Event)
                .where(Event.status == "pending", Event.next_attempt_at <= utcnow())
                .order_by(Event.id)
                .limit(self._batch_size)
            )
            if self._store.dialect == "postgresql":
                claim = claim.with_for_update(skip_locked=True)
            events = list((await session.execute(claim)).scalars())
            if not events:
                return 0
            try:  # the whole batch at once: a few statements instead of a few per event
                async with session.begin_nested():
                    await apply_events(session, [(event.event, event.body) for event in events])
            except Exception:
                for event in events:
                    await self._process(session, event)
            else:
                for event in events:
                    event.attempts += 1
                    self._done(event)
        return len(events)

    async def _process(self, session: AsyncSession, event: Event) -> None:
        event.attempts += 1
        try:
            async with session.begin_nested():
                await apply_events(session, [(event.event, event.body)])
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            event.last_error = error
            if isinstance(exc, UnprocessableEvent) or event.attempts >= self._attempts:
                event.status = "parked"
                log.error("worker: event %d (%s) parked: %s", event.id, event.event, error)
            else:
                delay = min(2**event.attempts, _MAX_BACKOFF_SECONDS)
                event.next_attempt_at = utcnow() + timedelta(seconds=delay)
                log.warning(
                    "worker: event %d (%s) failed, retry in %d s: %s",
                    event.id,
                    event.event,
                    delay,
                    error,
                )
            return
        self._done(event)

    @staticmethod
    def _done(event: Event) -> None:
        event.status = "done"
        event.processed_at = utcnow()
        event.last_error = None


async def apply_events(session: AsyncSession, events: Sequence[tuple[str, bytes]]) -> None:
    """Change the store as the Help Scout events (name, body), in order, say.

    ``convo.deleted`` and ``customer.deleted`` remove what they name; other ``convo.*``
    events carry the whole conversation and are upserted; ``customer.created|updated``
    upsert the customer; anything else (ratings, tags, chats) is kept only as the event.
    Upserts between two deletions are written together.
    """
    conversations: list[ConversationRecord] = []
    customers: list[CustomerRecord] = []

    async def write_upserts() -> None:
        await save_conversations(session, conversations)
        await save_customers(session, customers)
        conversations.clear()
        customers.clear()

    for name, body in events:
        document = _json_object(body)
        if name in ("convo.deleted", "customer.deleted"):
            await write_upserts()
            remove = delete_conversation if name == "convo.deleted" else delete_customer
            await remove(session, _id(document))
        elif name.startswith("convo."):
            try:
                conversations.append(conversation_record(document))
            except ValueError as exc:
                raise UnprocessableEvent(str(exc)) from exc
        elif name in ("customer.created", "customer.updated"):
            _id(document)
            customers.append(customer_record(document))
    await write_upserts()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnprocessableEvent(f"the body is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise UnprocessableEvent("the body is not a JSON object")
    return document


def _id(document: dict[str, Any]) -> int:
    value = document.get("id")
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise UnprocessableEvent("the body has no numeric id")
    return int(value)
