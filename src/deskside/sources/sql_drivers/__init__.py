"""How an SQL source runs its query: straight on asyncpg for PostgreSQL, else SQLAlchemy.

The query a user writes keeps its ``:email``/``:emails`` parameters. SQLAlchemy's own
compilation of ``text()`` finds them (it skips ``::`` casts and ``\\:`` escapes exactly as
the configuration check does) and gives PostgreSQL's ``$n`` placeholders and their order,
once at startup. ``in :emails`` becomes ``= any($n)`` with the addresses bound as one array,
so one prepared statement serves any number of addresses; the statement is prepared once per
connection (asyncpg's statement cache) and a lookup is one round trip. Values are always
bound, never formatted into the SQL, and no error message holds a bound value.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import bindparam, make_url, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from deskside.errors import SourceError
from deskside.lookup import Lookup
from deskside.sources.base import CHECK_LOOKUP, Record, SourceQueryError

if TYPE_CHECKING:
    import asyncpg
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "AsyncpgRunner",
    "PositionalQuery",
    "Runner",
    "SqlAlchemyRunner",
    "describe",
    "runner_for",
    "translate",
]

_HIDDEN = "<address>"
_EMAILS_TOKEN = "__[POSTCOMPILE_emails]"  # noqa: S105 - SQLAlchemy's marker, not a secret
_IN_EMAILS = re.compile(  # `in :emails`, or `in (:emails)`, compiled: the list in brackets
    r"\b(not\s+)?in\s*(\(\s*)?\(" + re.escape(_EMAILS_TOKEN) + r"\)(?(2)\s*\))", re.IGNORECASE
)
_PLACEHOLDER = re.compile(r"\$(\d+)(?!\d)")
_NOT_THE_QUERY = frozenset({"08", "28", "3D", "53", "57", "58"})
"""SQLSTATE classes that say the server or connection failed, not the query: connection
exceptions, authorisation, unknown database, resources, operator intervention, system."""


class Runner(Protocol):
    """Runs one source's query: ``rows`` for a lookup, ``check`` for its query, ``aclose``."""

    async def rows(self, lookup: Lookup, limit: int) -> list[Record]:
        """At most ``limit`` rows for ``lookup``; a :class:`SourceError` when it cannot."""

    async def check(self) -> None:
        """Run the query for :data:`CHECK_LOOKUP`; :class:`SourceQueryError` if refused."""

    async def aclose(self) -> None:
        """Release every connection."""


def runner_for(url: str, query: str, pool_size: int) -> Runner:
    """The driver's own path for ``postgresql+asyncpg`` URLs whose query translates, for
    ``mysql+aiomysql`` and ``sqlite+aiosqlite``; else SQLAlchemy (asyncmy, psycopg)."""
    driver = make_url(url).drivername
    if driver == "postgresql+asyncpg":
        translated = translate(query)
        if translated is not None:
            return AsyncpgRunner(url, translated, pool_size)
    if driver == "mysql+aiomysql":
        from deskside.sources.sql_drivers.mysql import AiomysqlRunner, MysqlQuery

        return AiomysqlRunner(url, MysqlQuery(query), pool_size)
    if driver == "sqlite+aiosqlite":
        from deskside.sources.sql_drivers.sqlite import AiosqliteRunner, SqliteQuery

        return AiosqliteRunner(url, SqliteQuery(query), pool_size)
    return SqlAlchemyRunner(url, query, pool_size)


# -- translation ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Translated:
    """The query with PostgreSQL's placeholders; ``order[n - 1]`` is what ``$n`` binds."""

    sql: str
    order: tuple[str, ...]


def translate(query: str) -> Translated | None:
    """``query`` for asyncpg: SQLAlchemy's compilation with ``$n`` placeholders, every
    ``[not] in :emails`` as ``= any($n)`` (``<> all($n)``) and any other ``:emails`` as
    ``$n``, bound to the addresses as one array. None when the compiled text is not what
    this expects (then SQLAlchemy runs the query as before)."""
    from sqlalchemy.dialects.postgresql.asyncpg import dialect

    clause = text(query)
    names = set(clause.compile().params)
    if "emails" in names:
        clause = clause.bindparams(bindparam("emails", expanding=True))
    compiled = clause.compile(dialect=dialect())  # type: ignore[no-untyped-call]
    # Scalars are numbered $1… in the compiled order, each name once; the array comes last.
    scalars = tuple(dict.fromkeys(n for n in compiled.positiontup or () if n != "emails"))
    sql = compiled.string
    if "emails" in names:
        array = f"${len(scalars) + 1}"

        def as_array(match: re.Match[str]) -> str:
            return f"<> all({array})" if match.group(1) else f"= any({array})"

        sql = _IN_EMAILS.sub(as_array, sql).replace(_EMAILS_TOKEN, array)
    order = scalars + (("emails",) if "emails" in names else ())
    numbers = {int(n) for n in _PLACEHOLDER.findall(sql)}
    if not set(range(1, len(order) + 1)) <= numbers or _EMAILS_TOKEN in sql:
        return None
    return Translated(sql=sql, order=order)


