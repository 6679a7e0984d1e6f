"""PostgreSQL restarts in the middle of a webhook burst: Help Scout retries what was refused,
and in the end every delivery is stored and applied exactly once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from deskside.insights.models import Conversation, Event, Thread
from deskside.server import create_app
from services import PrivatePostgres
from test_insights_webhooks import conversation, count, deliver, insights_settings, opened, settled

pytestmark = pytest.mark.anyio

DELIVERIES = 600


async def test_a_database_restart_during_a_burst_loses_and_duplicates_nothing(
    tmp_path: Path, database: str, private_postgres: PrivatePostgres
) -> None:
    fresh_postgres_url = private_postgres.url
    app = create_app(insights_settings(tmp_path, database, fresh_postgres_url))
    refused: list[int] = []

    async def deliver_until_accepted(client: httpx.AsyncClient, number: int) -> None:
        """What Help Scout does: any answer but 2xx (or none) is retried later."""
        document = conversation(50_000 + number)
        for _ in range(600):
            try:
                response = await deliver(client, "convo.created", document)
            except httpx.HTTPError:
                response = None
            if response is not None and response.status_code == 200:
                return
            assert response is None or response.status_code != 410  # 410 kills the webhook
            refused.append(number)
            await asyncio.sleep(0.1)
        raise AssertionError(f"delivery {number} was never accepted")

    async def restart_database() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(private_postgres.start)

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="https://deskside.test", timeout=30
        ) as client,
    ):
        restart = asyncio.create_task(restart_database())
        senders = []
        for number in range(DELIVERIES):  # spread over about three seconds
            senders.append(asyncio.create_task(deliver_until_accepted(client, number)))
            await asyncio.sleep(0.005)
        await asyncio.gather(*senders)
        await restart
        assert refused, "the restart must have refused some deliveries"
        async with opened(fresh_postgres_url) as store:
            await settled(store, seconds=90)
            assert await count(store, Event) == DELIVERIES
            assert await count(store, Event, Event.status == "done") == DELIVERIES
            assert await count(store, Conversation) == DELIVERIES
            assert await count(store, Thread) == 2 * DELIVERIES
