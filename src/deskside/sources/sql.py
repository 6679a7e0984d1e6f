"""``kind = "sql"``: the customer's rows from any database SQLAlchemy speaks, asynchronously."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from sqlalchemy import make_url, text
from sqlalchemy.exc import ArgumentError

from deskside.configtypes import Secret
from deskside.lookup import Lookup
from deskside.sources.base import Record, Source, SourceConfig
from deskside.sources.sql_drivers import Runner, runner_for

__all__ = ["SOURCE", "SqlSource", "SqlSourceConfig"]

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "mysql": "mysql+aiomysql",
    "mariadb": "mysql+aiomysql",
}
_BIND_NAMES = frozenset({"emails", "email"})


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
    """Runs the configured query with the addresses bound, never pasted into the SQL: on
    PostgreSQL straight through asyncpg's prepared statements, elsewhere through SQLAlchemy
    (see :mod:`deskside.sources.sql_drivers`)."""

    kind = "sql"
    config_model = SqlSourceConfig

    def __init__(self, name: str, config: SqlSourceConfig) -> None:
        super().__init__(name, config)
        self._max_rows = config.max_rows
        self._runner: Runner = runner_for(
            config.url.get_secret_value(), config.query, config.pool_size
        )

    async def fetch(self, lookup: Lookup) -> list[Record]:
        return await self._runner.rows(lookup, self._max_rows)

    async def check(self) -> None:
        """Connect, then run the query for :data:`CHECK_LOOKUP`: a refused query (syntax, a
        missing table or column) raises :class:`SourceQueryError` with ``key = "query"``."""
        await self._runner.check()

    async def aclose(self) -> None:
        await self._runner.aclose()


SOURCE = SqlSource
"""This module's source kind (see :mod:`deskside.sources`)."""
