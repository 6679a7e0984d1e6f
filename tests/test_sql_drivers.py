"""The SQL source's thin PostgreSQL path: the query translated once for asyncpg, the addresses
bound as one array, prepared once per connection, and what a schema change or a deadline does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from deskside.lookup import Lookup
from deskside.resolve import Resolver
from deskside.sources.sql import SqlSource, SqlSourceConfig, async_url
from deskside.sources.sql_drivers import AsyncpgRunner, SqlAlchemyRunner, translate

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


def test_only_asyncpg_urls_take_the_thin_path() -> None:
    query = "select 1 where email in :emails"
    postgres = SqlSource("app", _config("postgresql://u@db/app", query))
    psycopg = SqlSource("app", _config("postgresql+psycopg://u@db/app", query))
    sqlite = SqlSource("app", _config("sqlite://", query))

    assert isinstance(postgres._runner, AsyncpgRunner)
    assert isinstance(psycopg._runner, SqlAlchemyRunner)
    assert isinstance(sqlite._runner, SqlAlchemyRunner)


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
