"""``GET /readyz``: each source's breaker and live check, deskside's own insights database and
Redis cache, and shutdown.

What fails is real: a PostgreSQL URL where nothing listens (refused at once), one where a silent
server accepts and never answers (the check times out), an SQLite file in a directory that does
not exist yet, and private PostgreSQL and Redis servers stopped and started again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import make_url

from deskside.config import Settings
from deskside.server import Readiness, create_app
from fake_http import unused_port
from helpers import BASE_URL, demo_settings, helpscout_request, make_demo_database, post_helpscout
from services import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.anyio


def sql_source(name: str, url: str, extra: str = "") -> str:
    return (
        f'[sources.{name}]\nkind = "sql"\nurl = "{url}"\n'
        f"query = \"select 1 as one where :email = 'nobody'\"\n{extra}\n"
    )


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_demo_database(tmp_path_factory.mktemp("readyz") / "demo.db")


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL) as client,
    ):
        yield app, client


async def readyz(client: httpx.AsyncClient) -> tuple[int, dict[str, Any]]:
    response = await client.get("/readyz")
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()


async def readyz_until(
    client: httpx.AsyncClient, wanted: Callable[[int, dict[str, Any]], bool], seconds: float = 60
) -> tuple[int, dict[str, Any]]:
    """Poll ``/readyz`` until its answer is ``wanted``; the last answer otherwise."""
    deadline = time.monotonic() + seconds
    while True:
        status, document = await readyz(client)
        if wanted(status, document) or time.monotonic() > deadline:
            return status, document
        await asyncio.sleep(0.1)


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[int], list[int]]]:
    """A TCP server that accepts connections and never says a word; yields its port, a list
    that grows by one per connection, and a list holding the most connections open at once."""
    connections: list[int] = []
    most_open = [0]
    open_now = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal open_now
        connections.append(1)
        open_now += 1
        most_open[0] = max(most_open[0], open_now)
        await reader.read()  # until the client gives up
        open_now -= 1
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, connections, most_open
        server.close()


async def test_ready_with_a_healthy_source(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(demo_settings(monkeypatch, tmp_path, database)) as (_app, client):
        status, document = await readyz(client)
        healthz = await client.get("/healthz")
    assert status == 200
    assert document == {
        "status": "ready",
        "sources": {"app": {"state": "ok", "breaker": "closed"}},
        "cache": {"backend": "memory", "state": "ok"},
        # the demo config takes webhooks; the one process analyses them once its loop ran
        "insights": {"state": "ok", "analysing": document["insights"]["analysing"]},
        "checked_seconds_ago": 0.0,
    }
    assert healthz.json()["status"] == "ok"


async def test_a_dead_source_is_degraded_not_unready(
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = sql_source("crm", f"postgresql://deskside@127.0.0.1:{unused_port()}/crm")
    settings = demo_settings(monkeypatch, tmp_path, database, sources=dead)
    with caplog.at_level(logging.INFO, logger="deskside.readiness"):
        async with running(settings) as (app, client):
            first = await readyz(client)
            app.state.readiness.ttl = 0  # check again at once: still failing, logged once
            second = await readyz(client)
            answer = await post_helpscout(client, helpscout_request("owner@acme.example"))
    for status, document in (first, second):
        assert status == 200
        assert document["status"] == "degraded"
        assert document["sources"] == {
            "app": {"state": "ok", "breaker": "closed"},
            "crm": {"state": "failing", "breaker": "closed"},
        }
    assert answer.status_code == 200 and "Acme HR" in answer.json()["html"]  # still helpful
    warnings = [r.getMessage() for r in caplog.records if "readyz" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].startswith("readyz: source crm is failing its check: ")
    assert "127.0.0.1" not in str(first[1])  # why is in the log, not on a public endpoint


async def test_an_open_breaker_is_reported(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = sql_source(
        "crm", f"postgresql://deskside@127.0.0.1:{unused_port()}/crm", "breaker_failures = 1"
    )
    settings = demo_settings(monkeypatch, tmp_path, database, sources=dead)
    async with running(settings) as (_app, client):
        before = await readyz(client)
        await post_helpscout(client, helpscout_request("owner@acme.example"))  # crm fails once
        after = await readyz(client)  # the check result is reused, the breaker read live
    assert before[1]["sources"]["crm"] == {"state": "failing", "breaker": "closed"}
    assert after == (
        200,
        {
            "status": "degraded",
            "sources": {
                "app": {"state": "ok", "breaker": "closed"},
                "crm": {"state": "failing", "breaker": "open"},
            },
            "cache": {"backend": "memory", "state": "ok"},
            "insights": {"state": "ok", "analysing": after[1]["insights"]["analysing"]},
            "checked_seconds_ago": after[1]["checked_seconds_ago"],
        },
    )


async def test_hanging_sources_are_checked_concurrently_and_once_for_every_poll(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with silent_server() as (port, connections, most_open):
        url = f"postgresql://deskside@127.0.0.1:{port}/crm"
        sources = sql_source("crm", url) + sql_source("billing", url)
        settings = demo_settings(monkeypatch, tmp_path, database, sources=sources)
        async with running(settings) as (app, client):
            readiness: Readiness = app.state.readiness
            readiness.timeout, readiness.ttl = 1.0, 3600
            polls = await asyncio.gather(*(readyz(client) for _ in range(10)))
            checks = len(connections)
            again = await readyz(client)  # within the ttl: no new check
            assert len(connections) == checks
    assert most_open == [2]  # both waited at the same time, not one after the other
    assert checks == 2  # one connection per source for ten concurrent polls
    for status, document in [*polls, again]:
        assert status == 200
        assert document["status"] == "degraded"
        assert document["sources"]["crm"]["state"] == "failing"
        assert document["sources"]["billing"]["state"] == "failing"
        assert document["sources"]["app"]["state"] == "ok"


async def test_a_source_that_comes_back_is_ok_after_the_ttl(
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    later = tmp_path / "later"
    sources = sql_source("late", f"sqlite:///{later}/late.sqlite3")
    settings = demo_settings(monkeypatch, tmp_path, database, sources=sources)
    with caplog.at_level(logging.INFO, logger="deskside.readiness"):
        async with running(settings) as (app, client):
            missing = await readyz(client)
            later.mkdir()
            cached = await readyz(client)
            app.state.readiness.ttl = 0
            back = await readyz(client)
    assert missing[1]["sources"]["late"]["state"] == "failing"
    assert cached[1]["sources"]["late"]["state"] == "failing"
    assert back[1]["sources"]["late"]["state"] == "ok"
    assert back[1]["status"] == "ready"
    assert "readyz: source late passes its check again" in caplog.messages


async def test_an_unreachable_redis_cache_is_unavailable(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = {
        "replace": {"[server]\n": f'cache = "redis://127.0.0.1:{unused_port()}/0"\n[server]\n'}
    }
    settings = demo_settings(monkeypatch, tmp_path, database, **cache)
    async with running(settings) as (_app, client):
        status, document = await readyz(client)
        answer = await post_helpscout(client, helpscout_request("owner@acme.example"))
    assert status == 503
    assert document["status"] == "unavailable"
    assert document["cache"] == {"backend": "redis", "state": "unavailable"}
    assert document["sources"]["app"]["state"] == "ok"
    assert answer.status_code == 200 and "Acme HR" in answer.json()["html"]  # from memory


async def test_a_reachable_redis_cache_is_ok(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    cache = {"replace": {"[server]\n": f'cache = "{redis_url}"\n[server]\n'}}
    settings = demo_settings(monkeypatch, tmp_path, database, **cache)
    async with running(settings) as (_app, client):
        status, document = await readyz(client)
    assert (status, document["status"]) == (200, "ready")
    assert document["cache"] == {"backend": "redis", "state": "ok"}


async def test_readyz_is_503_once_the_server_shuts_down(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(demo_settings(monkeypatch, tmp_path, database))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL) as client:
        async with app.router.lifespan_context(app):
            serving = await readyz(client)
        stopping = await readyz(client)
        alive = await client.get("/healthz")
    assert serving[0] == 200
    assert stopping == (503, {"status": "shutting_down"})
    assert alive.status_code == 200  # liveness: the process itself is fine


@asynccontextmanager
async def freezable_proxy(url: str) -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A TCP proxy to ``url``'s server: yields the URL through it and an event that, cleared,
    holds every byte either way (a network that stops answering, connections left open)."""
    target = make_url(url)
    flowing = asyncio.Event()
    flowing.set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = await asyncio.open_connection(target.host, target.port or 5432)
        await asyncio.gather(pipe(reader, upstream[1]), pipe(upstream[0], writer))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield target.set(port=port).render_as_string(hide_password=False), flowing
        flowing.set()
        server.close()


