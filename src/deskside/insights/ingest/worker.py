"""The worker: turns stored webhook deliveries into conversations, exactly once.

A batch of due events is claimed, applied and marked done in one transaction, so an event's
effects and its "done" commit together: a worker killed halfway leaves the whole batch pending
for the next run, and nothing is applied twice. On PostgreSQL the claim is
``FOR UPDATE SKIP LOCKED``, so several workers (one per ``deskside serve`` process, or
``deskside worker``) share the queue; on SQLite the write lock does the same job.

A delivery that can never be applied (not a JSON object, nested deeper than
:data:`MAX_DEPTH`, or without an id Help Scout could have given) is parked at once, with the
reason; the webhook route parks it before it reaches the queue (:func:`unprocessable`). Errors
kept with an event or logged name what failed, never the data (:func:`describe_error`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights.ingest.changes import (
    delete_conversations,
    delete_customer,
    lock_rows,
    merge_conversation,
    save_conversations,
    save_customers,
)
from deskside.insights.ingest.normalise import (
    ConversationRecord,
    CustomerRecord,
    conversation_record,
    customer_record,
    help_scout_id,
)
from deskside.insights.models import Conversation, Event, utcnow
from deskside.insights.privacy.erased import blank_erased_deliveries
from deskside.insights.store import Store, describe_error

__all__ = ["MAX_DEPTH", "Delivery", "UnprocessableEvent", "Worker", "apply_events", "unprocessable"]

log = logging.getLogger("deskside.insights.worker")

_MAX_BACKOFF_SECONDS = 600
MAX_DEPTH = 32
"""The deepest nesting of a body that is applied (Help Scout's are about six levels deep)."""


class UnprocessableEvent(ValueError):
    """The delivery can never be applied (not JSON, no id): it is parked at once. The message
    says why, and never quotes the body."""


class Delivery(NamedTuple):
    """A stored webhook delivery, as :func:`apply_events` takes it."""

    event: str
    body: bytes
    received_at: datetime
    """When deskside stored it: a deletion happened in Help Scout before this."""


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

    async def run(self) -> int:
        """Process events until :meth:`stop`; database outages are waited out, not fatal.
        Returns how many events it processed."""
        failures = total = 0
        self._stopping = False
        while not self._stopping:
            self._wake.clear()  # before looking: an event stored from now on wakes us again
            started = time.monotonic()
            try:
                processed = await self.run_once()
                total += processed
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning("worker: cannot reach the insights database: %s", describe_error(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(0.5 * 2**failures, 30))
                continue
            if self._under_pressure() and not self._stopping:
                await asyncio.sleep(3 * (time.monotonic() - started))
            if processed < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_seconds)
        return total

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
                    await apply_events(session, [_delivery(event) for event in events])
            except Exception:
                for event in events:
                    await self._process(session, event)
            else:
                for event in events:
                    event.attempts += 1
                    self._done(event)
            await blank_erased_deliveries(session, events)  # nothing kept of someone erased
        return len(events)

    async def _process(self, session: AsyncSession, event: Event) -> None:
        event.attempts += 1
        try:
            async with session.begin_nested():
                await apply_events(session, [_delivery(event)])
        except Exception as exc:
            if isinstance(exc, UnprocessableEvent):
                error = f"{type(exc).__name__}: {exc}"[:2000]
            else:
                error = describe_error(exc)
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


def _delivery(event: Event) -> Delivery:
    return Delivery(event.event, event.body, event.received_at)


async def apply_events(session: AsyncSession, deliveries: Sequence[Delivery]) -> None:
    """Change the store as the Help Scout deliveries, in order, say.

    ``convo.deleted`` and ``customer.deleted`` remove what they name, for good (a tombstone
    refuses older copies, see :mod:`deskside.insights.ingest.changes`); ``convo.merged`` carries the
    surviving conversation and removes the ones merged into it; other ``convo.*`` events carry
    the whole conversation and are upserted; ``customer.created|updated`` upsert the customer;
    anything else (ratings, tags, chats) is kept only as the event. Upserts between two
    deletions or merges are written together. Raises :class:`UnprocessableEvent` for a
    delivery that can never be applied.
    """
    actions = [_action(delivery) for delivery in deliveries]
    await _lock_everything(session, actions)
    conversations: list[ConversationRecord] = []
    customers: list[CustomerRecord] = []
    upserts_received = utcnow()

    async def write_upserts() -> None:
        await save_conversations(session, conversations, received_at=upserts_received)
        await save_customers(session, customers)
        conversations.clear()
        customers.clear()

    for action in actions:
        if action.kind == "convo.deleted":
            await write_upserts()
            await delete_conversations(session, [action.row_id], deleted_at=action.received_at)
        elif action.kind == "customer.deleted":
            await write_upserts()
            await delete_customer(session, action.row_id, deleted_at=action.received_at)
        elif action.kind == "convo.merged" and action.conversation is not None:
            await write_upserts()
            await merge_conversation(session, action.conversation, received_at=action.received_at)
        elif action.conversation is not None:
            conversations.append(action.conversation)
            upserts_received = action.received_at
        elif action.customer is not None:
            customers.append(action.customer)
    await write_upserts()


class _Action(NamedTuple):
    """What one delivery asks for, read before anything is written."""

    kind: str
    received_at: datetime
    row_id: int = 0
    conversation: ConversationRecord | None = None
    customer: CustomerRecord | None = None


def _action(delivery: Delivery) -> _Action:
    name, received_at = delivery.event, delivery.received_at
    document = _document(delivery.body)
    if name in ("convo.deleted", "customer.deleted"):
        return _Action(name, received_at, row_id=_id(document))
    if name.startswith("convo."):
        try:
            record = conversation_record(document)
        except ValueError as exc:
            raise UnprocessableEvent(str(exc)) from exc
        return _Action(name, received_at, conversation=record)
    if name in ("customer.created", "customer.updated"):
        _id(document)
        customer = customer_record(document)
        # Without Help Scout's time, the copy is as new as its delivery.
        customer["modified_at"] = customer["modified_at"] or received_at
        return _Action(name, received_at, customer=customer)
    return _Action(name, received_at)


async def _lock_everything(session: AsyncSession, actions: Sequence[_Action]) -> None:
    """Take every conversation and customer the deliveries touch at once (see
    :func:`~.changes.lock_rows`), with a deleted customer's conversations."""
    conversations: set[int] = set()
    customers: set[int] = set()
    for action in actions:
        record = action.conversation
        if record is not None:
            conversations |= {record.conversation["id"], *record.merged_from}
            customers |= {record.customer["id"]} if record.customer is not None else set()
        elif action.customer is not None:
            customers.add(action.customer["id"])
        elif action.kind == "convo.deleted":
            conversations.add(action.row_id)
        elif action.kind == "customer.deleted":
            customers.add(action.row_id)
            owned = select(Conversation.id).where(Conversation.customer_id == action.row_id)
            conversations |= set(await session.scalars(owned))
    await lock_rows(session, conversations, customers)


def unprocessable(event: str, body: bytes) -> str | None:
    """Why the delivery can never be applied, or ``None``: what the webhook route checks
    before storing it (:func:`apply_events` refuses the same)."""
    try:
        document = _document(body)
        if event.startswith(("convo.", "customer.")):
            _id(document)
    except UnprocessableEvent as exc:
        return str(exc)
    return None


def _document(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except ValueError as exc:  # not UTF-8, not JSON, or a number too long to read
        raise UnprocessableEvent(f"the body is not JSON: {exc}") from exc
    except RecursionError:
        raise UnprocessableEvent(f"the body is nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(document, dict):
        raise UnprocessableEvent("the body is not a JSON object")
    if _deeper_than(document, MAX_DEPTH):
        raise UnprocessableEvent(f"the body is nested deeper than {MAX_DEPTH} levels")
    return document


def _deeper_than(document: Any, limit: int) -> bool:
    level: list[Any] = [document]
    for _ in range(limit):
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def _id(document: dict[str, Any]) -> int:
    value = help_scout_id(document.get("id"))
    if value is None:
        raise UnprocessableEvent("the body has no id, or one Help Scout never gives")
    return value
