"""``kind = "sql"``: the customer's rows from any database SQLAlchemy speaks, asynchronously."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from sqlalchemy import bindparam, make_url, text
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from deskside.configtypes import Secret
from deskside.errors import SourceError
from deskside.lookup import Lookup
from deskside.sources.base import CHECK_LOOKUP, Record, Source, SourceConfig, SourceQueryError

__all__ = ["SOURCE", "SqlSource", "SqlSourceConfig"]

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
}
_BIND_NAMES = frozenset({"emails", "email"})
_HIDDEN = "<address>"


class SqlSourceConfig(SourceConfig):
    """A SQLAlchemy URL and one query that finds the customer by ``:emails``."""

    kind: Literal["sql"]
    url: Secret
    """``sqlite:///app.db``, ``postgresql://…``, ``mysql://…``; the async driver is chosen."""
    query: str
    """Selects the customer's rows; ``:emails`` is the list of addresses, ``:email`` the first."""
    max_rows: int = Field(default=50, ge=1, le=1000)
    pool_size: int = Field(default=10, ge=1, le=100)

    @field_validator("url")
    @classmethod
    def _async_driver(cls, url: SecretStr, info: ValidationInfo) -> SecretStr:
        return SecretStr(async_url(url.get_secret_value(), (info.context or {}).get("base_dir")))

    @field_validator("query")
    @classmethod
    def _bound_parameters_only(cls, query: str) -> str:
        names = set(text(query).compile().params)
        unknown = names - _BIND_NAMES
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(sorted(':' + n for n in unknown))}: "
                "the query may use :emails (every address) and :email (the first)"
            )
        if not names:
            raise ValueError(
                "the query must find the customer by a bound parameter, e.g. "
                "`where lower(email) in :emails` (never paste addresses into SQL)"
            )
        return query


def async_url(url: str, base_dir: str | Path | None = None) -> str:
    """``url`` with its dialect's async driver; relative SQLite paths resolved from ``base_dir``."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValueError(
            "not a database URL: expected e.g. postgresql://user@host/db or sqlite:///file.db"
        ) from None
    dialect, _, driver = parsed.drivername.partition("+")
    if dialect not in _ASYNC_DRIVERS:
        raise ValueError(f"unsupported database {dialect!r}: use sqlite, postgresql or mysql")
    if not driver or driver not in {"aiosqlite", "asyncpg", "aiomysql", "asyncmy", "psycopg"}:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[dialect])
    database = parsed.database
    relative = bool(database) and not Path(database or "").is_absolute()
    if dialect == "sqlite" and relative and base_dir is not None and database != ":memory:":
        parsed = parsed.set(database=str(Path(base_dir) / str(database)))
    return parsed.render_as_string(hide_password=False)


class SqlSource(Source):
    """Runs the configured query with the addresses bound as an expanding parameter."""

    kind = "sql"
    config_model = SqlSourceConfig

    def __init__(self, name: str, config: SqlSourceConfig) -> None:
        super().__init__(name, config)
        self._config = config
        url = config.url.get_secret_value()
        options: dict[str, Any] = {}
        if not url.startswith("sqlite"):  # SQLite needs no pool tuning; in-memory takes none
            options = {
                "pool_size": config.pool_size,
                "max_overflow": config.pool_size,
                "pool_recycle": 1800,
            }
        # Lookups only read: no BEGIN/ROLLBACK round trips around each one. The bound
        # addresses never appear in SQLAlchemy's error messages (nor in its statement log).
        self._engine: AsyncEngine = create_async_engine(
            url, isolation_level="AUTOCOMMIT", hide_parameters=True, **options
        )
        self._query = text(config.query)
        self._binds = set(self._query.compile().params)
        if "emails" in self._binds:
            self._query = self._query.bindparams(bindparam("emails", expanding=True))

    async def fetch(self, lookup: Lookup) -> list[Record]:
        params = self._params(lookup)
        try:
            async with self._engine.connect() as connection:
                result = await connection.execute(self._query, params)
                rows = result.mappings().fetchmany(self._config.max_rows)
        except SQLAlchemyError as exc:
            raise SourceError(_describe(exc, lookup.emails)) from exc
        except OSError as exc:
            raise SourceError(f"cannot connect: {exc}") from exc
        return [dict(row) for row in rows]

    async def check(self) -> None:
        """Connect, then run the query for :data:`CHECK_LOOKUP`: a refused query (syntax, a
        missing table or column) raises :class:`SourceQueryError` with ``key = "query"``."""
        emails = CHECK_LOOKUP.emails
        try:
            async with self._engine.connect() as connection:
                try:
                    result = await connection.execute(self._query, self._params(CHECK_LOOKUP))
                    result.fetchmany(1)
                except SQLAlchemyError as exc:
                    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
                        raise
                    raise SourceQueryError(_describe(exc, emails), key="query") from exc
        except (SQLAlchemyError, OSError) as exc:
            raise SourceError(_describe(exc, emails)) from exc

    def _params(self, lookup: Lookup) -> dict[str, Any]:
        values = {"emails": list(lookup.emails), "email": lookup.email}
        return {name: values[name] for name in self._binds}

    async def aclose(self) -> None:
        await self._engine.dispose()


def _describe(exc: BaseException, addresses: Sequence[str]) -> str:
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


SOURCE = SqlSource
"""This module's source kind (see :mod:`deskside.sources`)."""
