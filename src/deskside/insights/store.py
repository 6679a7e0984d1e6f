"""The conversation store: an async SQLAlchemy engine on SQLite (default) or PostgreSQL, brought
to the newest schema by Alembic when opened, and the writes that keep it in step with Help Scout.

Every write is an upsert keyed by Help Scout's ids, so an import that runs twice, a repeated
webhook and a webhook racing an import all end in the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import delete, event, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from deskside.insights.models import Conversation, Customer, Lease, Thread, utcnow
from deskside.insights.normalise import ConversationRecord, CustomerRecord
from deskside.insights.settings import InsightsSettings
from deskside.sources.sql import async_url

__all__ = [
    "DEFAULT_DATABASE_FILE",
    "Store",
    "database_url",
    "delete_conversation",
    "delete_customer",
    "finish_before_cancel",
    "insert_for",
    "release_lease",
    "save_conversation",
    "save_conversations",
    "save_customers",
    "take_lease",
]

T = TypeVar("T")
DEFAULT_DATABASE_FILE = "insights.db"
_MIGRATIONS = Path(__file__).parent / "migrations"


async def finish_before_cancel(work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` to its end even when the caller is cancelled meanwhile (shutdown, Ctrl-C),
    then let the cancellation through: a transaction commits or rolls back rather than being
    abandoned holding its connection (and, on SQLite, the write lock every writer waits for)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        raise


def database_url(given: str | None, settings: InsightsSettings | None = None) -> str:
    """The store's URL: ``given`` (``--database``), else ``[insights] database``, else
    ``insights.db`` in the data directory; always with its async driver."""
    if given:
        return async_url(given, Path.cwd())
    if settings is not None and settings.database is not None:
        return settings.database.get_secret_value()
    from deskside.demo import data_dir

    return async_url(f"sqlite:///{data_dir() / DEFAULT_DATABASE_FILE}")


class Store:
    """The engine and sessions of one insights database. ``await open()`` before use."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self.dialect = url.split("+", 1)[0].split(":", 1)[0]
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError("the insights store runs on SQLite or PostgreSQL")
        options: dict[str, Any] = {}
        if self.dialect == "postgresql":
            options = {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True}
        self.engine: AsyncEngine = create_async_engine(url, **options)
        self._reader = self.engine
        if self.dialect == "sqlite":
            _sqlite_pragmas(self.engine)
            _sqlite_write_transactions(self.engine)
            # Readers get their own connections with plain BEGIN: in WAL mode they never wait
            # for, nor hold up, the writer.
            self._reader = create_async_engine(url)
            _sqlite_pragmas(self._reader)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time: within a process, writers queue here, in order,
        # rather than in SQLite's busy handler, which sleeps and retries.
        self._write_turn = asyncio.Lock() if self.dialect == "sqlite" else None
        self._read_sessions = async_sessionmaker(self._reader, expire_on_commit=False)

    async def open(self) -> Store:
        """Create or upgrade the schema (several processes may race here: they take turns)."""
        if self.dialect == "sqlite":
            database = self.engine.url.database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
        async with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                await connection.execute(text("select pg_advisory_xact_lock(7406177)"))
            await connection.run_sync(_upgrade)
        return self

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed when the block ends without an error."""
        async with contextlib.AsyncExitStack() as stack:
            if self._write_turn is not None:
                await stack.enter_async_context(self._write_turn)
            session = await stack.enter_async_context(self.sessions())
            await stack.enter_async_context(session.begin())
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading only (on SQLite it never waits for a writer)."""
        async with self._read_sessions() as session:
            yield session

    async def aclose(self) -> None:
        await self.engine.dispose()
        if self._reader is not self.engine:
            await self._reader.dispose()


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    """SQLite: write-ahead log, durable commits, waits instead of "database is locked"."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "busy_timeout=30000",
            "foreign_keys=ON",
        ):
            cursor.execute(f"pragma {pragma}")
        cursor.close()


def _sqlite_write_transactions(engine: AsyncEngine) -> None:
    """``BEGIN IMMEDIATE``: two writers queue up instead of failing when a read in a
    transaction turns into a write."""

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: SyncConnection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade(connection: SyncConnection) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    os.environ.setdefault("ALEMBIC_SKIP_LOGGING", "1")
    command.upgrade(config, "head")


def insert_for(session: AsyncSession) -> Any:
    """The dialect's ``insert`` (with ``on_conflict_do_…``) for ``session``'s database."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def take_lease(store: Store, name: str, holder: str, seconds: float) -> bool:
    """Hold the lease ``name`` for ``seconds`` from now as ``holder`` when it is free, expired
    or already ``holder``'s; whether ``holder`` holds it now. Processes sharing a store call
    this again well within ``seconds`` to keep what they hold."""
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    async with store.session() as session:
        statement = insert_for(session)(Lease).values(name=name, holder=holder, expires_at=until)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["name"],
                set_={"holder": holder, "expires_at": until},
                where=(Lease.__table__.c.holder == holder) | (Lease.__table__.c.expires_at < now),
            )
        )
        return await session.scalar(select(Lease.holder).where(Lease.name == name)) == holder


