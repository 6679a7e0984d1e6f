"""Single-flight, stale-on-error, negative caching and circuit breakers, with real sources."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from deskside.breaker import BreakerState, CircuitBreaker
from deskside.demo import create_demo_database
from deskside.layout import CardLayout, build_sidebar
from deskside.lookup import Lookup
from deskside.redis_cache import RedisCache
from deskside.resolve import Resolver
from deskside.sources.http import HttpSource, HttpSourceConfig
from deskside.sources.sql import SqlSource, SqlSourceConfig, async_url
from fake_http import FakeHTTPServer, Reply

pytestmark = pytest.mark.anyio

OWNER = Lookup(emails=("owner@acme.example",))

HANG_SECONDS = 20
"""How long a hanging source takes to answer. An answer in less than half of it did not wait
for the source, however busy the machine; the source's error says what cut it short."""


@pytest.fixture
def server() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer() as running:
        yield running


async def eventually(check: Callable[[], bool], seconds: float = 30) -> None:
    """Wait until ``check()`` holds, looking every 10 ms; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"still not so after {seconds} s"
        await asyncio.sleep(0.01)


def http_source(url: str, **options: Any) -> HttpSource:
    config = {"kind": "http", "url": url, "label": "Billing", **options}
    return HttpSource("billing", HttpSourceConfig.model_validate(config))


# -- single-flight -------------------------------------------------------------------------


@pytest.fixture
async def counted_postgres(postgres_url: str) -> AsyncIterator[str]:
    """The demo data in PostgreSQL, and a sequence that counts the customer queries run."""
    await create_demo_database(postgres_url)
    engine = create_async_engine(async_url(postgres_url))
    async with engine.begin() as connection:
        await connection.execute(text("drop sequence if exists lookups"))
        await connection.execute(text("create sequence lookups"))
    await engine.dispose()
    yield postgres_url


async def _queries_run(url: str) -> int:
    engine = create_async_engine(async_url(url))
    async with engine.connect() as connection:
        count = await connection.scalar(text("select nextval('lookups') - 1"))
    await engine.dispose()
    return int(count or 0)


COUNTED_QUERY = """
select c.name as company, nextval('lookups') as query_number, pg_sleep(0.2) is not null as slow
from users u join companies c on c.id = u.company_id
where lower(u.email) in :emails
"""


async def test_concurrent_requests_for_a_cold_customer_run_one_query(
    counted_postgres: str,
) -> None:
    config = SqlSourceConfig.model_validate(
        {"kind": "sql", "url": counted_postgres, "query": COUNTED_QUERY, "pool_size": 20}
    )
    resolver = Resolver({"app": SqlSource("app", config)}, deadline_seconds=5)
    try:
        profiles = await asyncio.gather(*(resolver.resolve(OWNER) for _ in range(50)))
    finally:
        await resolver.aclose()
    assert await _queries_run(counted_postgres) == 1
    assert all(p.results["app"].records[0]["company"] == "Acme HR" for p in profiles)


async def test_workers_sharing_redis_fetch_a_cold_customer_once(
    server: FakeHTTPServer, redis_url: str
) -> None:
    """Two resolvers stand for two worker processes; Redis holds the lock and the answer."""
    server.route("/users/*", Reply.json({"plan": "Pro"}, delay=0.3))
    url = server.url("/users/{email}")
    workers = [
        Resolver({"billing": http_source(url)}, deadline_seconds=3, cache=RedisCache(redis_url))
        for _ in range(2)
    ]
    try:
        profiles = await asyncio.gather(*(w.resolve(OWNER) for w in workers for _ in range(5)))
    finally:
        for worker in workers:
            await worker.aclose()
    assert len(server.received()) == 1
    assert all(p.results["billing"].records == [{"plan": "Pro"}] for p in profiles)


# -- stale-on-error ------------------------------------------------------------------------


async def test_a_failing_source_shows_its_last_answer_marked_as_of(server: FakeHTTPServer) -> None:
    server.route("/users/*", [Reply.json({"plan": "Pro"}), Reply.status(500)])
    source = http_source(server.url("/users/{email}"), cache_ttl_seconds=0.1)
    resolver = Resolver({"billing": source}, deadline_seconds=2)
    try:
        fresh = await resolver.resolve(OWNER)
        await asyncio.sleep(0.15)
        stale = await resolver.resolve(OWNER)
    finally:
        await resolver.aclose()
    result = stale.results["billing"]
    assert result.records == [{"plan": "Pro"}]
    assert result.error == "HTTP 500 from the API"
    assert result.stale_since == pytest.approx(time.time(), abs=5)
    assert stale.unavailable == []
    sidebar = build_sidebar(CardLayout(), stale)
    assert sidebar.found
    assert len(sidebar.notes) == 1
    assert sidebar.notes[0].startswith("Billing as of ") and sidebar.notes[0].endswith(" UTC")
    assert fresh.results["billing"].stale_since is None


async def test_a_hanging_source_shows_its_last_answer_within_the_deadline(
    server: FakeHTTPServer,
) -> None:
    server.route("/users/*", [Reply.json({"plan": "Pro"}), Reply.json({}, delay=HANG_SECONDS)])
    source = http_source(server.url("/users/{email}"), cache_ttl_seconds=0.05, timeout_seconds=30)
    resolver = Resolver({"billing": source}, deadline_seconds=2)  # for a busy machine
    try:
        assert (await resolver.resolve(OWNER)).results["billing"].ok
        await asyncio.sleep(0.1)  # the answer is no longer fresh
        started = time.monotonic()
        stale = await resolver.resolve(OWNER)
        elapsed = time.monotonic() - started
    finally:
        await resolver.aclose()
    assert elapsed < HANG_SECONDS / 2
    assert stale.results["billing"].records == [{"plan": "Pro"}]
    assert stale.results["billing"].error == "timed out"


async def test_past_its_grace_an_old_answer_is_not_shown(server: FakeHTTPServer) -> None:
    server.route("/users/*", [Reply.json({"plan": "Pro"}), Reply.status(500)])
    source = http_source(
        server.url("/users/{email}"), cache_ttl_seconds=0.05, stale_grace_seconds=0.05
    )
    resolver = Resolver({"billing": source}, deadline_seconds=2)
    try:
        await resolver.resolve(OWNER)
        await asyncio.sleep(0.15)
        late = await resolver.resolve(OWNER)
    finally:
        await resolver.aclose()
    assert late.results["billing"].records == []
    assert late.unavailable == ["Billing"]


# -- circuit breaker -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_probes_once_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_seconds=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failed()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    breaker.failed()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()

    clock.now += 10
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # the one probe
    assert not breaker.allow()  # nobody else while it runs
    breaker.failed()
    assert breaker.state is BreakerState.OPEN  # a failed probe opens it again at once
    assert not breaker.allow()

    clock.now += 10
    assert breaker.allow()
    breaker.succeeded()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()


def test_a_success_resets_the_failure_count() -> None:
    breaker = CircuitBreaker(failures=2, reset_seconds=10, clock=Clock())
    breaker.failed()
    breaker.succeeded()
    breaker.failed()
    assert breaker.state is BreakerState.CLOSED


async def test_an_open_breaker_skips_a_dead_source_at_once(server: FakeHTTPServer) -> None:
    server.route(
        "/users/*", [Reply.json({}, delay=HANG_SECONDS)] * 3 + [Reply.json({"plan": "Pro"})]
    )
    source = http_source(
        server.url("/users/{email}"),
        timeout_seconds=30,
        breaker_failures=3,
        breaker_reset_seconds=2,
        negative_ttl_seconds=0,
    )
    resolver = Resolver({"billing": source}, deadline_seconds=0.2)
    customers = [Lookup(emails=(f"c{n}@x.example",)) for n in range(6)]
    try:
        for lookup in customers[:3]:  # three timeouts open the breaker
            assert (await resolver.resolve(lookup)).results["billing"].error == "timed out"
        await eventually(lambda: source.breaker.state is not BreakerState.CLOSED)  # wound down
        # A deadline no busy machine runs into: a lookup answered well within it spent none of
        # it on the dead source.
        resolver.deadline_seconds = HANG_SECONDS
        started = time.monotonic()
        skipped = await resolver.resolve(customers[3])
        assert time.monotonic() - started < HANG_SECONDS / 2
        assert skipped.results["billing"].error == "skipped: failing (circuit open)"
        assert skipped.unavailable == ["Billing"]
        assert len(server.received()) == 3

        await asyncio.sleep(2)  # half-open: one request probes, and it succeeds
        probe = await resolver.resolve(customers[4])
        assert probe.results["billing"].records == [{"plan": "Pro"}]
        closed = await resolver.resolve(customers[5])
        assert closed.results["billing"].ok
        assert source.breaker.state is BreakerState.CLOSED
    finally:
        await resolver.aclose()
