"""The SQL source's driver paths: on PostgreSQL the query translated once for asyncpg, the
addresses bound as one array, prepared once per connection; on MySQL/MariaDB aiomysql with a
pool of its own; on SQLite aiosqlite's connections shared in turn; and what a schema change,
a deadline or a dropped connection does to each."""

from __future__ import annotations

import asyncio
import importlib.util
import sqlite3
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiomysql
import asyncpg
import pytest
from sqlalchemy import make_url

from deskside.lookup import Lookup
from deskside.resolve import Resolver
from deskside.sources.sql import SqlSource, SqlSourceConfig, async_url
from deskside.sources.sql_drivers import AsyncpgRunner, SqlAlchemyRunner, translate
from deskside.sources.sql_drivers.mysql import AiomysqlRunner, MysqlQuery, _usable
from deskside.sources.sql_drivers.sqlite import AiosqliteRunner
from helpers import poll_until

ONE = Lookup(emails=("ada@example.com",))


@pytest.mark.parametrize(
    ("query", "sql", "order"),
    [
        (
            "select * from users where lower(email) in :emails",
            "select * from users where lower(email) = any($1)",
            ("emails",),
        ),
        (
            "select 1 where b = :email and a NOT IN :emails and c in (:emails) and d = :email",
            "select 1 where b = $1 and a <> all($2) and c = any($2) and d = $1",
            ("email", "emails"),
        ),
        (
            "select 1 where a = any(:emails) or b in :emails",
            "select 1 where a = any(($1)) or b = any($1)",
            ("emails",),
        ),
        (
            "select id::text, '12:30' as t, '%' as p from u where lower(email)::text = :email",
            "select id::text, '12:30' as t, '%' as p from u where lower(email)::text = $1",
            ("email",),
        ),
        ("select :email as email", "select $1 as email", ("email",)),
    ],
)
def test_the_query_is_translated_once_with_numbered_parameters(
    query: str, sql: str, order: tuple[str, ...]
) -> None:
    translated = translate(query)

    assert translated is not None
    assert translated.sql == sql
    assert translated.order == order


@pytest.mark.parametrize(
    ("url", "runner"),
    [
        ("postgresql://u@db/app", AsyncpgRunner),
        ("mysql://u@db/app", AiomysqlRunner),
        ("sqlite://", AiosqliteRunner),
        pytest.param(
            "postgresql+psycopg://u@db/app",
            SqlAlchemyRunner,
            marks=pytest.mark.skipif(
                importlib.util.find_spec("psycopg") is None,
                reason="psycopg, an optional driver, is not installed",
            ),
        ),
    ],
)
def test_each_driver_takes_its_own_path(url: str, runner: type) -> None:
    source = SqlSource("app", _config(url, "select 1 where email in :emails"))

    assert type(source._runner) is runner


def _config(url: str, query: str, **options: Any) -> SqlSourceConfig:
    return SqlSourceConfig.model_validate({"kind": "sql", "url": url, "query": query, **options})


@pytest.fixture
async def customers(postgres_url: str) -> AsyncIterator[str]:
    """A table ``customers`` (email, plan, settings jsonb, tags json) with two customers."""
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute(
            """
            drop table if exists customers;
            create table customers (email text, plan text, settings jsonb, tags json);
            insert into customers values
                ('ada@example.com', 'Pro', '{"seats": 5}', '["vip"]'),
                ('bob@example.com', 'Starter', null, null);
            """
        )
    finally:
        await connection.close()
    yield postgres_url


@asynccontextmanager
async def source(url: str, query: str, **options: Any) -> AsyncIterator[SqlSource]:
    running = SqlSource("app", _config(url, query, **options))
    try:
        yield running
    finally:
        await running.aclose()


