"""The insights store: an async SQLAlchemy engine on SQLite (default) or PostgreSQL, brought
to the newest schema by Alembic when opened, its sessions, and the leases processes share
(:mod:`deskside.insights.ingest.changes` writes Help Scout's data into it).

A SQLite store is private to its user (folder 0700, files 0600). SQL parameters (customers'
addresses, message text) never appear in an error message from here: the engines hide them,
and :func:`describe_error` names a failure without the database's own words, which may quote
values.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection as SyncConnection
from sqlalchemy import delete, event, make_url, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from deskside.insights.models import DEFAULT_WORKSPACE, Lease, utcnow
from deskside.insights.settings import InsightsSettings
from deskside.paths import data_dir
from deskside.sources.sql import async_url

__all__ = [
    "DEFAULT_DATABASE_FILE",
    "Store",
    "database_url",
    "describe_error",
    "finish_before_cancel",
    "insert_for",
    "release_lease",
    "take_lease",
    "workspace_location",
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
    return async_url(f"sqlite:///{data_dir() / DEFAULT_DATABASE_FILE}")


class Store:
    """The engine and sessions of one workspace's insights data. ``await open()`` before use.

    ``url`` is the ``[insights] database``; the default workspace's data is there, another
    workspace's beside it (:func:`workspace_location`), so that no query of one workspace can
    reach another's rows. Sessions carry the workspace in ``session.info["workspace"]``."""

    def __init__(self, url: str, *, workspace: str = DEFAULT_WORKSPACE, pool_size: int = 5) -> None:
        self.workspace = workspace
        self.dialect = url.split("+", 1)[0].split(":", 1)[0]
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError("the insights store runs on SQLite or PostgreSQL")
        self.database_url = url
        """``[insights] database``, where the default workspace's data and the people are."""
        self.url, self.schema = workspace_location(url, workspace)
        # Errors never quote the SQL parameters: they are customers' data.
        options: dict[str, Any] = {"hide_parameters": True}
        if self.dialect == "postgresql":
            options |= {"pool_size": pool_size, "max_overflow": pool_size, "pool_pre_ping": True}
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        self._reader = self.engine
        if self.schema is not None:
            _search_path(self.engine, self.schema)
        if self.dialect == "sqlite":
            _sqlite_pragmas(self.engine)
            _sqlite_write_transactions(self.engine)
            # Readers get their own connections with plain BEGIN: in WAL mode they never wait
            # for, nor hold up, the writer.
            self._reader = create_async_engine(self.url, hide_parameters=True)
            _sqlite_pragmas(self._reader)
        info = {"workspace": workspace}
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, info=info)
        # SQLite has one writer at a time: within a process, writers queue here, in order,
        # rather than in SQLite's busy handler, which sleeps and retries.
        self._write_turn = asyncio.Lock() if self.dialect == "sqlite" else None
        self._read_sessions = async_sessionmaker(self._reader, expire_on_commit=False, info=info)

    async def open(self) -> Store:
        """Create or upgrade the schema (several processes may race here: they take turns).
        A SQLite database is private to its user: see :func:`_private_sqlite_file`."""
        if self.dialect == "sqlite":
            database = self.engine.url.database
            if database and database != ":memory:" and not database.startswith("file:"):
                _private_sqlite_file(Path(database))
        async with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                await connection.execute(text("select pg_advisory_xact_lock(7406177)"))
            if self.schema is not None:
                await connection.execute(text(f'create schema if not exists "{self.schema}"'))
            await connection.run_sync(_upgrade)
        return self

    async def destroy(self) -> None:
        """Remove every row of this workspace for good: its PostgreSQL schema, or its SQLite
        files. Only for a workspace other than the default one; the store is closed after."""
        if self.workspace == DEFAULT_WORKSPACE:
            raise ValueError("the default workspace cannot be removed")
        if self.schema is not None:
            async with self.engine.begin() as connection:
                await connection.execute(text(f'drop schema if exists "{self.schema}" cascade'))
        await self.aclose()
        database = make_url(self.url).database
        if self.dialect == "sqlite" and database and database != ":memory:":
            await asyncio.to_thread(_remove_sqlite_files, Path(database))

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


def workspace_location(url: str, workspace: str) -> tuple[str, str | None]:
    """Where ``workspace``'s data lives, given the ``[insights] database`` URL: the URL itself
    for the default workspace; else, on SQLite, a file beside it (``insights.db`` →
    ``insights.acme.db``) and, on PostgreSQL, the same database with the schema
    ``deskside_acme`` (the second item). ``workspace`` must be a valid name
    (:data:`deskside.insights.workspaces.NAME`)."""
    if workspace == DEFAULT_WORKSPACE:
        return url, None
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        return url, "deskside_" + workspace.replace("-", "_")
    database = parsed.database or ""
    if database in ("", ":memory:"):  # each engine has a database of its own
        return url, None
    if database.startswith("file:"):
        raise ValueError("workspaces need [insights] database to name a file, not a file: URI")
    path = Path(database)
    beside = path.with_name(f"{path.stem}.{workspace}{path.suffix or '.db'}")
    return parsed.set(database=str(beside)).render_as_string(hide_password=False), None


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + suffix).unlink()


def _search_path(engine: AsyncEngine, schema: str) -> None:
    """PostgreSQL: every connection of ``engine`` reads and writes ``schema`` (its tables
    have no schema of their own), and sees no other."""

    @event.listens_for(engine.sync_engine, "connect", insert=True)
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        cursor.execute(f'set search_path to "{schema}"')
        cursor.close()
        dbapi_connection.autocommit = autocommit


def _private_sqlite_file(path: Path) -> None:
    """Create the database's folder (0700) and file (0600) when missing, and take the group's
    and others' access away from an existing file, its ``-wal`` and its ``-shm``: SQLite creates
    those two with the database file's own mode. A folder that already exists is left as is."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(file.stat().st_mode)
            if mode & 0o077:
                file.chmod(mode & 0o700)


def describe_error(exc: BaseException) -> str:
    """What failed, safe to log and to keep with an event: the exception's class, for a
    database error the driver's class and the statement's first words (``INSERT INTO
    conversations``), never a parameter nor the database's message (which may quote values)."""
    if not isinstance(exc, StatementError):
        return type(exc).__name__
    described = type(exc).__name__
    if isinstance(exc, DBAPIError):  # the driver's own exception, under the DB-API wrapper
        driver = exc.orig.__cause__ or exc.orig if exc.orig is not None else None
        described += f" ({type(driver).__name__})" if driver is not None else ""
    words = " ".join(str(exc.statement or "").split()[:3])
    return f"{described} in {words}" if words else described


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
