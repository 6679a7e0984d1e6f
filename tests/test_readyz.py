"""``GET /readyz``: each source's breaker and live check, the cache backend, and shutdown.

Sources that fail are real: a PostgreSQL URL where nothing listens (refused at once), one where
a silent server accepts and never answers (the check times out), an SQLite file in a directory
that does not exist yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from deskside.config import Settings
from deskside.server import Readiness, create_app
from fake_http import unused_port
from helpers import BASE_URL, demo_settings, helpscout_request, make_demo_database, post_helpscout

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


@asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server that accepts connections and never says a word; yields its port and a list
    that grows by one per connection."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await reader.read()  # until the client gives up
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, connections
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
    with caplog.at_level(logging.INFO, logger="deskside.server"):
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
    async with silent_server() as (port, connections):
        url = f"postgresql://deskside@127.0.0.1:{port}/crm"
        sources = sql_source("crm", url) + sql_source("billing", url)
        settings = demo_settings(monkeypatch, tmp_path, database, sources=sources)
        async with running(settings) as (app, client):
            readiness: Readiness = app.state.readiness
            readiness.timeout = 0.3
            started = time.monotonic()
            polls = await asyncio.gather(*(readyz(client) for _ in range(10)))
            elapsed = time.monotonic() - started
            checks = len(connections)
            again = await readyz(client)  # within the ttl: no new check
            assert len(connections) == checks
    assert elapsed < 0.55  # both timed out together, not one after the other
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
    with caplog.at_level(logging.INFO, logger="deskside.server"):
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


async def test_an_unreachable_redis_cache_is_falling_back(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = {
        "replace": {"[server]\n": f'cache = "redis://127.0.0.1:{unused_port()}/0"\n[server]\n'}
    }
    settings = demo_settings(monkeypatch, tmp_path, database, **cache)
    async with running(settings) as (_app, client):
        status, document = await readyz(client)
    assert status == 200
    assert document["status"] == "degraded"
    assert document["cache"] == {"backend": "redis", "state": "fallback"}


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