async def _admin(url: str, statement: str) -> None:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@pytest.mark.postgres
@pytest.mark.anyio
class TestAsyncpgPath:
    async def test_any_number_of_addresses_shares_one_prepared_statement(
        self, customers: str
    ) -> None:
        query = "select email, plan from customers where email in :emails order by email"
        async with source(customers, query, pool_size=1) as app:
            one = await app.fetch(ONE)
            both = await app.fetch(Lookup(emails=("ada@example.com", "bob@example.com")))
            many = await app.fetch(Lookup(emails=tuple(f"x{n}@example.com" for n in range(9))))
            runner = app._runner
            assert isinstance(runner, AsyncpgRunner) and runner._pool is not None
            async with runner._pool.acquire() as connection:
                prepared = await connection.fetchval(
                    "select count(*) from pg_prepared_statements"
                    " where statement like '%from customers%' and statement not like '%pg_prep%'"
                )

        assert one == [{"email": "ada@example.com", "plan": "Pro"}]
        assert [row["email"] for row in both] == ["ada@example.com", "bob@example.com"]
        assert many == []
        assert prepared == 1

    async def test_not_in_and_any_bind_the_list_too(self, customers: str) -> None:
        excluded = "select email from customers where email not in :emails order by email"
        listed = "select email from customers where email = any(:emails)"
        async with source(customers, excluded) as app:
            assert await app.fetch(ONE) == [{"email": "bob@example.com"}]
        async with source(customers, listed) as app:
            assert await app.fetch(ONE) == [{"email": "ada@example.com"}]

    async def test_json_values_are_python_objects(self, customers: str) -> None:
        query = "select settings, tags from customers where email in :emails"
        async with source(customers, query) as app:
            rows = await app.fetch(ONE)

        assert rows == [{"settings": {"seats": 5}, "tags": ["vip"]}]

    async def test_a_schema_change_between_lookups_is_answered(self, customers: str) -> None:
        """The statement prepared before ``alter table`` no longer fits: asyncpg's
        InvalidCachedStatementError, on which the statement is prepared again, once."""
        query = "select * from customers where email in :emails"
        async with source(customers, query, pool_size=1) as app:
            before = await app.fetch(ONE)
            await _admin(customers, "alter table customers add column seats int default 3")
            added = await app.fetch(ONE)
            await _admin(customers, "alter table customers drop column tags")
            dropped = await app.fetch(ONE)

        assert "seats" not in before[0]
        assert added[0]["seats"] == 3
        assert "tags" not in dropped[0] and dropped[0]["plan"] == "Pro"

    async def test_a_query_cut_at_the_deadline_frees_its_connection(self, customers: str) -> None:
        query = (
            "select email, plan from customers where email in :emails and (select"
            " pg_sleep(case when :email = 'slow@example.com' then 30 else 0 end)) is not null"
        )
        async with source(customers, query, pool_size=1) as app:
            resolver = Resolver({"app": app}, deadline_seconds=0.3)
            slow = await resolver.resolve(Lookup(emails=("slow@example.com",)))
            started = time.monotonic()
            fast = await app.fetch(ONE)
            assert time.monotonic() - started < 10
            sleeping = await _still_sleeping(customers)

        assert slow.results["app"].error == "timed out"
        assert fast == [{"email": "ada@example.com", "plan": "Pro"}]
        assert sleeping == 0  # the server was told to cancel the cut query

    async def test_more_lookups_than_connections_wait_their_turn(self, customers: str) -> None:
        query = "select email from customers where email in :emails"
        async with source(customers, query, pool_size=1) as app:
            answers = await asyncio.gather(*(app.fetch(ONE) for _ in range(10)))

        assert answers == [[{"email": "ada@example.com"}]] * 10

    async def test_url_options_reach_asyncpg(self, customers: str) -> None:
        url = async_url(customers) + "?prepared_statement_cache_size=0&command_timeout=5"
        query = "select email from customers where email in :emails"
        async with source(url, query) as app:
            assert await app.fetch(ONE) == [{"email": "ada@example.com"}]


async def _still_sleeping(url: str) -> int:
    """Queries still sleeping on the server, looked at for up to 5 s until there is none."""
    give_up = time.monotonic() + 5
    connection = await asyncpg.connect(url)
    try:
        while True:
            count = await connection.fetchval(
                "select count(*) from pg_stat_activity where datname = current_database()"
                " and state = 'active' and query like '%pg_sleep%' and pid <> pg_backend_pid()"
            )
            if not count or time.monotonic() > give_up:
                return int(count or 0)
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


@pytest.fixture
async def mysql_customers(mysql_url: str) -> AsyncIterator[str]:
    """A MariaDB/MySQL table ``customers`` (email, plan) with two customers."""
    connection = await aiomysql.connect(**_mysql_options(mysql_url))
    try:
        async with connection.cursor() as cursor:
            with warnings.catch_warnings():  # "Unknown table" the first time
                warnings.simplefilter("ignore")
                await cursor.execute("drop table if exists customers")
            await cursor.execute("create table customers (email varchar(200), plan text)")
            await cursor.execute(
                "insert into customers values ('ada@example.com', 'Pro'), ('bob@example.com', 'Go')"
            )
    finally:
        connection.close()
    yield mysql_url


async def _until_no_query_mentions(url: str, text: str, seconds: float = 30) -> None:
    """Poll the server's process list until no other connection runs a query with ``text``."""
    watcher = await aiomysql.connect(**_mysql_options(url))
    running = (
        "select count(*) from information_schema.processlist"
        " where id <> connection_id() and info like concat('%%', %s, '%%')"
    )
    deadline = time.monotonic() + seconds
    try:
        async with watcher.cursor() as cursor:
            while True:
                await cursor.execute(running, (text,))
                (count,) = await cursor.fetchone()
                if not count:
                    return
                assert time.monotonic() < deadline, f"a query with {text!r} still runs"
                await asyncio.sleep(0.05)
    finally:
        watcher.close()


def _mysql_options(url: str) -> dict[str, Any]:
    parsed = make_url(url)
    return {
        "host": parsed.host,
        "port": parsed.port or 3306,
        "user": parsed.username,
        "password": parsed.password or "",
        "db": parsed.database,
        "autocommit": True,
    }


