"""Help Scout's changes written to the store: conversations, their threads and customers as
upserts keyed by Help Scout's ids, deletions and merges.

An import that runs twice, a repeated webhook and a webhook racing an import all end in the same
rows. A copy older than the stored one never overwrites it (``modified_at``: Help Scout's
``userUpdatedAt`` for a conversation, ``updatedAt`` for a customer, and for the customer a
conversation embeds, that conversation's time). What Help Scout deleted stays deleted: a
tombstone keeps each deleted conversation's and customer's id with the time of the deletion,
and only a copy changed after that time (Help Scout restored it) is stored again. On
PostgreSQL, writers that touch the same conversation or customer take turns (transaction
advisory locks), so a deletion and an older copy applied at the same time cannot both win.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights.ingest.normalise import ConversationRecord, CustomerRecord
from deskside.insights.models import (
    Conversation,
    ConversationTombstone,
    Customer,
    CustomerTombstone,
    Thread,
    utcnow,
)
from deskside.insights.privacy.erased import without_erased
from deskside.insights.store import insert_for

__all__ = [
    "delete_conversations",
    "delete_customer",
    "lock_rows",
    "merge_conversation",
    "save_conversation",
    "save_conversations",
    "save_customers",
]


async def lock_rows(
    session: AsyncSession,
    conversation_ids: Iterable[int] = (),
    customer_ids: Iterable[int] = (),
) -> None:
    """On PostgreSQL, wait until no other transaction writes these conversations or customers
    and hold them until this one ends (SQLite: its write lock already does). Taking everything a
    transaction will touch in one call, as the worker does, keeps two writers from waiting on
    each other; the writes below take what they touch again, which costs nothing when held."""
    if session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted(
        {_lock_key("conversation", i) for i in conversation_ids}
        | {_lock_key("customer", i) for i in customer_ids}
    )
    if keys:
        await session.execute(
            text(
                "select count(pg_advisory_xact_lock(key)) from "
                "(select unnest(:keys) as key order by 1) as ordered"
            ).bindparams(bindparam("keys", type_=postgresql.ARRAY(postgresql.BIGINT))),
            {"keys": keys},
        )


def _lock_key(kind: str, row: int) -> int:
    digest = hashlib.blake2b(f"{kind}:{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def save_conversation(session: AsyncSession, record: ConversationRecord) -> None:
    """Insert or update one conversation, its customer and its threads."""
    await save_conversations(session, [record])


async def save_conversations(
    session: AsyncSession,
    records: Sequence[ConversationRecord],
    *,
    received_at: datetime | None = None,
) -> int:
    """Insert or update conversations, their customers and their threads, in a few statements;
    the number stored.

    A copy older than the stored one (``modified_at``) leaves the conversation's fields alone:
    a late webhook retry must not undo a newer state. Threads are only ever added or updated.
    A copy of a deleted conversation, or of a deleted customer's, is stored only when changed
    after the deletion (and then the tombstone goes); a copy whose ``state`` is ``deleted``
    deletes it, as of ``received_at`` (default: now).
    """
    records, _ = await without_erased(session, records)  # nobody erased on request
    if not records:
        return 0
    # One row per id: a multi-row upsert may not touch the same row twice. The newest copy wins.
    latest: dict[int, ConversationRecord] = {}
    for record in records:
        kept = latest.get(record.conversation["id"])
        if kept is None or _not_older(record.conversation, kept.conversation):
            latest[record.conversation["id"]] = record
    await lock_rows(
        session,
        latest,
        [r.customer["id"] for r in latest.values() if r.customer is not None],
    )
    deleted = [record for record in latest.values() if record.deleted]
    for record in deleted:
        moment = max(received_at or utcnow(), record.conversation["modified_at"] or utcnow())
        await delete_conversations(session, [record.conversation["id"]], deleted_at=moment)
    records = await _not_deleted(session, [r for r in latest.values() if not r.deleted])
    if not records:
        return 0
    await save_customers(session, [r.customer for r in records if r.customer is not None])
    statement = insert_for(session)(Conversation)
    stored = Conversation.__table__.c.modified_at
    incoming = statement.excluded.modified_at
    newer = stored.is_(None) | incoming.is_(None) | (incoming >= stored)
    columns = [key for key in records[0].conversation if key != "id"]
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["id"],
            # stored_at too: ON CONFLICT takes no Python-side onupdate values
            set_={key: statement.excluded[key] for key in columns} | {"stored_at": utcnow()},
            where=newer,
        ),
        [record.conversation for record in records],
    )
    threads = list({t["id"]: t for record in records for t in record.threads}.values())
    if threads:
        statement = insert_for(session)(Thread)
        columns = [key for key in threads[0] if key != "id"]
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["id"], set_={key: statement.excluded[key] for key in columns}
            ),
            threads,
        )
    return len(records)


async def _not_deleted(
    session: AsyncSession, records: Sequence[ConversationRecord]
) -> list[ConversationRecord]:
    """``records`` less those of deleted conversations or customers that Help Scout has not
    changed since the deletion; the others' conversation tombstones are removed."""
    ids = [record.conversation["id"] for record in records]
    customer_ids = {r.conversation["customer_id"] for r in records} - {None}
    deleted = await _tombstones(session, ConversationTombstone, ids)
    deleted_customers = await _tombstones(session, CustomerTombstone, customer_ids)
    alive, restored = [], []
    for record in records:
        row = record.conversation
        fences = [deleted.get(row["id"]), deleted_customers.get(row["customer_id"])]
        if any(_not_after(row["modified_at"], fence) for fence in fences if fence is not None):
            continue
        alive.append(record)
        if row["id"] in deleted:
            restored.append(row["id"])
    if restored:
        await session.execute(
            delete(ConversationTombstone).where(ConversationTombstone.id.in_(restored))
        )
    return alive


