"""The webhook inbox: a delivery is on disk before Help Scout hears 2xx.

Deliveries that arrive together are written in one transaction (group commit): one durable
commit acknowledges a whole burst, which is what lets SQLite keep up with a busy account. A
delivery that can never be applied is stored parked, with the reason, for ``deskside events``
to show; the worker never picks it up.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights.models import Event
from deskside.insights.store import Store, describe_error, finish_before_cancel, insert_for

__all__ = ["Inbox", "dedupe_key"]

log = logging.getLogger("deskside.insights.inbox")


def dedupe_key(event: str, body: bytes) -> str:
    """The same delivery's key, however often Help Scout retries it.

    Help Scout sends no delivery id, so a redelivery is recognised by its content: the event
    name and the raw body (which holds the conversation's id and its threads' ids). Two
    different deliveries about the same conversation are both kept; processing them is
    idempotent (every write is an upsert by Help Scout's ids).
    """
    return hashlib.sha256(event.encode() + b"\n" + body).hexdigest()


@dataclass
class _Delivery:
    event: str
    body: bytes
    problem: str | None
    stored: asyncio.Future[None]


class Inbox:
    """Stores deliveries durably, batching concurrent ones into one commit.

    :meth:`accept` returns once the delivery is committed (or was already stored), and raises
    when it could not be stored: the caller must then answer non-2xx so Help Scout retries.
    """

    def __init__(self, store: Store, *, max_batch: int = 500) -> None:
        self._store = store
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Delivery] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._last_delivery = -1.0

    def busy(self) -> bool:
        """Whether a delivery arrived within the last tenth of a second."""
        return time.monotonic() - self._last_delivery < 0.1

    async def accept(self, event: str, body: bytes, *, problem: str | None = None) -> None:
        """Store the delivery: pending, or parked at once with ``problem`` (why it can never be
        applied; never a quote of the body)."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_forever(), name="deskside-inbox")
        self._last_delivery = time.monotonic()
        future = asyncio.get_running_loop().create_future()
        delivery = _Delivery(event, body, problem, future)
        await self._queue.put(delivery)
        await delivery.stored

    async def aclose(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await finish_before_cancel(self._write(batch))
            except Exception as exc:
                log.warning(
                    "could not store %d webhook deliveries: %s", len(batch), describe_error(exc)
                )
                for delivery in batch:
                    if not delivery.stored.done():
                        delivery.stored.set_exception(exc)
                continue
            for delivery in batch:
                if not delivery.stored.done():
                    delivery.stored.set_result(None)

    async def _write(self, batch: list[_Delivery]) -> None:
        async with self._store.session() as session:
            await _insert(session, batch)


async def _insert(session: AsyncSession, batch: list[_Delivery]) -> None:
    rows = {
        dedupe_key(d.event, d.body): {
            "event": d.event,
            "body": d.body,
            "status": "pending" if d.problem is None else "parked",
            "last_error": d.problem,
        }
        for d in batch
    }
    statement = insert_for(session)(Event).on_conflict_do_nothing(index_elements=["dedupe_key"])
    await session.execute(statement, [{"dedupe_key": key, **row} for key, row in rows.items()])