def insights_on(url: str) -> dict[str, dict[str, str]]:
    """The demo config's changes for an insights database at ``url``."""
    return {"replace": {"[insights]": f'[insights]\ndatabase = "{url}"\n'}}


def unavailable(status: int, document: dict[str, Any]) -> bool:
    return status == 503


def ready(status: int, document: dict[str, Any]) -> bool:
    return status == 200


async def test_a_stopped_insights_database_is_unavailable_until_it_is_back(
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    private_postgres: PrivatePostgres,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database, **insights_on(private_postgres.url))
    with caplog.at_level(logging.INFO, logger="deskside.readiness"):
        async with running(settings) as (_app, client):
            before = await readyz_until(client, ready)
            private_postgres.stop()
            down = await readyz_until(client, unavailable)
            private_postgres.start()
            back = await readyz_until(client, ready)
    assert before[1]["status"] == "ready"
    assert down[0] == 503
    assert down[1]["status"] == "unavailable"
    assert down[1]["insights"]["state"] == "database unavailable"
    assert down[1]["sources"]["app"] == {"state": "ok", "breaker": "closed"}  # unaffected
    assert down[1]["cache"] == {"backend": "memory", "state": "ok"}
    assert back[1]["status"] == "ready" and back[1]["insights"]["state"] == "ok"
    said = [m for m in caplog.messages if m.startswith("readyz: the insights database")]
    assert len(said) == 2  # once each way, however often it was polled
    assert said[0].startswith("readyz: the insights database is failing its check: check raised ")
    assert said[1] == "readyz: the insights database passes its check again"
    assert str(private_postgres.port) not in str(down[1])


