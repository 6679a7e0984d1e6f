"""Several server processes on one insights store (workers, replicas): each stores and applies
webhooks, one at a time classifies and groups, people's decisions made through any of them are
taken up, and another takes over when the one analysing stops. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from deskside.insights.store import Store, database_url, release_lease, take_lease
from helpers import serve
from test_insights_api import asking
from test_insights_webhooks import deliver, insights_settings

pytestmark = pytest.mark.anyio

TOKEN = "admin-token-for-processes"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORDS = {
    1: "The app crashes every time I upload a photo. Error 500.",
    2: "Uploading a photo crashes the app with error 500.",
    3: "It would be great if you could add a dark mode to the dashboard.",
    4: "Please add a dark mode for the dashboard.",
}


async def test_a_lease_has_one_holder_until_released_or_expired(insights_url: str) -> None:
    store = await Store(database_url(insights_url)).open()
    try:
        assert await take_lease(store, "work", "first", 30)
        assert not await take_lease(store, "work", "second", 30)
        assert await take_lease(store, "work", "first", 30)  # renewed by its holder
        assert await take_lease(store, "other work", "second", 30)  # leases are independent

        await release_lease(store, "work", "second")  # not the holder: nothing changes
        assert not await take_lease(store, "work", "second", 30)
        await release_lease(store, "work", "first")
        assert await take_lease(store, "work", "second", 2)  # long enough for a busy machine

        assert not await take_lease(store, "work", "first", 30)
        await asyncio.sleep(2.1)  # the holder stopped renewing: it expires
        assert await take_lease(store, "work", "first", 30)
    finally:
        await store.aclose()


async def eventually(check: Callable[[], Awaitable[Any]], seconds: float = 30) -> Any:
    """``check()``'s first truthy result, tried every 0.2 s (the analysis runs every 5 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.2)
    raise AssertionError(f"not within {seconds} s")


def insights_of(client: httpx.AsyncClient) -> Any:
    return client._transport.app.state.insights  # type: ignore[attr-defined]


async def send(client: httpx.AsyncClient, conversation_id: int, text: str) -> None:
    """A new conversation with ``text`` from its own customer, under its own subject."""
    response = await deliver(client, "convo.created", asking(conversation_id, text))
    assert response.status_code == 200, response.text


async def test_one_process_analyses_the_others_decisions_count_and_one_takes_over(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    settings = insights_settings(tmp_path, database, insights_url, admin_token=TOKEN)
    async with serve(settings) as first, serve(settings) as second:
        for conversation_id, text in WORDS.items():  # deliveries land on either process
            await send(first if conversation_id % 2 else second, conversation_id, text)

        async def all_in_topics() -> list[dict[str, Any]] | None:
            listed = (await first.get("/api/insights/conversations", headers=AUTH)).json()
            done = len(listed) == len(WORDS) and all(c["topic_id"] for c in listed)
            return listed if done else None

        listed = await eventually(all_in_topics)
        assert {c["id"]: c["label"] for c in listed} == {
            1: "bug",
            2: "bug",
            3: "feature",
            4: "feature",
        }
        analysing = [insights_of(client).analysing for client in (first, second)]
        assert sorted(analysing) == [False, True]
        leader, follower = (first, second) if analysing[0] else (second, first)

        # an agent's relabel through the process that does not analyse: the other regroups
        response = await follower.post(
            "/api/insights/conversations/4/label", json={"label": "question"}, headers=AUTH
        )
        assert response.status_code == 200, response.text

        async def moved_to_a_question_topic() -> bool:
            found = (await leader.get("/api/insights/conversations", headers=AUTH)).json()
            topic_id = next(c["topic_id"] for c in found if c["id"] == 4)
            topic = await follower.get(f"/api/insights/topics/{topic_id}", headers=AUTH)
            return topic.status_code == 200 and topic.json()["label"] == "question"

        await eventually(moved_to_a_question_topic)

        # a rename through either process sticks through the regrouping
        bug_topic = next(c["topic_id"] for c in listed if c["id"] == 1)
        renamed = await follower.post(
            f"/api/insights/topics/{bug_topic}/rename",
            json={"name": "Photo upload crash"},
            headers=AUTH,
        )
        assert renamed.status_code == 200, renamed.text
        await send(follower, 5, "Uploading photos crashes the app, error 500 again.")

        async def joined_the_renamed_topic() -> bool:
            topic = (await leader.get(f"/api/insights/topics/{bug_topic}", headers=AUTH)).json()
            members = {member["id"] for member in topic["members"]}
            return topic["name"] == "Photo upload crash" and members == {1, 2, 5}

        await eventually(joined_the_renamed_topic)

        # the analysing process stops (a deploy, a crash recovery): the other takes over
        await insights_of(leader).aclose()
        await send(follower, 6, "How do I change my password?")

        async def classified() -> bool:
            found = (await follower.get("/api/insights/conversations", headers=AUTH)).json()
            return any(c["id"] == 6 and c["label"] == "question" for c in found)

        await eventually(classified)
        assert insights_of(follower).analysing
        ready = (await follower.get("/readyz")).json()
        assert ready["insights"] == {"state": "ok", "analysing": True}
