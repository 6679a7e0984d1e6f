"""The caches: in-process and real Redis, typed round trips, forgetting a customer, and a Redis
that is down or silent costing nothing but hit rate."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from deskside.cache import Cache, CacheEntry, MemoryCache, build_cache
from deskside.redis_cache import RedisCache

pytestmark = pytest.mark.anyio

RECORD = {
    "company": "Acme HR",
    "renews_on": date(2027, 3, 12),
    "trial_ends_at": datetime(2026, 11, 11, 12, 0, tzinfo=UTC),
    "mrr": Decimal("249.50"),
    "seats": 42,
    "owner": True,
    "modules": ["payroll", "time-off"],
    "address": {"city": "Ghent", "since": date(2020, 1, 1)},
    "missing": None,
}


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[Cache]:
    if request.param == "memory":
        made: Cache = MemoryCache()
    else:
        made = RedisCache(request.getfixturevalue("redis_url"))
    try:
        yield made
    finally:
        await made.aclose()


async def test_round_trip_keeps_types(cache: Cache) -> None:
    entry = CacheEntry(records=[RECORD], stored_at=time.time())
    await cache.set(
        "app\x1fowner@acme.example", entry, keep_seconds=60, emails=["owner@acme.example"]
    )
    found = await cache.get("app\x1fowner@acme.example")
    assert found is not None
    assert found.records == [RECORD]
    assert found.stored_at == pytest.approx(entry.stored_at)
    assert isinstance(found.records[0]["renews_on"], date)
    assert found.records[0]["trial_ends_at"].tzinfo is not None
    assert await cache.get("app\x1fnobody@example.com") is None


async def test_what_a_caller_changes_is_not_what_the_cache_holds(cache: Cache) -> None:
    await cache.set("k", CacheEntry([RECORD], time.time()), keep_seconds=60, emails=["a@x.io"])
    found = await cache.get("k")
    assert found is not None
    found.records[0]["company"] = "Changed"
    found.records[0]["modules"].append("hacked")
    again = await cache.get("k")
    assert again is not None and again.records == [RECORD]


async def test_records_that_cannot_be_pickled_are_still_cached() -> None:
    class Plan:  # a Python source's own object, local: pickle cannot find its class
        name = "Pro"

    plan = Plan()
    cache = MemoryCache()
    await cache.set("k", CacheEntry([{"plan": plan}], time.time()), keep_seconds=60, emails=[])
    found = await cache.get("k")
    assert found is not None and found.records[0]["plan"] is plan


async def test_entries_expire(cache: Cache) -> None:
    entry = CacheEntry(records=[], stored_at=time.time())
    await cache.set("k", entry, keep_seconds=0.2, emails=["a@x.example"])
    assert await cache.get("k") is not None
    await asyncio.sleep(0.3)
    assert await cache.get("k") is None


async def test_zero_lifetime_stores_nothing(cache: Cache) -> None:
    await cache.set("k", CacheEntry([RECORD], time.time()), keep_seconds=0, emails=["a@x.example"])
    assert await cache.get("k") is None


async def test_forget_drops_every_entry_about_a_customer(cache: Cache) -> None:
    now = time.time()
    pat = ["pat@initech.example", "pat@initrode.example"]
    await cache.set("app\x1fpat2", CacheEntry([RECORD], now), keep_seconds=60, emails=pat)
    await cache.set("billing\x1fpat2", CacheEntry([], now), keep_seconds=60, emails=pat)
    await cache.set("app\x1fpat1", CacheEntry([RECORD], now), keep_seconds=60, emails=pat[:1])
    await cache.set("app\x1fother", CacheEntry([RECORD], now), keep_seconds=60, emails=["o@x.io"])

    assert await cache.forget("pat@initrode.example") == 2
    assert await cache.get("app\x1fpat2") is None
    assert await cache.get("billing\x1fpat2") is None
    assert await cache.get("app\x1fpat1") is not None  # never involved initrode
    assert await cache.get("app\x1fother") is not None
    assert await cache.forget("pat@initrode.example") == 0


async def test_redis_entries_are_shared_between_processes(redis_url: str) -> None:
    writer, reader = RedisCache(redis_url), RedisCache(redis_url)
    try:
        await writer.set("k", CacheEntry([RECORD], time.time()), keep_seconds=60, emails=["a@x.io"])
        found = await reader.get("k")
        assert found is not None and found.records == [RECORD]
        assert await reader.forget("a@x.io") == 1
        assert await writer.get("k") is None
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_an_entry_from_another_version_is_a_miss(redis_url: str) -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    await client.set("deskside:v1:k", b"\x80not json")
    await client.aclose()
    cache = RedisCache(redis_url)
    try:
        assert await cache.get("k") is None
    finally:
        await cache.aclose()


async def test_only_one_process_holds_the_lock(redis_url: str) -> None:
    first, second = RedisCache(redis_url), RedisCache(redis_url)
    try:
        lock = await first.acquire("k", 5)
        assert lock is not None
        assert await second.acquire("k", 5) is None
        await lock.release()
        again = await second.acquire("k", 5)
        assert again is not None
        await again.release()
    finally:
        await first.aclose()
        await second.aclose()


def test_build_cache_chooses_the_backend() -> None:
    assert isinstance(build_cache("memory"), MemoryCache)
    assert isinstance(build_cache("redis://127.0.0.1:6379/0"), RedisCache)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP server that accepts connections and never answers: a hung Redis."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    finally:
        stop.set()
        thread.join(timeout=2)
        for connection in accepted:
            connection.close()
        listener.close()


@pytest.mark.parametrize("where", ["refused", "silent"])
async def test_a_broken_redis_falls_back_to_this_process(
    where: str, silent_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = silent_server if where == "silent" else "redis://127.0.0.1:1/0"
    cache = RedisCache(url, retry_seconds=60)
    try:
        with caplog.at_level(logging.WARNING, logger="deskside.cache"):
            started = time.monotonic()
            assert await cache.get("k") is None
            # The 0.1 s socket timeout, with room for a busy machine; a silent Redis without
            # one would hold this lookup for good.
            assert time.monotonic() - started < 2
            await cache.set("k", CacheEntry([RECORD], time.time()), keep_seconds=60, emails=[])
            found = await cache.get("k")
            assert await cache.acquire("k", 1) is not None  # no cross-process lock to wait on
        assert found is not None and found.records == [RECORD]
        assert not cache.healthy()
        assert not await cache.reachable()
        warnings = [r for r in caplog.records if "redis cache unavailable" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not once per request
    finally:
        await cache.aclose()
