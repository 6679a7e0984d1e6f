"""The insights JSON API through the real app: private, reads what webhooks brought in, and an
agent's relabel changes what it reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import serve
from test_insights_webhooks import conversation, deliver, insights_settings, opened, settled

pytestmark = pytest.mark.anyio

TOKEN = "admin-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def asking(conversation_id: int, text: str) -> dict[str, Any]:
    document = conversation(conversation_id, threads=1, customer_id=700 + conversation_id)
    document["_embedded"]["threads"][0]["body"] = f"<p>{text}</p>"
    return document


async def test_the_api_is_private(tmp_path: Path, database: str) -> None:
    url = f"sqlite:///{tmp_path / 'insights.db'}"
    settings = insights_settings(tmp_path, database, url)
    async with serve(settings) as client:
        assert (await client.get("/api/insights/overview")).status_code == 404  # no admin token
    settings = insights_settings(tmp_path, database, url, admin_token=TOKEN)
    async with serve(settings) as client:
        for path in ("/api/insights/overview", "/api/insights/conversations"):
            assert (await client.get(path)).status_code == 401
            wrong = {"Authorization": "Bearer nope"}
            assert (await client.get(path, headers=wrong)).status_code == 401
        relabel = await client.post("/api/insights/conversations/1/label", json={"label": "bug"})
        assert relabel.status_code == 401


async def test_labels_from_webhooks_and_an_agents_relabel(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    settings = insights_settings(tmp_path, database, insights_url, admin_token=TOKEN)
    async with serve(settings) as client:
        texts = {
            1: "The app crashes every time I upload a photo. Error 500.",
            2: "It would be great if you could add a dark mode to the dashboard.",
            3: "How do I change my password?",
        }
        for conversation_id, text in texts.items():
            assert (
                await deliver(client, "convo.created", asking(conversation_id, text))
            ).is_success
        async with opened(insights_url) as store:
            await settled(store)
        app = client._transport.app  # type: ignore[attr-defined]
        await app.state.insights.analysis.update()

        listed = (await client.get("/api/insights/conversations", headers=AUTH)).json()
        labels = {item["id"]: (item["label"], item["labelled_by"]) for item in listed}
        assert labels == {1: ("bug", "model"), 2: ("feature", "model"), 3: ("question", "model")}
        assert listed[0]["url"].startswith("https://secure.helpscout.net/conversation/")
        before = (await client.get("/api/insights/overview", headers=AUTH)).json()
        assert before["labels"] == {"bug": 1, "feature": 1, "docs": 0, "question": 1, "other": 0}
        assert before["conversations"] == 3
        assert before["events"]["done"] == 3

        changed = await client.post(
            "/api/insights/conversations/3/label", json={"label": "docs"}, headers=AUTH
        )
        assert changed.json() == {"id": 3, "label": "docs", "labelled_by": "agent"}
        after = (await client.get("/api/insights/overview", headers=AUTH)).json()
        assert after["labels"] == {"bug": 1, "feature": 1, "docs": 1, "question": 0, "other": 0}
        only_docs = await client.get("/api/insights/conversations?label=docs", headers=AUTH)
        assert [(i["id"], i["labelled_by"]) for i in only_docs.json()] == [(3, "agent")]

        unknown_label = await client.post(
            "/api/insights/conversations/3/label", json={"label": "urgent"}, headers=AUTH
        )
        unknown_conversation = await client.post(
            "/api/insights/conversations/99/label", json={"label": "bug"}, headers=AUTH
        )
        malformed = await client.post(
            "/api/insights/conversations/3/label", content=b"{", headers=AUTH
        )
        assert [unknown_label.status_code, unknown_conversation.status_code] == [400, 404]
        assert malformed.status_code == 400
        assert "unknown label" in unknown_label.json()["error"]

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="https://deskside.test"
        ) as raw:  # Markdown and CSV are not JSON, which `serve` insists on
            for kind, media in (("json", "application/json"), ("markdown", "text/markdown"),
                                ("csv", "text/csv")):  # fmt: skip
                answer = await raw.get(f"/api/insights/reports?format={kind}", headers=AUTH)
                assert answer.status_code == 200
                assert answer.headers["content-type"].startswith(media)
