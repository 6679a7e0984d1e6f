"""SQLite lookups straight on aiosqlite.

The query is SQLAlchemy's compilation of its text for SQLite (``?`` placeholders in order),
once at startup; ``:emails`` gets as many placeholders as there are addresses (a text per
count, kept). sqlite3 binds every value itself. Up to ``pool_size`` connections are opened as
lookups need them (one for an in-memory database, which each connection would otherwise see
empty); each runs its lookups one after another in its own thread, so lookups share them in
turn rather than waiting to check one out. A lookup cut at the deadline leaves its connection
sound: sqlite3 finishes the statement in that thread and the answer is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy import make_url
from sqlalchemy.dialects.sqlite.aiosqlite import dialect

from deskside.errors import SourceError
from deskside.lookup import Lookup
from deskside.sources.base import CHECK_LOOKUP, Record, SourceQueryError
from deskside.sources.sql_drivers import PositionalQuery, describe

__all__ = ["AiosqliteRunner", "SqliteQuery"]


class SqliteQuery(PositionalQuery):
    """The query for sqlite3 (``?`` placeholders)."""

    def __init__(self, query: str) -> None:
        super().__init__(query, dialect())


class AiosqliteRunner:
    """Autocommit connections (no transaction around a lookup), opened on demand."""

    def __init__(self, url: str, query: SqliteQuery, pool_size: int) -> None:
        arguments, options = dialect().create_connect_args(make_url(url))
        options.pop("check_same_thread", None)  # aiosqlite's thread is the only user
        self._database: str = arguments[0]
        self._options: dict[str, Any] = {**options, "isolation_level": None}
        in_memory = self._database == ":memory:" or "mode=memory" in self._database
        self._size = 1 if in_memory else pool_size
        self._query = query
        self._connections: list[aiosqlite.Connection] = []
        self._turns = itertools.count()
        self._opening: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _connection(self) -> aiosqlite.Connection:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop: the old one's connections are gone
            self._connections, self._loop, self._opening = [], loop, asyncio.Lock()
        turn = next(self._turns)
        if len(self._connections) >= self._size:
            return self._connections[turn % self._size]
        assert self._opening is not None
        async with self._opening:  # one opens at a time; the others use those already open
            if len(self._connections) < self._size:
                connection = aiosqlite.connect(self._database, **self._options)
                try:
                    await connection
                except BaseException:
                    await _stop(connection)
                    raise
                connection.row_factory = sqlite3.Row
                self._connections.append(connection)
                return connection
        return self._connections[turn % self._size]

    async def _run(self, connection: aiosqlite.Connection, lookup: Lookup, limit: int) -> Any:
        # One trip to the connection's thread: run and read together (all rows, as SQLAlchemy's
        # adapter read them too), then keep the first ``limit``.
        found = await connection.execute_fetchall(
            self._query.text_for(len(lookup.emails)), self._query.values(lookup)
        )
        return [dict(zip(row.keys(), row, strict=True)) for row in list(found)[:limit]]

    async def rows(self, lookup: Lookup, limit: int) -> list[Record]:
        try:
            connection = await self._connection()
            found: list[Record] = await self._run(connection, lookup, limit)
        except (sqlite3.Error, ValueError, OSError) as exc:
            raise SourceError(describe(exc, lookup.emails)) from None
        return found

    async def check(self) -> None:
        emails = CHECK_LOOKUP.emails
        try:
            connection = await self._connection()
        except (sqlite3.Error, ValueError, OSError) as exc:
            raise SourceError(describe(exc, emails)) from None
        try:
            await self._run(connection, CHECK_LOOKUP, 1)
        except (sqlite3.Error, ValueError) as exc:
            raise SourceQueryError(describe(exc, emails), key="query") from None

    async def aclose(self) -> None:
        connections, self._connections = self._connections, []
        for connection in connections:
            await _stop(connection)


async def _stop(connection: aiosqlite.Connection) -> None:
    """Close the connection and end its thread, whatever state it is in."""
    with contextlib.suppress(sqlite3.Error, ValueError, RuntimeError):
        await connection.close()