def test_mysql_query_has_a_placeholder_per_address() -> None:
    query = MysqlQuery("select 1 from t where a in :emails and b = :email and c like '%x'")

    assert query.text_for(1) == "select 1 from t where a in (%s) and b = %s and c like '%%x'"
    assert query.text_for(3).startswith("select 1 from t where a in (%s, %s, %s) and")
    assert query.values(Lookup(emails=("a@x.example", "b@x.example"))) == (
        "a@x.example",
        "b@x.example",
        "a@x.example",
    )


@pytest.mark.mysql
@pytest.mark.anyio
class TestAiomysqlPath:
    async def test_the_source_takes_the_aiomysql_path(self, mysql_customers: str) -> None:
        query = "select email, plan from customers where email in :emails order by email"
        async with source(mysql_customers, query) as app:
            assert isinstance(app._runner, AiomysqlRunner)
            both = await app.fetch(Lookup(emails=("ada@example.com", "bob@example.com")))

        assert both == [
            {"email": "ada@example.com", "plan": "Pro"},
            {"email": "bob@example.com", "plan": "Go"},
        ]

    async def test_a_query_cut_at_the_deadline_never_answers_the_next_lookup(
        self, mysql_customers: str
    ) -> None:
        """The cut connection still has the slow query's answer coming: it is closed, so the
        next lookup can never read that answer as its own."""
        query = (
            "select c.email, c.plan from customers c,"
            " (select sleep(case when :email = 'slow@example.com' then 2 else 0 end) as s) p"
            " where c.email in :emails"
        )
        async with source(mysql_customers, query, pool_size=1) as app:
            resolver = Resolver({"app": app}, deadline_seconds=0.3)
            slow = await resolver.resolve(Lookup(emails=("slow@example.com",)))
            fast = await app.fetch(ONE)
            # until the slow query is over on the server: its answer would have come by then
            await _until_no_query_mentions(mysql_customers, "slow@example.com")
            later = await app.fetch(Lookup(emails=("bob@example.com",)))

        assert slow.results["app"].error == "timed out"
        assert fast == [{"email": "ada@example.com", "plan": "Pro"}]
        assert later == [{"email": "bob@example.com", "plan": "Go"}]

    async def test_a_connection_the_server_closed_is_replaced(self, mysql_customers: str) -> None:
        query = "select connection_id() as id, email from customers where email in :emails"
        async with source(mysql_customers, query, pool_size=1) as app:
            (first,) = await app.fetch(ONE)
            killer = await aiomysql.connect(**_mysql_options(mysql_customers))
            try:
                async with killer.cursor() as cursor:
                    await cursor.execute(f"kill {int(first['id'])}")
            finally:
                killer.close()
            runner = app._runner
            assert isinstance(runner, AiomysqlRunner)
            [(idle, _)] = runner._idle
            await poll_until(lambda: not _usable(idle), "the server's goodbye arrives")
            (second,) = await app.fetch(ONE)

        assert second["email"] == "ada@example.com"
        assert second["id"] != first["id"]


@pytest.fixture
def sqlite_customers(tmp_path: Path) -> str:
    """A SQLite file with a table ``customers`` (email, plan) holding two customers."""
    path = tmp_path / "customers.db"
    with sqlite3.connect(path) as connection:
        connection.execute("create table customers (email text, plan text)")
        connection.execute(
            "insert into customers values ('ada@example.com', 'Pro'), ('bob@example.com', 'Go')"
        )
    return f"sqlite:///{path}"


@pytest.mark.anyio
class TestAiosqlitePath:
    async def test_lookups_share_the_connections_in_turn(self, sqlite_customers: str) -> None:
        query = "select email, plan from customers where email in :emails order by email"
        lookups = [ONE, Lookup(emails=("bob@example.com", "ada@example.com"))] * 10
        async with source(sqlite_customers, query, pool_size=3) as app:
            answers = await asyncio.gather(*(app.fetch(lookup) for lookup in lookups))
            runner = app._runner
            assert isinstance(runner, AiosqliteRunner)
            opened = len(runner._connections)

        assert answers[0] == [{"email": "ada@example.com", "plan": "Pro"}]
        assert [row["email"] for row in answers[1]] == ["ada@example.com", "bob@example.com"]
        assert answers == answers[:2] * 10
        assert opened == 3

    async def test_a_query_cut_at_the_deadline_leaves_the_connection_sound(
        self, sqlite_customers: str
    ) -> None:
        query = (  # for slow@: counts to a million, in the arm that always runs
            "with recursive c(n) as (select 1 union all select n + 1 from c"
            " where :email = 'slow@example.com' and n < 1000000)"
            " select email, plan from customers where email in :emails"
            " union all select null, null where (select count(*) from c) < 0"
        )
        async with source(sqlite_customers, query, pool_size=1) as app:
            resolver = Resolver({"app": app}, deadline_seconds=0.1)
            cut = await resolver.resolve(Lookup(emails=("slow@example.com",)))
            after = await app.fetch(ONE)

        assert cut.results["app"].error == "timed out"
        assert after == [{"email": "ada@example.com", "plan": "Pro"}]