def _arguments(order: Sequence[str], lookup: Lookup) -> list[Any]:
    return [list(lookup.emails) if name == "emails" else lookup.email for name in order]


class PositionalQuery:
    """A query for a driver taking positional parameters: its text for a number of addresses,
    and the values in order. Compiled once by SQLAlchemy for the driver's dialect (so the
    query's ``:name`` parameters are found as SQLAlchemy finds them); ``:emails`` gets one
    :attr:`placeholder` per address."""

    placeholder = "?"

    def __init__(self, query: str, dialect: Any) -> None:
        clause = text(query)
        if "emails" in clause.compile().params:
            clause = clause.bindparams(bindparam("emails", expanding=True))
        compiled = clause.compile(dialect=dialect)
        self._template = compiled.string
        self.order: tuple[str, ...] = tuple(compiled.positiontup or ())
        self._texts: dict[int, str] = {}

    def text_for(self, count: int) -> str:
        """The SQL with ``count`` placeholders wherever ``:emails`` stands."""
        sql = self._texts.get(count)
        if sql is None:
            sql = self._template.replace(_EMAILS_TOKEN, ", ".join([self.placeholder] * count))
            self._texts[count] = sql
        return sql

    def values(self, lookup: Lookup) -> tuple[Any, ...]:
        """The values to bind, in the placeholders' order."""
        out: list[Any] = []
        for name in self.order:
            if name == "emails":
                out.extend(lookup.emails)
            else:
                out.append(lookup.email)
        return tuple(out)


# -- PostgreSQL through asyncpg --------------------------------------------------------------


class AsyncpgRunner:
    """A pool of asyncpg connections, made on first use in the running event loop: at most
    ``2 * pool_size`` connections (SQLAlchemy's pool size plus as much overflow, as before),
    idle ones closed after 5 minutes; a released connection is not reset (a lookup changes no
    session state), so a lookup is one round trip."""

    def __init__(self, url: str, translated: Translated, pool_size: int) -> None:
        from sqlalchemy.dialects.postgresql.asyncpg import dialect

        postgres = dialect()  # type: ignore[no-untyped-call]
        _, options = postgres.create_connect_args(make_url(url))  # type: ignore[no-untyped-call]
        if "prepared_statement_cache_size" in options:  # SQLAlchemy's name for the option
            options["statement_cache_size"] = options.pop("prepared_statement_cache_size")
        self._options: dict[str, Any] = options
        self._translated = translated
        self._max_size = 2 * pool_size
        self._pool: asyncpg.Pool | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._starting: asyncio.Task[asyncpg.Pool] | None = None

    async def _acquired_pool(self) -> asyncpg.Pool:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        if self._starting is None or self._starting.get_loop() is not loop:
            # One start for every lookup that arrives before the pool is ready.
            self._starting = loop.create_task(self._start(loop))
        return await asyncio.shield(self._starting)

    async def _start(self, loop: asyncio.AbstractEventLoop) -> asyncpg.Pool:
        import asyncpg

        if self._pool is not None:  # made in another event loop, now gone
            self._pool.terminate()
        pool = asyncpg.create_pool(
            min_size=0,
            max_size=self._max_size,
            max_inactive_connection_lifetime=300,
            init=_json_codecs,
            reset=_keep_session,
            **self._options,
        )
        await pool  # with min_size=0 this connects nothing
        self._pool, self._loop = pool, loop
        return pool

    async def rows(self, lookup: Lookup, limit: int) -> list[Record]:
        import asyncpg

        pool = await self._acquired_pool()
        sql = self._translated.sql
        arguments = _arguments(self._translated.order, lookup)
        try:
            async with pool.acquire() as connection:
                try:
                    found = await connection.fetch(sql, *arguments)
                except asyncpg.OutdatedSchemaCacheError:  # a type changed: caches reloaded
                    found = await connection.fetch(sql, *arguments)
        except asyncpg.PostgresError as exc:
            raise SourceError(describe(exc, lookup.emails)) from None
        except (OSError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise SourceError(f"cannot connect: {describe(exc, lookup.emails)}") from None
        return [dict(row) for row in found[:limit]]

    async def check(self) -> None:
        import asyncpg

        emails = CHECK_LOOKUP.emails
        pool = await self._acquired_pool()
        arguments = _arguments(self._translated.order, CHECK_LOOKUP)
        try:
            async with pool.acquire() as connection:
                try:
                    await connection.fetch(self._translated.sql, *arguments)
                except asyncpg.PostgresError as exc:
                    if (exc.sqlstate or "")[:2] in _NOT_THE_QUERY:
                        raise
                    raise SourceQueryError(describe(exc, emails), key="query") from None
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise SourceError(describe(exc, emails)) from None

    async def aclose(self) -> None:
        pool, self._pool, self._starting = self._pool, None, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), 5)
        except (TimeoutError, RuntimeError):  # a stuck connection, or a loop that has gone
            pool.terminate()