async def release_lease(store: Store, name: str, holder: str) -> None:
    """Give up ``name`` if ``holder`` holds it, for another process to take at once."""
    async with store.session() as session:
        await session.execute(delete(Lease).where(Lease.name == name, Lease.holder == holder))


async def save_conversation(session: AsyncSession, record: ConversationRecord) -> None:
    """Insert or update one conversation, its customer and its threads."""
    await save_conversations(session, [record])


async def save_conversations(session: AsyncSession, records: Sequence[ConversationRecord]) -> None:
    """Insert or update conversations, their customers and their threads, in a few statements.

    A copy older than the stored one (``modified_at``) leaves the conversation's fields alone:
    a late webhook retry must not undo a newer state. Threads are only ever added or updated.
    """
    if not records:
        return
    # One row per id: a multi-row upsert may not touch the same row twice. The newest copy wins.
    latest: dict[int, ConversationRecord] = {}
    for record in records:
        kept = latest.get(record.conversation["id"])
        if kept is None or _not_older(record.conversation, kept.conversation):
            latest[record.conversation["id"]] = record
    records = list(latest.values())
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


async def save_customers(session: AsyncSession, records: Sequence[CustomerRecord]) -> None:
    """Insert or update customers; a field sent as ``None`` keeps what is stored."""
    if not records:
        return
    merged: dict[int, CustomerRecord] = {}
    for record in records:
        earlier = merged.get(record["id"], {})
        merged[record["id"]] = {
            k: v if v is not None else earlier.get(k) for k, v in record.items()
        }
    statement = insert_for(session)(Customer)
    table = Customer.__table__.c
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["id"],
            set_={
                key: func.coalesce(statement.excluded[key], table[key])
                for key in ("email", "first_name", "last_name")
            },
        ),
        list(merged.values()),
    )


def _not_older(candidate: dict[str, Any], kept: dict[str, Any]) -> bool:
    if candidate["modified_at"] is None or kept["modified_at"] is None:
        return True
    return bool(candidate["modified_at"] >= kept["modified_at"])


async def delete_conversation(session: AsyncSession, conversation_id: int) -> None:
    """Remove a conversation and every thread of it."""
    await session.execute(delete(Thread).where(Thread.conversation_id == conversation_id))
    await session.execute(delete(Conversation).where(Conversation.id == conversation_id))


async def delete_customer(session: AsyncSession, customer_id: int) -> None:
    """Remove a customer and, as Help Scout does, every conversation of theirs."""
    owned = select(Conversation.id).where(Conversation.customer_id == customer_id)
    await session.execute(delete(Thread).where(Thread.conversation_id.in_(owned)))
    await session.execute(delete(Conversation).where(Conversation.customer_id == customer_id))
    await session.execute(delete(Customer).where(Customer.id == customer_id))
