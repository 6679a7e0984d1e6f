"""The SQL source against real databases: SQLite files, PostgreSQL and MariaDB, same demo data."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
import tomllib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import make_url

from deskside.demo import create_demo_database, demo_rows
from deskside.errors import SourceError
from deskside.expressions import Expression, normalise_record
from deskside.lookup import Lookup, normalise_emails
from deskside.sources.base import SourceQueryError
from deskside.sources.sql import SqlSource, SqlSourceConfig, async_url
from fake_http import unused_port
from test_source_contract import ContractCase, SilentServer

DEMO_TOML = Path(__file__).resolve().parents[1] / "examples" / "demo" / "deskside.toml"
DEMO_QUERY: str = tomllib.loads(DEMO_TOML.read_text(encoding="utf-8"))["sources"]["app"]["query"]

BACKENDS = [
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("mysql", marks=pytest.mark.mysql),
]


@dataclass(frozen=True)
class DemoDatabase:
    url: str
    """The plain URL, as a user writes it in the config (``postgresql://…``)."""
    rows: dict[str, list[dict[str, Any]]]
    """The demo rows exactly as loaded."""

    def company(self, name: str) -> dict[str, Any]:
        return next(c for c in self.rows["companies"] if c["name"] == name)

    def user(self, email: str) -> dict[str, Any]:
        return next(u for u in self.rows["users"] if u["email"] == email)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def demo_db(
    backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DemoDatabase:
    """The demo data loaded into a fresh database of ``backend``."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'demo.db'}"
    else:
        url = request.getfixturevalue(f"{backend}_url")
    while True:  # the demo's dates are relative to today: load again if midnight passed
        today = date.today()
        asyncio.run(create_demo_database(url))
        if date.today() == today:
            return DemoDatabase(url=url, rows=demo_rows(today))


@asynccontextmanager
async def sql_source(url: str, query: str = DEMO_QUERY, **options: Any) -> AsyncIterator[SqlSource]:
    config = SqlSourceConfig.model_validate({"kind": "sql", "url": url, "query": query, **options})
    source = SqlSource("app", config)
    try:
        yield source
    finally:
        await source.aclose()


async def fetch(url: str, *emails: str, query: str = DEMO_QUERY, **options: Any) -> list[dict]:
    async with sql_source(url, query, **options) as source:
        return await source.fetch(Lookup(emails=emails))


async def _aiosqlite_threads_finished() -> None:
    """aiosqlite stops the worker thread of a failed connection without waiting for it; let it
    finish while the event loop still runs, or it reports "Event loop is closed"."""
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, 2)


def unreachable_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'no-such-directory' / 'app.db'}"
    if backend == "postgres":
        return f"postgresql://postgres@127.0.0.1:{unused_port()}/app"
    return f"mysql://root@127.0.0.1:{unused_port()}/app"


@pytest.mark.anyio
class TestSqlSource:
    """The demo config's query, run unchanged on every backend."""

    async def test_finds_the_customer_by_address(self, demo_db: DemoDatabase) -> None:
        rows = await fetch(demo_db.url, "owner@acme.example")

        assert len(rows) == 1
        row = rows[0]
        assert row["company"] == "Acme HR"
        assert row["plan"] == "Pro"
        assert row["employees"] == 42
        assert row["employee_limit"] == 50
        assert row["email"] == "owner@acme.example"
        assert row["name"] == "Olivia Owner"

    async def test_every_address_is_looked_up(self, demo_db: DemoDatabase) -> None:
        rows = await fetch(demo_db.url, "pat@initech.example", "pat@initrode.example")

        assert [row["company"] for row in rows] == ["Initech", "Initrode"]
        assert {row["email"] for row in rows} == {"pat@initech.example", "pat@initrode.example"}

    async def test_unknown_address_finds_nothing(self, demo_db: DemoDatabase) -> None:
        assert await fetch(demo_db.url, "nobody@nowhere.example") == []

    async def test_address_as_the_helpdesk_sent_it(self, demo_db: DemoDatabase) -> None:
        emails = normalise_emails(["  OWNER@Acme.Example "])
        async with sql_source(demo_db.url) as source:
            rows = await source.fetch(Lookup(emails=emails))

        assert [row["company"] for row in rows] == ["Acme HR"]

    @pytest.mark.parametrize(
        "address",
        [
            "x' or '1'='1@evil.example",
            "a@b.example') or 1=1 --",
            "a@b.example'); drop table users; --",
            'a@b.example" or ""="',
        ],
    )
    async def test_addresses_are_bound_never_pasted(
        self, demo_db: DemoDatabase, address: str
    ) -> None:
        async with sql_source(demo_db.url) as source:
            assert await source.fetch(Lookup(emails=(address,))) == []
            still_there = await source.fetch(Lookup(emails=("owner@acme.example",)))

        assert [row["company"] for row in still_there] == ["Acme HR"]

    async def test_dates_are_the_same_types_and_values_everywhere(
        self, demo_db: DemoDatabase
    ) -> None:
        """SQLite hands back text; normalise_record makes it date/aware datetime like the rest."""
        emails = ("owner@acme.example", "lapsed@globex.example", "trial@hooli.example")
        rows = [normalise_record(row) for row in await fetch(demo_db.url, *emails)]
        by_company = {row["company"]: row for row in rows}
        assert set(by_company) == {"Acme HR", "Globex", "Hooli"}

        for company, row in by_company.items():
            expected = demo_db.company(company)
            assert type(row["renews_on"]) is (date if expected["renews_on"] else type(None))
            assert row["renews_on"] == expected["renews_on"]
            assert row["trial_ends_at"] == expected["trial_ends_at"]
            assert row["last_seen_at"] == demo_db.user(row["email"])["last_seen_at"]
            for column in ("trial_ends_at", "last_seen_at"):
                if row[column] is not None:
                    assert isinstance(row[column], datetime)
                    assert row[column].utcoffset() is not None, column

        now = datetime.now(UTC)
        expired = Expression("app.trial_ends_at and app.trial_ends_at < now")
        renews_later = Expression("app.renews_on > today")
        context = {"now": now, "today": now.date()}
        assert expired.evaluate({**context, "app": by_company["Globex"]}) is True
        assert not expired.evaluate({**context, "app": by_company["Hooli"]})
        assert not expired.evaluate({**context, "app": by_company["Acme HR"]})
        assert renews_later.evaluate({**context, "app": by_company["Acme HR"]}) is True

    async def test_query_may_use_only_the_first_address(self, demo_db: DemoDatabase) -> None:
        query = "select name, email from users where lower(email) = :email"
        rows = await fetch(demo_db.url, "owner@acme.example", "pat@initech.example", query=query)

        assert rows == [{"name": "Olivia Owner", "email": "owner@acme.example"}]

    async def test_at_most_max_rows(self, demo_db: DemoDatabase) -> None:
        rows = await fetch(demo_db.url, "pat@initech.example", "pat@initrode.example", max_rows=1)

        assert [row["company"] for row in rows] == ["Initech"]

    @pytest.mark.parametrize(
        ("query", "mentioned"),
        [
            ("selec name from users where email in :emails", ""),
            ("select * from no_such_table where email in :emails", "no_such_table"),
            ("select no_such_column from users where email in :emails", "no_such_column"),
        ],
    )
    async def test_broken_query_is_a_source_error(
        self, demo_db: DemoDatabase, query: str, mentioned: str
    ) -> None:
        with pytest.raises(SourceError) as caught:
            await fetch(demo_db.url, "owner@acme.example", query=query)

        assert mentioned in str(caught.value)

    async def test_check_passes_when_reachable(self, demo_db: DemoDatabase) -> None:
        async with sql_source(demo_db.url) as source:
            await source.check()
        query = "select name from users where lower(email) = :email"
        async with sql_source(demo_db.url, query) as source:
            await source.check()

    @pytest.mark.parametrize(
        ("query", "mentioned"),
        [
            ("selec name from users where email in :emails", "selec"),
            ("select * from no_such_table where email in :emails", "no_such_table"),
            ("select no_such_column from users where email in :emails", "no_such_column"),
        ],
    )
    async def test_check_runs_the_query(
        self, demo_db: DemoDatabase, query: str, mentioned: str
    ) -> None:
        async with sql_source(demo_db.url, query) as source:
            with pytest.raises(SourceQueryError) as caught:
                await source.check()

        assert mentioned in str(caught.value)
        assert caught.value.key == "query"

    async def test_addresses_never_appear_in_errors(self, demo_db: DemoDatabase) -> None:
        """Some databases quote bound values in their messages (MariaDB quotes the query near a
        syntax error, cut at 80 characters); those messages end up in logs."""
        address = "private.person@customer.example"
        queries = [
            "select * from users where id = :email",
            "selec * from users where email = :email",
            "selec * from users where name = 'a longer literal than most' or email = :email",
            "select * from users where email in :emails and no_such_column = 1",
        ]
        messages = []
        for query in queries:
            async with sql_source(demo_db.url, query) as source:
                try:
                    await source.fetch(Lookup(emails=(address, "second@customer.example")))
                except SourceError as exc:
                    messages.append(str(exc))

        assert len(messages) >= 3, messages
        for message in messages:
            assert "private" not in message and "second@" not in message, message

    async def test_unreachable_database_is_a_source_error(
        self, backend: str, tmp_path: Path
    ) -> None:
        started = time.perf_counter()
        async with sql_source(unreachable_url(backend, tmp_path)) as source:
            with pytest.raises(SourceError):
                await source.fetch(Lookup(emails=("owner@acme.example",)))
            with pytest.raises(SourceError):
                await source.check()

        assert time.perf_counter() - started < 10
        await _aiosqlite_threads_finished()


@pytest.mark.anyio
async def test_relative_sqlite_path_is_found_next_to_the_config(tmp_path: Path) -> None:
    await create_demo_database(f"sqlite:///{tmp_path / 'app.db'}")
    config = SqlSourceConfig.model_validate(
        {"kind": "sql", "url": "sqlite:///app.db", "query": DEMO_QUERY},
        context={"base_dir": tmp_path},
    )
    source = SqlSource("app", config)
    try:
        rows = await source.fetch(Lookup(emails=("owner@acme.example",)))
    finally:
        await source.aclose()

    assert [row["company"] for row in rows] == ["Acme HR"]


def test_url_from_the_environment_gets_the_async_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DESKSIDE_TEST_APP_DB", "postgresql://app:pw@db.internal/app")
    config = SqlSourceConfig.model_validate(
        {"kind": "sql", "url": "env:DESKSIDE_TEST_APP_DB", "query": DEMO_QUERY}
    )

    assert config.url.get_secret_value() == "postgresql+asyncpg://app:pw@db.internal/app"
    assert "pw" not in repr(config)


def test_query_without_a_bound_parameter_is_rejected() -> None:
    with pytest.raises(ValidationError) as caught:
        SqlSourceConfig.model_validate(
            {"kind": "sql", "url": "sqlite:///app.db", "query": "select * from users"}
        )

    message = str(caught.value)
    assert "bound parameter" in message
    assert ":emails" in message


def test_query_with_an_unknown_parameter_is_rejected() -> None:
    query = "select * from users where email = :user_email or id = :id"
    with pytest.raises(ValidationError) as caught:
        SqlSourceConfig.model_validate({"kind": "sql", "url": "sqlite:///app.db", "query": query})

    message = str(caught.value)
    assert "unknown parameter(s) :id, :user_email" in message
    assert ":emails" in message and ":email" in message


def test_postgres_casts_are_not_parameters() -> None:
    query = "select id::text as id from users where lower(email)::text in :emails"
    config = SqlSourceConfig.model_validate(
        {"kind": "sql", "url": "postgresql://db/app", "query": query}
    )

    assert config.query == query


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:p@db:5432/app", "postgresql+asyncpg://u:p@db:5432/app"),
        ("postgres://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("mysql://root@db/app", "mysql+aiomysql://root@db/app"),
        ("mysql+pymysql://root@db/app", "mysql+aiomysql://root@db/app"),
        ("mariadb://root@db/app", "mysql+aiomysql://root@db/app"),
        ("mysql+asyncmy://root@db/app", "mysql+asyncmy://root@db/app"),
        ("sqlite:////srv/app.db", "sqlite+aiosqlite:////srv/app.db"),
    ],
)
def test_async_url_picks_the_async_driver(url: str, expected: str) -> None:
    assert async_url(url, "/etc/deskside") == expected


def test_async_url_resolves_relative_sqlite_paths(tmp_path: Path) -> None:
    assert async_url("sqlite:///rel.db", tmp_path) == f"sqlite+aiosqlite:///{tmp_path}/rel.db"
    assert async_url("sqlite:///data/rel.db", tmp_path) == (
        f"sqlite+aiosqlite:///{tmp_path}/data/rel.db"
    )
    assert async_url("sqlite:///rel.db") == "sqlite+aiosqlite:///rel.db"
    assert make_url(async_url("sqlite:///:memory:", tmp_path)).database == ":memory:"
    awkward = tmp_path / "John Doe" / "a@b?c#d%e"
    assert make_url(async_url("sqlite:///app.db", awkward)).database == f"{awkward}/app.db"


@pytest.mark.anyio
@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
async def test_in_memory_sqlite_source_starts(url: str) -> None:
    """Nothing to find in an empty database, but the source must build and answer."""
    rows = await fetch(url, "owner@acme.example", query="select :email as email")

    assert rows == [{"email": "owner@acme.example"}]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("", "not a database URL"),
        ("oracle://scott@db/orcl", "unsupported database 'oracle'"),
        ("mssql+pyodbc://sa@db/app", "unsupported database 'mssql'"),
    ],
)
def test_async_url_rejects_what_it_cannot_use(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        async_url(url)

    with pytest.raises(ValidationError, match=message):
        SqlSourceConfig.model_validate({"kind": "sql", "url": url, "query": DEMO_QUERY})


@asynccontextmanager
async def contract_case(tmp_path: Path, silent: SilentServer) -> AsyncIterator[ContractCase]:
    """For ``test_source_contract``: a SQLite file with one customer; a missing table; a
    PostgreSQL that never answers."""
    database = tmp_path / "contract.db"
    with sqlite3.connect(database) as connection:
        connection.execute("create table customers (email text, plan text)")
        connection.execute("insert into customers values ('ada@example.com', 'Pro')")
    query = "select email, plan from customers where lower(email) in :emails"
    table = {"kind": "sql", "url": f"sqlite:///{database}", "query": query}
    yield ContractCase(
        answering=table,
        known="ada@example.com",
        failing={**table, "query": query.replace("customers", "no_such_table")},
        hanging={**table, "url": f"{silent.url('postgresql')}/contract"},
    )