async def _tombstones(
    session: AsyncSession,
    model: type[ConversationTombstone] | type[CustomerTombstone],
    ids: Iterable[int],
) -> dict[int, datetime]:
    wanted = list(ids)
    if not wanted:
        return {}
    rows = await session.execute(select(model.id, model.deleted_at).where(model.id.in_(wanted)))
    return {row_id: deleted_at for row_id, deleted_at in rows}


def _not_after(modified: datetime | None, fence: datetime) -> bool:
    """Whether a copy changed at ``modified`` (``None``: unknown) predates a deletion."""
    return modified is None or modified <= fence


async def save_customers(session: AsyncSession, records: Sequence[CustomerRecord]) -> None:
    """Insert or update customers, newest copy first (``modified_at``): an older copy never
    overwrites a newer one, and a copy without a time only fills in a customer stored without
    one. A field sent as ``None`` keeps what is stored. A deleted customer is stored again only
    from a copy changed after the deletion."""
    _, records = await without_erased(session, (), records)  # nobody erased on request
    merged: dict[int, CustomerRecord] = {}
    oldest_first = sorted(
        (r for r in records if r["id"] is not None), key=lambda r: _sort_time(r["modified_at"])
    )
    for record in oldest_first:
        earlier = merged.get(record["id"], {})
        merged[record["id"]] = {
            k: v if v is not None else earlier.get(k) for k, v in record.items()
        }
    if not merged:
        return
    await lock_rows(session, customer_ids=merged)
    deleted = await _tombstones(session, CustomerTombstone, merged)
    rows = [
        row
        for row in merged.values()
        if row["id"] not in deleted or not _not_after(row["modified_at"], deleted[row["id"]])
    ]
    restored = [row["id"] for row in rows if row["id"] in deleted]
    if restored:
        await session.execute(delete(CustomerTombstone).where(CustomerTombstone.id.in_(restored)))
    if not rows:
        return
    statement = insert_for(session)(Customer)
    table = Customer.__table__.c
    incoming = statement.excluded.modified_at
    newer = table.modified_at.is_(None) | (incoming >= table.modified_at)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["id"],
            set_={
                key: func.coalesce(statement.excluded[key], table[key])
                for key in ("email", "first_name", "last_name", "modified_at")
            }
            | {"updated_at": utcnow()},
            where=newer,
        ),
        rows,
    )


