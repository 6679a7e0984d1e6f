"""The conversation store: an async SQLAlchemy engine on SQLite (default) or PostgreSQL, brought
to the newest schema by Alembic when opened, and the writes that keep it in step with Help Scout.

Every write is an upsert keyed by Help Scout's ids, so an import that runs twice, a repeated
webhook and a webhook racing an import all end in the same rows.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import delete, event, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from deskside.insights.models import Conversation, Customer, Thread
from deskside.insights.normalise import ConversationRecord, CustomerRecord
from deskside.insights.settings import InsightsSettings
from deskside.sources.sql import async_url

__all__ = [
    "DEFAULT_DATABASE_FILE",
    "Store",
    "database_url",
    "delete_conversation",
    "delete_customer",
    "insert_for",
    "save_conversation",
    "save_customer",
]

DEFAULT_DATABASE_FILE = "insights.db"
_MIGRATIONS = Path(__file__).parent / "migrations"


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
        if self.dialect == "sqlite":
            _sqlite_transactions(self.engine)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

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
        async with self.sessions() as session, session.begin():
            yield session

    async def aclose(self) -> None:
        await self.engine.dispose()


def _sqlite_transactions(engine: AsyncEngine) -> None:
    """SQLite: durable commits, waits instead of "database is locked", and ``BEGIN IMMEDIATE``
    so two writers queue up instead of failing when a read turns into a write."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            "synchronous=FULL",
            "busy_timeout=30000",
            "foreign_keys=ON",
        ):
            cursor.execute(f"pragma {pragma}")
        cursor.close()

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


async def save_conversation(session: AsyncSession, record: ConversationRecord) -> None:
    """Insert or update the conversation, its customer and its threads.

    A copy older than the stored one (``modified_at``) leaves the conversation's fields alone:
    a late webhook retry must not undo a newer state. Threads are only ever added or updated.
    """
    if record.customer is not None:
        await save_customer(session, record.customer)
    values = record.conversation
    insert = insert_for(session)
    statement = insert(Conversation).values(**values)
    stored = Conversation.__table__.c.modified_at
    newer = (
        (stored.is_(None))
        | (statement.excluded.modified_at.is_(None))
        | (statement.excluded.modified_at >= stored)
    )
    changes = {key: statement.excluded[key] for key in values if key != "id"}
    await session.execute(
        statement.on_conflict_do_update(index_elements=["id"], set_=changes, where=newer)
    )
    if record.threads:
        await _save_threads(session, record.threads)


async def _save_threads(session: AsyncSession, threads: Sequence[dict[str, Any]]) -> None:
    statement = insert_for(session)(Thread)
    columns = [key for key in threads[0] if key != "id"]
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["id"], set_={key: statement.excluded[key] for key in columns}
        ),
        list(threads),
    )


async def save_customer(session: AsyncSession, record: CustomerRecord) -> None:
    """Insert or update a customer; a missing field keeps what is stored."""
    values = {key: value for key, value in record.items() if value is not None}
    statement = insert_for(session)(Customer).values(**values)
    changes = {key: statement.excluded[key] for key in values if key != "id"}
    if changes:
        statement = statement.on_conflict_do_update(index_elements=["id"], set_=changes)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["id"])
    await session.execute(statement)


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