async def _json_codecs(connection: asyncpg.Connection) -> None:
    """``json`` and ``jsonb`` values as Python objects, as SQLAlchemy's dialect gives them."""
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog", format="text"
        )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """A lookup leaves no session state behind (asyncpg still rolls back an open transaction)."""


# -- SQLAlchemy, for every other dialect ------------------------------------------------------


class SqlAlchemyRunner:
    """SQLAlchemy's async engine: the query compiled once (its compiled-statement cache),
    ``:emails`` an expanding parameter, no BEGIN/ROLLBACK around a lookup."""

    def __init__(self, url: str, query: str, pool_size: int) -> None:
        # Here, not at the top: the engine brings SQLAlchemy's ORM, which the drivers deskside
        # runs itself (asyncpg, aiomysql, aiosqlite) never need.
        from sqlalchemy.ext.asyncio import create_async_engine

        options: dict[str, Any] = {}
        if not url.startswith("sqlite"):  # SQLite needs no pool tuning; in-memory takes none
            options = {"pool_size": pool_size, "max_overflow": pool_size, "pool_recycle": 1800}
        # The bound addresses never appear in SQLAlchemy's messages (nor its statement log).
        self._engine: AsyncEngine = create_async_engine(
            url, isolation_level="AUTOCOMMIT", hide_parameters=True, **options
        )
        self._query = text(query)
        self._binds = set(self._query.compile().params)
        if "emails" in self._binds:
            self._query = self._query.bindparams(bindparam("emails", expanding=True))

    def _params(self, lookup: Lookup) -> dict[str, Any]:
        values = {"emails": list(lookup.emails), "email": lookup.email}
        return {name: values[name] for name in self._binds}

    async def rows(self, lookup: Lookup, limit: int) -> list[Record]:
        try:
            async with self._engine.connect() as connection:
                result = await connection.execute(self._query, self._params(lookup))
                found = result.mappings().fetchmany(limit)
        except SQLAlchemyError as exc:
            raise SourceError(describe(exc, lookup.emails)) from exc
        except OSError as exc:
            raise SourceError(f"cannot connect: {exc}") from exc
        return [dict(row) for row in found]

    async def check(self) -> None:
        emails = CHECK_LOOKUP.emails
        try:
            async with self._engine.connect() as connection:
                try:
                    result = await connection.execute(self._query, self._params(CHECK_LOOKUP))
                    result.fetchmany(1)
                except SQLAlchemyError as exc:
                    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                        raise
                    raise SourceQueryError(describe(exc, emails), key="query") from exc
        except (SQLAlchemyError, OSError) as exc:
            raise SourceError(describe(exc, emails)) from exc

    async def aclose(self) -> None:
        await self._engine.dispose()


# -- messages --------------------------------------------------------------------------------


def describe(exc: BaseException, addresses: Sequence[str]) -> str:
    """The database's own message, first line, without the addresses that were bound: some
    databases quote bound values in their messages, and these messages are logged."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    message = lines[0] if lines else ""
    return f"{type(original).__name__}: {_without(addresses, message)}"[:300]


def _without(addresses: Sequence[str], message: str) -> str:
    for address in sorted(addresses, key=len, reverse=True):
        message = re.sub(re.escape(address), _HIDDEN, message, flags=re.IGNORECASE)

    # MariaDB quotes the query near a syntax error, cut at 80 characters: perhaps mid-address.
    def cut_short(match: re.Match[str]) -> str:
        start = match.group(1).lower()
        return f"'{_HIDDEN}" if any(a.startswith(start) for a in addresses) else match.group(0)

    return re.sub(r"'([^'\s]{3,})", cut_short, message)
