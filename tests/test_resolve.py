"""The resolver with real sources: a SQLite file and a local HTTP server, under one deadline."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import tomllib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from deskside.demo import create_demo_database, demo_config_path
from deskside.lookup import Lookup
from deskside.resolve import Resolver
from deskside.sources.base import Record, Source, SourceConfig
from deskside.sources.http import HttpSource, HttpSourceConfig
from deskside.sources.sql import SqlSource, SqlSourceConfig
from fake_http import FakeHTTPServer, Received, Reply

pytestmark = pytest.mark.anyio

DEMO_CONFIG = tomllib.loads(demo_config_path().read_text(encoding="utf-8"))
DEMO_QUERY: str = DEMO_CONFIG["sources"]["app"]["query"]
OWNER = Lookup(emails=("owner@acme.example",))

HANG_SECONDS = 20
"""How long a hanging source takes to answer. An answer in less than half of it did not wait
for the source, however busy the machine; the deadline's cut shows in the source's error."""


@pytest.fixture
def server() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer() as running:
        yield running


@pytest.fixture
async def demo_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    await create_demo_database(f"sqlite:///{path}")
    return path


def sql_source(path: Path, **options: Any) -> SqlSource:
    config = {"kind": "sql", "url": f"sqlite:///{path}", "query": DEMO_QUERY, **options}
    return SqlSource("app", SqlSourceConfig.model_validate({"label": "App database", **config}))


def http_source(url: str, name: str = "billing", **options: Any) -> HttpSource:
    config = {"kind": "http", "url": url, "label": "Billing API", **options}
    return HttpSource(name, HttpSourceConfig.model_validate(config))


class ExplodingSource(Source):
    """A plug-in source with a bug in it."""

    kind = "exploding"

    async def fetch(self, lookup: Lookup) -> list[Record]:
        raise RuntimeError("connection string postgres://admin:hunter2@db")


@asynccontextmanager
async def resolver(
    sources: Mapping[str, Source], deadline_seconds: float = 5
) -> AsyncIterator[Resolver]:
    running = Resolver(sources, deadline_seconds=deadline_seconds)
    try:
        yield running
    finally:
        await running.aclose()


def versioned() -> Any:
    """A handler answering ``{"version": n}`` for its n-th request."""
    count = 0

    def handler(_request: Received) -> Reply:
        nonlocal count
        count += 1
        return Reply.json({"version": count})

    return handler


async def test_slow_source_is_cut_off_at_the_deadline(
    server: FakeHTTPServer, demo_db: Path
) -> None:
    server.route("/slow", Reply.json({"plan": "late"}, delay=HANG_SECONDS))
    sources = {
        "app": sql_source(demo_db),
        "billing": http_source(server.url("/slow?e={email}"), timeout_seconds=30),
    }

    # Long enough for the SQLite source to answer on a busy machine.
    async with resolver(sources, deadline_seconds=1.5) as running:
        started = time.perf_counter()
        profile = await running.resolve(OWNER)
        elapsed = time.perf_counter() - started

    assert 1.49 <= elapsed < HANG_SECONDS / 2  # waited for the deadline, not for the source
    assert list(profile.results) == ["app", "billing"]
    billing = profile.results["billing"]
    assert billing.error == "timed out"
    assert billing.records == []
    assert 1490 <= billing.elapsed_ms < HANG_SECONDS / 2 * 1000
    app = profile.results["app"]
    assert app.ok
    assert [row["company"] for row in app.records] == ["Acme HR"]
    assert profile.unavailable == ["Billing API"]
    assert profile.found


# Sleeps HANG_SECONDS for slow@x.example only (and touches no table, so nothing stays locked).
SLOW_QUERIES = {
    "postgres": "select cast(:email as varchar(320)) as email where (select pg_sleep("
    f"case when :email = 'slow@x.example' then {HANG_SECONDS} else 0 end)) is not null",
    "mysql": "select :email as email from dual where sleep("  # noqa: S608 (a constant)
    f"case when :email = 'slow@x.example' then {HANG_SECONDS} else 0 end) = 0",
}


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mysql", marks=pytest.mark.mysql),
    ]
)
def database_server(request: pytest.FixtureRequest) -> tuple[str, str]:
    """``(url, slow query)`` for a scratch database on a real server."""
    return request.getfixturevalue(f"{request.param}_url"), SLOW_QUERIES[request.param]


async def test_query_cut_off_at_the_deadline_leaves_the_pool_usable(
    database_server: tuple[str, str],
) -> None:
    url, query = database_server
    config = {"kind": "sql", "url": url, "query": query, "pool_size": 1, "cache_ttl_seconds": 0}
    source = SqlSource("app", SqlSourceConfig.model_validate(config))

    async with resolver({"app": source}, deadline_seconds=0.3) as running:
        started = time.perf_counter()
        slow = await running.resolve(Lookup(emails=("slow@x.example",)))
        elapsed = time.perf_counter() - started
        # Room for a busy machine, yet far less than the abandoned query runs on: the lookups
        # that follow must not wait for it.
        running.deadline_seconds = HANG_SECONDS / 4
        fast = [await running.resolve(Lookup(emails=(f"n{i}@x.example",))) for i in range(3)]

    assert elapsed < HANG_SECONDS / 2
    assert slow.results["app"].error == "timed out"
    assert [p.results["app"].records for p in fast] == [
        [{"email": f"n{i}@x.example"}] for i in range(3)
    ]


async def test_failing_source_is_reported_and_the_others_answer(
    server: FakeHTTPServer, demo_db: Path
) -> None:
    server.route("/users/*", Reply.json({"error": "database is down"}, status=500))
    sources = {
        "app": sql_source(demo_db),
        "billing": http_source(server.url("/users/{email}")),
        "crm_sync": ExplodingSource("crm_sync", SourceConfig()),
    }

    async with resolver(sources) as running:
        profile = await running.resolve(OWNER)

    assert [row["plan"] for row in profile.results["app"].records] == ["Pro"]
    assert profile.results["billing"].error == "HTTP 500 from the API"
    assert profile.results["crm_sync"].error == "failed (RuntimeError)"  # no details leak
    assert profile.unavailable == ["Billing API", "Crm sync"]
    assert profile.found


async def test_broken_sql_source_does_not_hide_the_api(
    server: FakeHTTPServer, tmp_path: Path
) -> None:
    server.route("/users/*", Reply.json({"plan": "Pro"}))
    sources = {
        "app": sql_source(tmp_path / "empty.db"),  # no tables: every query fails
        "billing": http_source(server.url("/users/{email}")),
    }

    async with resolver(sources) as running:
        profile = await running.resolve(OWNER)

    assert "no such table" in (profile.results["app"].error or "")
    assert profile.results["billing"].records == [{"plan": "Pro"}]
    assert profile.unavailable == ["App database"]


async def test_nobody_found_is_not_unavailable(server: FakeHTTPServer, demo_db: Path) -> None:
    server.route("/users/*", Reply.json({"error": "no such user"}, status=404))
    sources = {"app": sql_source(demo_db), "billing": http_source(server.url("/users/{email}"))}

    async with resolver(sources) as running:
        profile = await running.resolve(Lookup(emails=("nobody@nowhere.example",)))

    assert not profile.found
    assert profile.unavailable == []
    assert all(result.ok and result.records == [] for result in profile.results.values())


async def test_records_are_normalised(server: FakeHTTPServer) -> None:
    answer = {"renews_on": "2030-01-02", "trial_ends_at": "2030-01-02T03:04:05Z", "id": "42"}
    server.route("/users/*", Reply.json(answer))

    async with resolver({"billing": http_source(server.url("/users/{email}"))}) as running:
        first = await running.resolve(OWNER)
        second = await running.resolve(OWNER)

    expected = {
        "renews_on": date(2030, 1, 2),
        "trial_ends_at": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        "id": "42",
    }
    assert first.results["billing"].records == [expected]
    assert second.results["billing"].cached
    assert second.results["billing"].records == [expected]


async def test_found_records_are_cached(server: FakeHTTPServer) -> None:
    server.route("/users/*", versioned())

    async with resolver({"billing": http_source(server.url("/users/{email}"))}) as running:
        first = await running.resolve(OWNER)
        second = await running.resolve(OWNER)

    assert not first.results["billing"].cached
    assert second.results["billing"].cached
    assert second.results["billing"].records == [{"version": 1}]
    assert len(server.received()) == 1


async def test_cached_sql_answer_until_refresh(demo_db: Path) -> None:
    async with resolver({"app": sql_source(demo_db)}) as running:
        await running.resolve(OWNER)
        with sqlite3.connect(demo_db) as connection:
            connection.execute("delete from users where email = 'owner@acme.example'")

        cached = await running.resolve(OWNER)
        refreshed = await running.resolve(OWNER, refresh=True)

    assert cached.results["app"].cached
    assert [row["company"] for row in cached.results["app"].records] == ["Acme HR"]
    assert not refreshed.results["app"].cached
    assert refreshed.results["app"].records == []


async def test_cache_is_per_set_of_addresses(server: FakeHTTPServer) -> None:
    server.route("/search", versioned())

    async with resolver({"billing": http_source(server.url("/search?q={emails}"))}) as running:
        both = await running.resolve(Lookup(emails=("a@x.example", "b@y.example")))
        reordered = await running.resolve(Lookup(emails=("b@y.example", "a@x.example")))
        one = await running.resolve(Lookup(emails=("a@x.example",)))

    assert reordered.results["billing"].cached
    assert reordered.results["billing"].records == both.results["billing"].records
    assert not one.results["billing"].cached
    assert one.results["billing"].records == [{"version": 2}]
    assert len(server.received()) == 2


async def test_cache_is_per_source(server: FakeHTTPServer) -> None:
    server.route("/billing/*", Reply.json({"from": "billing"}))
    server.route("/crm/*", Reply.json({"from": "crm"}))
    sources = {
        "billing": http_source(server.url("/billing/{email}")),
        "crm": http_source(server.url("/crm/{email}"), name="crm", label="CRM"),
    }

    async with resolver(sources) as running:
        await running.resolve(OWNER)
        profile = await running.resolve(OWNER)

    assert profile.results["billing"].records == [{"from": "billing"}]
    assert profile.results["crm"].records == [{"from": "crm"}]
    assert all(result.cached for result in profile.results.values())


async def test_errors_are_not_cached(server: FakeHTTPServer) -> None:
    server.route("/users/*", [Reply.json({}, status=503), Reply.json({"plan": "Pro"})])

    async with resolver({"billing": http_source(server.url("/users/{email}"))}) as running:
        failed = await running.resolve(OWNER)
        recovered = await running.resolve(OWNER)
        cached = await running.resolve(OWNER)

    assert failed.results["billing"].error == "HTTP 503 from the API"
    assert recovered.results["billing"].ok
    assert not recovered.results["billing"].cached
    assert recovered.results["billing"].records == [{"plan": "Pro"}]
    assert cached.results["billing"].cached
    assert len(server.received()) == 2


async def test_not_found_is_cached_only_briefly(server: FakeHTTPServer) -> None:
    """ "Not found" is reused for ``negative_ttl_seconds``: a new sign-up shows up soon."""
    server.route("/users/*", [Reply.json({}, status=404), Reply.json({"plan": "Starter"})])
    source = http_source(server.url("/users/{email}"), negative_ttl_seconds=0.3)

    async with resolver({"billing": source}) as running:
        before = await running.resolve(OWNER)
        again = await running.resolve(OWNER)
        await asyncio.sleep(0.35)
        after = await running.resolve(OWNER)

    assert before.results["billing"].records == []
    assert again.results["billing"].records == []
    assert again.results["billing"].cached
    assert after.results["billing"].records == [{"plan": "Starter"}]
    assert not after.results["billing"].cached
    assert len(server.received()) == 2


async def test_zero_negative_ttl_never_caches_not_found(server: FakeHTTPServer) -> None:
    server.route("/users/*", [Reply.json({}, status=404), Reply.json({"plan": "Starter"})])
    source = http_source(server.url("/users/{email}"), negative_ttl_seconds=0)

    async with resolver({"billing": source}) as running:
        await running.resolve(OWNER)
        after = await running.resolve(OWNER)

    assert after.results["billing"].records == [{"plan": "Starter"}]


async def test_timed_out_answer_is_not_cached(server: FakeHTTPServer) -> None:
    server.route(
        "/users/*", [Reply.json({"plan": "late"}, delay=HANG_SECONDS), Reply.json({"plan": "Pro"})]
    )

    async with resolver(
        {"billing": http_source(server.url("/users/{email}"), timeout_seconds=30)},
        deadline_seconds=0.2,
    ) as running:
        late = await running.resolve(OWNER)
        running.deadline_seconds = HANG_SECONDS / 2  # the next fetch answers however busy
        again = await running.resolve(OWNER)

    assert late.results["billing"].error == "timed out"
    assert again.results["billing"].records == [{"plan": "Pro"}]
    assert not again.results["billing"].cached


async def test_refresh_bypasses_and_renews_the_cache(server: FakeHTTPServer) -> None:
    server.route("/users/*", versioned())

    async with resolver({"billing": http_source(server.url("/users/{email}"))}) as running:
        await running.resolve(OWNER)
        refreshed = await running.resolve(OWNER, refresh=True)
        after = await running.resolve(OWNER)

    assert not refreshed.results["billing"].cached
    assert refreshed.results["billing"].records == [{"version": 2}]
    assert after.results["billing"].cached
    assert after.results["billing"].records == [{"version": 2}]
    assert len(server.received()) == 2


async def test_zero_ttl_turns_caching_off(server: FakeHTTPServer) -> None:
    server.route("/users/*", versioned())
    source = http_source(server.url("/users/{email}"), cache_ttl_seconds=0)

    async with resolver({"billing": source}) as running:
        profiles = [await running.resolve(OWNER) for _ in range(3)]

    assert [p.results["billing"].records for p in profiles] == [
        [{"version": 1}],
        [{"version": 2}],
        [{"version": 3}],
    ]
    assert not any(p.results["billing"].cached for p in profiles)


async def test_cached_answer_expires_after_its_ttl(server: FakeHTTPServer) -> None:
    server.route("/users/*", versioned())
    source = http_source(server.url("/users/{email}"), cache_ttl_seconds=0.2)

    async with resolver({"billing": source}) as running:
        await running.resolve(OWNER)
        soon = await running.resolve(OWNER)
        await anyio.sleep(0.3)
        later = await running.resolve(OWNER)

    assert soon.results["billing"].cached
    assert not later.results["billing"].cached
    assert later.results["billing"].records == [{"version": 2}]


async def test_labels_default_to_the_source_name(server: FakeHTTPServer) -> None:
    server.route("/users/*", Reply.json({}, status=500))
    source = HttpSource(
        "billing_api",
        HttpSourceConfig.model_validate({"kind": "http", "url": server.url("/users/{email}")}),
    )

    async with resolver({"billing_api": source}) as running:
        profile = await running.resolve(OWNER)

    assert profile.unavailable == ["Billing api"]
    assert dict(profile.labels) == {"billing_api": "Billing api"}


def test_text_that_is_not_valid_unicode_is_repaired() -> None:
    from deskside.expressions import normalise_record

    record = normalise_record({"name": "Mallory \ud800", "tags": ["ok", "\udfff"]})
    assert record["name"] == "Mallory ?"
    assert record["tags"] == ["ok", "?"]
    assert record["name"].encode("utf-8")
