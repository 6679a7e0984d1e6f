"""MySQL/MariaDB lookups straight on aiomysql, with a small pool of its own.

The query is SQLAlchemy's compilation of its text for the aiomysql dialect (``%s``
placeholders in order, ``%`` doubled), once at startup; ``:emails`` gets as many placeholders
as there are addresses (a statement per count, kept). aiomysql binds on the client, escaping
each value itself (MySQL's text protocol has no cheaper prepared path through it); nothing is
formatted into the SQL by deskside. A connection whose lookup failed or was cut short (the
deadline) is closed, never reused: its protocol state is unknown.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiomysql
import pymysql  # type: ignore[import-untyped]
from sqlalchemy import make_url

from deskside.errors import SourceError
from deskside.lookup import Lookup
from deskside.sources.base import CHECK_LOOKUP, Record, SourceQueryError
from deskside.sources.sql_drivers import PositionalQuery, describe

__all__ = ["AiomysqlRunner", "MysqlQuery"]

_RECYCLE_SECONDS = 1800
"""An idle connection older than this is closed rather than reused (as SQLAlchemy's
``pool_recycle`` did): servers drop connections idle past ``wait_timeout``."""


class MysqlQuery(PositionalQuery):
    """The query for aiomysql (``%s`` placeholders)."""

    placeholder = "%s"

    def __init__(self, query: str) -> None:
        from sqlalchemy.dialects.mysql.aiomysql import dialect

        super().__init__(query, dialect())


class AiomysqlRunner:
    """At most ``2 * pool_size`` connections (SQLAlchemy's pool size plus as much overflow, as
    before), ``pool_size`` of them kept idle; autocommit, so a lookup is one round trip."""

    def __init__(self, url: str, query: MysqlQuery, pool_size: int) -> None:
        from sqlalchemy.dialects.mysql.aiomysql import dialect

        mysql = dialect()
        _, options = mysql.create_connect_args(make_url(url))
        self._options: dict[str, Any] = {**options, "autocommit": True}
        self._query = query
        self._keep = pool_size
        self._max_size = 2 * pool_size
        self._idle: list[tuple[aiomysql.Connection, float]] = []
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _connection(self) -> aiomysql.Connection:
        """An idle connection, or a new one; holds one of the pool's slots until released."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._discard_idle()
            self._slots, self._loop = asyncio.Semaphore(self._max_size), loop
        slots = self._slots
        await slots.acquire()
        try:
            now = time.monotonic()
            while self._idle:
                connection, since = self._idle.pop()
                if now - since < _RECYCLE_SECONDS and _usable(connection):
                    return connection
                connection.close()
            return await self._connect()
        except BaseException:
            slots.release()
            raise

    async def _connect(self) -> aiomysql.Connection:
        connection = aiomysql.Connection(**self._options)
        try:
            await connection._connect()
        except BaseException:  # aiomysql closes its socket on errors, not on cancellation
            connection.close()
            raise
        return connection

    def _release(self, connection: aiomysql.Connection, healthy: bool) -> None:
        if healthy and _usable(connection) and len(self._idle) < self._keep:
            self._idle.append((connection, time.monotonic()))
        else:
            connection.close()
        if self._slots is not None:
            self._slots.release()

    async def _run(self, lookup: Lookup, limit: int) -> list[Record]:
        connection = await self._connection()
        healthy = False
        try:
            cursor = await connection.cursor()
            await cursor.execute(
                self._query.text_for(len(lookup.emails)), self._query.values(lookup)
            )
            names = [column[0] for column in cursor.description or ()]
            found = [dict(zip(names, row, strict=True)) for row in await cursor.fetchmany(limit)]
            healthy = True
            return found
        finally:
            self._release(connection, healthy)

    async def rows(self, lookup: Lookup, limit: int) -> list[Record]:
        try:
            return await self._run(lookup, limit)
        except pymysql.MySQLError as exc:
            raise SourceError(describe(exc, lookup.emails)) from None
        except OSError as exc:
            raise SourceError(f"cannot connect: {describe(exc, lookup.emails)}") from None

    async def check(self) -> None:
        emails = CHECK_LOOKUP.emails
        try:
            connection = await self._connection()
        except (pymysql.MySQLError, OSError) as exc:
            raise SourceError(describe(exc, emails)) from None
        healthy = False
        try:
            cursor = await connection.cursor()
            await cursor.execute(self._query.text_for(1), self._query.values(CHECK_LOOKUP))
            healthy = True
        except pymysql.MySQLError as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
            if 2000 <= code < 3000:  # the client's errors: the connection, not the query
                raise SourceError(describe(exc, emails)) from None
            raise SourceQueryError(describe(exc, emails), key="query") from None
        except OSError as exc:
            raise SourceError(describe(exc, emails)) from None
        finally:
            self._release(connection, healthy)

    def _discard_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            connection.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            try:
                await asyncio.wait_for(connection.ensure_closed(), 2)
            except (OSError, TimeoutError, RuntimeError):
                connection.close()


def _usable(connection: aiomysql.Connection) -> bool:
    """Open, not closed by the server meanwhile, not inside a transaction."""
    reader = connection._reader
    if connection.closed or reader is None or reader.at_eof() or reader.exception():
        return False
    if getattr(reader, "eof_received", False):
        return False
    return not connection.get_transaction_status()