def _sort_time(moment: datetime | None) -> tuple[bool, datetime | None]:
    return (moment is not None, moment)


def _not_older(candidate: dict[str, Any], kept: dict[str, Any]) -> bool:
    if candidate["modified_at"] is None or kept["modified_at"] is None:
        return True
    return bool(candidate["modified_at"] >= kept["modified_at"])


async def delete_conversations(
    session: AsyncSession, conversation_ids: Iterable[int], *, deleted_at: datetime
) -> None:
    """Remove conversations and every thread of theirs, and keep their tombstones: no copy
    changed before ``deleted_at`` (or before the newest copy stored, if that is later) is
    stored again."""
    ids = sorted(set(conversation_ids))
    if not ids:
        return
    await lock_rows(session, ids)
    stored = dict(
        (
            await session.execute(
                select(Conversation.id, Conversation.modified_at).where(Conversation.id.in_(ids))
            )
        ).all()
    )
    await _bury(
        session,
        ConversationTombstone,
        {i: max(deleted_at, stored.get(i) or deleted_at) for i in ids},
    )
    await session.execute(delete(Thread).where(Thread.conversation_id.in_(ids)))
    await session.execute(delete(Conversation).where(Conversation.id.in_(ids)))


async def delete_customer(session: AsyncSession, customer_id: int, *, deleted_at: datetime) -> None:
    """Remove a customer and, as Help Scout does, every conversation of theirs, keeping the
    tombstones (see :func:`delete_conversations`)."""
    await lock_rows(session, customer_ids=[customer_id])  # no conversation of theirs comes now
    owned = select(Conversation.id).where(Conversation.customer_id == customer_id)
    await delete_conversations(session, await session.scalars(owned), deleted_at=deleted_at)
    stored = await session.scalar(select(Customer.modified_at).where(Customer.id == customer_id))
    await _bury(session, CustomerTombstone, {customer_id: max(deleted_at, stored or deleted_at)})
    await session.execute(delete(Customer).where(Customer.id == customer_id))


async def merge_conversation(
    session: AsyncSession, survivor: ConversationRecord, *, received_at: datetime
) -> None:
    """Apply a merge in Help Scout: store ``survivor`` and remove the conversations merged into
    it, as deletions at ``received_at``: those its line items name
    (:attr:`~deskside.insights.ingest.normalise.ConversationRecord.merged_from`) and those that
    held threads it holds now (Help Scout moves the threads).

    Help Scout's webhook documentation gives ``convo.merged`` a "v2 Conversation object" as
    its body without saying which one, and no field naming the other; the Mailbox API answers
    301 to the merged-away id, pointing at the survivor. So the body is read as the survivor,
    and a merge it shows no trace of leaves the merged-away conversation in place."""
    survivor_id = survivor.conversation["id"]
    thread_ids = [thread["id"] for thread in survivor.threads]
    moved_from = set()
    if thread_ids:
        moved_from = set(
            await session.scalars(
                select(Thread.conversation_id).where(
                    Thread.id.in_(thread_ids), Thread.conversation_id != survivor_id
                )
            )
        )
    merged = (set(survivor.merged_from) | moved_from) - {survivor_id}
    await lock_rows(session, [survivor_id, *merged])
    await save_conversations(session, [survivor], received_at=received_at)
    await delete_conversations(session, merged, deleted_at=received_at)


async def _bury(
    session: AsyncSession,
    model: type[ConversationTombstone] | type[CustomerTombstone],
    deleted_at: dict[int, datetime],
) -> None:
    """Keep (or move later) the tombstones of ``deleted_at``'s ids."""
    statement = insert_for(session)(model)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["id"],
            set_={"deleted_at": statement.excluded.deleted_at},
            where=statement.excluded.deleted_at > model.__table__.c.deleted_at,
        ),
        [{"id": row, "deleted_at": moment} for row, moment in deleted_at.items()],
    )