async def test_a_stopped_redis_cache_is_unavailable_until_it_is_back(
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    private_redis: PrivateRedis,
) -> None:
    cache = {"replace": {"[server]\n": f'cache = "{private_redis.url}"\n[server]\n'}}
    settings = demo_settings(monkeypatch, tmp_path, database, **cache)
    async with running(settings) as (_app, client):
        before = await readyz_until(client, ready)
        private_redis.stop()
        down = await readyz_until(client, unavailable)
        private_redis.start()
        back = await readyz_until(client, ready)
    assert before[1]["cache"] == {"backend": "redis", "state": "ok"}
    assert down[0] == 503
    assert {key: down[1][key] for key in ("status", "sources", "cache")} == {
        "status": "unavailable",
        "sources": {"app": {"state": "ok", "breaker": "closed"}},
        "cache": {"backend": "redis", "state": "unavailable"},
    }
    assert down[1]["insights"]["state"] == "ok"
    assert back[1]["status"] == "ready" and back[1]["cache"]["state"] == "ok"


async def test_an_insights_database_that_stops_answering_is_unavailable_at_once(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_postgres_url: str
) -> None:
    async with freezable_proxy(fresh_postgres_url) as (url, flowing):
        settings = demo_settings(monkeypatch, tmp_path, database, **insights_on(url))
        async with running(settings) as (_app, client):
            before = await readyz_until(client, ready)
            flowing.clear()
            # a query that never returns does not hold /readyz: each check gets a second
            frozen = await asyncio.wait_for(readyz_until(client, unavailable), 60)
            again = await asyncio.wait_for(readyz_until(client, unavailable), 60)
            flowing.set()
            back = await readyz_until(client, ready)
    assert before[1]["status"] == "ready"
    for status, document in (frozen, again):
        assert status == 503
        assert document["insights"]["state"] == "database unavailable"
    assert back[0] == 200 and back[1]["insights"]["state"] == "ok"
