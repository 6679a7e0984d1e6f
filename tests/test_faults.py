"""Real outages under load: PostgreSQL and Redis are stopped while requests keep coming.

Each test stops and restarts a PostgreSQL or Redis server of its own (see ``services.py``), so
the machine's shared servers, which other tests use at the same time, are never disturbed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deskside.demo import create_demo_database
from helpers import demo_settings, helpscout_request, post_helpscout, serve
from services import PrivatePostgres, PrivateRedis

pytestmark = pytest.mark.anyio

DEADLINE_MS = 500
ON_TIME_SLACK_SECONDS = 1.0
"""How late past the deadline an answer still counts as on time. The requests are timed in the
test's event loop, which also runs the server and the load, so a busy machine delays them; what
an outage could make deskside wait for instead (a connection or pool timeout, 30 s and more)
takes far longer."""
CUSTOMERS = ["owner@acme.example", "lapsed@globex.example", "ceo@umbrella.example"]


@dataclass
class Answer:
    sent_at: float
    email: str
    status: int
    seconds: float
    html: str


class Load:
    """Helpdesk requests every ``interval`` seconds, round-robin over the customers."""

    def __init__(self, client: httpx.AsyncClient, interval: float = 0.05) -> None:
        self.client = client
        self.interval = interval
        self.answers: list[Answer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False

    async def _one(self, email: str) -> None:
        started = time.monotonic()
        response = await post_helpscout(self.client, helpscout_request(email))
        html = response.json().get("html", "") if response.status_code == 200 else ""
        self.answers.append(
            Answer(started, email, response.status_code, time.monotonic() - started, html)
        )

    async def run(self) -> None:
        self._running = True
        number = 0
        while self._running:
            task = asyncio.create_task(self._one(CUSTOMERS[number % len(CUSTOMERS)]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            number += 1
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        self._running = False
        await asyncio.gather(*self._tasks)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.sent_at < end]

    async def until_every_customer_answered_fresh(self, seconds: float = 60) -> None:
        """Wait until each customer's latest answer is fresh (their sidebar is cached)."""
        deadline = time.monotonic() + seconds
        while True:
            latest = {answer.email: answer for answer in self.answers}
            if len(latest) == len(CUSTOMERS) and all(map(_is_fresh, latest.values())):
                return
            assert time.monotonic() < deadline, f"not every customer answered within {seconds} s"
            await asyncio.sleep(0.05)


@asynccontextmanager
async def _load(client: httpx.AsyncClient) -> AsyncIterator[Load]:
    load = Load(client)
    runner = asyncio.create_task(load.run())
    try:
        yield load
    finally:
        await load.stop()
        runner.cancel()


async def _eventually_has_entries(redis_url: str, seconds: float) -> bool:
    """Whether deskside's cache entries show up in Redis within ``seconds``."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if await client.keys("deskside:v1:*"):
                return True
            await asyncio.sleep(0.1)
        return False
    finally:
        await client.aclose()


def _is_fresh(answer: Answer) -> bool:
    return (
        "<h4>" in answer.html and " as of " not in answer.html and "unavailable" not in answer.html
    )


def _assert_never_blank_and_on_time(answers: list[Answer]) -> None:
    assert answers
    for answer in answers:
        assert answer.status == 200
        assert answer.seconds < DEADLINE_MS / 1000 + ON_TIME_SLACK_SECONDS, answer
        assert answer.html.strip(), answer  # never a blank sidebar


async def test_postgres_stopped_under_load(
    private_postgres: PrivatePostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    postgres_url = private_postgres.url
    await create_demo_database(postgres_url)
    settings = demo_settings(
        monkeypatch,
        tmp_path,
        postgres_url,
        deadline_ms=DEADLINE_MS,
        replace={
            'label = "App database"': 'label = "App database"\ncache_ttl_seconds = 0.5\n'
            "breaker_failures = 3\nbreaker_reset_seconds = 1"
        },
    )
    async with serve(settings) as client, _load(client) as load:
        await load.until_every_customer_answered_fresh()
        await asyncio.to_thread(private_postgres.stop)  # returns once it has stopped
        outage_started = time.monotonic()
        try:
            await asyncio.sleep(3)
        finally:
            outage_ended = time.monotonic()
            await asyncio.to_thread(private_postgres.start)
        recovered = None
        while time.monotonic() < outage_ended + 60:
            await asyncio.sleep(0.1)
            late = load.between(outage_ended + 0.5, time.monotonic())
            if late and all(_is_fresh(a) for a in late[-6:]):
                recovered = time.monotonic() - outage_ended
                break
    _assert_never_blank_and_on_time(load.answers)
    # Past the cache's 0.5 s freshness, every answer says the database is not answering.
    during = load.between(outage_started + 0.6, outage_ended)
    assert len(during) > 20
    assert all(" as of " in a.html or "App database unavailable" in a.html for a in during)
    assert any(" as of " in a.html for a in during)  # known customers kept their last answer
    assert recovered is not None, "answers never came back fresh after PostgreSQL restarted"


async def test_redis_stopped_under_load(
    private_redis: PrivateRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_url = private_redis.url
    settings = demo_settings(
        monkeypatch,
        tmp_path,
        "sqlite:///" + str(tmp_path / "demo.sqlite3"),
        deadline_ms=DEADLINE_MS,
        replace={"[server]\n": f'cache = "{redis_url}"\n\n[server]\n'},
    )
    await create_demo_database("sqlite:///" + str(tmp_path / "demo.sqlite3"))
    async with serve(settings) as client, _load(client) as load:
        await load.until_every_customer_answered_fresh()
        outage_started = time.monotonic()
        await asyncio.to_thread(private_redis.stop)
        try:
            await asyncio.sleep(2)
        finally:
            outage_ended = time.monotonic()
            await asyncio.to_thread(private_redis.start)  # empty: it keeps nothing on disk
        # The cache tries Redis again 5 s after it failed; then entries appear there.
        used_again = await _eventually_has_entries(redis_url, seconds=60)
    _assert_never_blank_and_on_time(load.answers)
    during = load.between(outage_started + 0.2, outage_ended)
    assert len(during) > 20
    assert all(_is_fresh(a) for a in during)  # the app database was fine: nothing is missing
    assert used_again, "the cache did not go back to Redis after it restarted"
