"""The insights JSON API through the real app: private, reads what webhooks brought in, and an
agent's relabel changes what it reports."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from deskside.insights.service import InsightsService
from deskside.web.insights_api import insights_api
from helpers import serve
from test_insights_webhooks import conversation, deliver, insights_settings, opened, settled

pytestmark = pytest.mark.anyio

TOKEN = "admin-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = "application/json"


def asking(conversation_id: int, text: str) -> dict[str, Any]:
    document = conversation(conversation_id, threads=1, customer_id=700 + conversation_id)
    document["_embedded"]["threads"][0]["body"] = f"<p>{text}</p>"
    document["subject"] = " ".join(text.split()[:4])  # customers write their own subjects
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
        malformed = await client.post(  # refused before the body is read
            "/api/insights/topics/1/rename", content=b"{", headers={"Content-Type": JSON}
        )
        assert malformed.status_code == 401
        huge = json.dumps({"conversation_ids": [1] * 40_000}).encode()  # over 64 KiB

        async def chunked() -> AsyncIterator[bytes]:  # no content-length to go by
            yield huge

        for body in (huge, chunked()):
            answer = await client.post(
                "/api/insights/topics/1/split", content=body, headers={**AUTH, "Content-Type": JSON}
            )
            assert (answer.status_code, list(answer.json())) == (413, ["error"])


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


EXPORT_BUG = [
    "The CSV export stops at 500 rows, the rest of the report is missing.",
    "Our CSV export only has the first 500 rows, everything after that is cut off.",
    "Exporting the report to CSV stops after 500 rows every time.",
    "CSV export is truncated at 500 rows, the other 1500 employees are missing.",
    "The CSV export stops at 500 rows and the remaining rows are missing.",
]
LOGIN_BUG = [
    "The login page shows a blank screen after entering the two-factor code.",
    "After typing my two-factor code the login page goes blank.",
    "Blank white screen on login once the two-factor code is entered.",
]


async def test_topics_group_paraphrases_and_peoples_decisions_stick(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    settings = insights_settings(tmp_path, database, insights_url, admin_token=TOKEN)
    async with serve(settings) as client:
        for n, text in enumerate(EXPORT_BUG + LOGIN_BUG):
            assert (await deliver(client, "convo.created", asking(50 + n, text))).is_success
        async with opened(insights_url) as store:
            await settled(store)
        analysis = client._transport.app.state.insights.analysis  # type: ignore[attr-defined]
        await analysis.update()

        async def topics() -> dict[int, dict[str, Any]]:
            found = await client.get("/api/insights/topics?label=bug", headers=AUTH)
            return {t["id"]: t for t in found.json()}

        groups = {
            topic_id: {m["id"] for m in (await topic_members(client, topic_id))}
            for topic_id in await topics()
        }
        export_ids = {50 + n for n in range(len(EXPORT_BUG))}
        login_ids = {55 + n for n in range(len(LOGIN_BUG))}
        assert export_ids in groups.values() and login_ids in groups.values()
        export_topic = next(t for t, members in groups.items() if members == export_ids)
        login_topic = next(t for t, members in groups.items() if members == login_ids)
        assert (await topics())[export_topic]["customers"] == 5

        renamed = await client.post(
            f"/api/insights/topics/{export_topic}/rename", json={"name": "CSV cut at 500"},
            headers=AUTH,
        )  # fmt: skip
        assert renamed.status_code == 200
        split = await client.post(
            f"/api/insights/topics/{export_topic}/split",
            json={"conversation_ids": [53, 54], "name": "Large exports"},
            headers=AUTH,
        )
        new_topic = split.json()["id"]
        merged = await client.post(
            f"/api/insights/topics/{login_topic}/merge", json={"into": export_topic}, headers=AUTH
        )
        assert merged.status_code == 200
        await analysis.update()  # a regroup keeps every decision
        after = await topics()
        assert after[export_topic]["name"] == "CSV cut at 500"
        assert after[new_topic]["name"] == "Large exports"
        assert login_topic not in after
        assert {m["id"] for m in await topic_members(client, new_topic)} == {53, 54}
        assert {m["id"] for m in await topic_members(client, export_topic)} == (
            {50, 51, 52} | login_ids
        )

        impossible = [
            await client.post(
                f"/api/insights/topics/{login_topic}/rename", json={"name": "x"}, headers=AUTH
            ),
            await client.post(
                f"/api/insights/topics/{new_topic}/split",
                json={"conversation_ids": [53, 54]},
                headers=AUTH,
            ),
            await client.post(
                f"/api/insights/topics/{new_topic}/merge", json={"into": new_topic}, headers=AUTH
            ),
        ]
        assert [r.status_code for r in impossible] == [404, 400, 400]


async def topic_members(client: httpx.AsyncClient, topic_id: int) -> list[dict[str, Any]]:
    answer = await client.get(f"/api/insights/topics/{topic_id}", headers=AUTH)
    assert answer.status_code == 200, answer.text
    members: list[dict[str, Any]] = answer.json()["members"]
    return members


async def test_ids_no_row_can_have_are_refused(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    settings = insights_settings(tmp_path, database, insights_url, admin_token=TOKEN)
    async with serve(settings) as client:
        assert (await deliver(client, "convo.created", asking(1, "It crashes."))).is_success
        async with opened(insights_url) as store:
            await settled(store)
        huge = 10**22  # more than a signed 64-bit integer, as stored ids are
        for wrong in (huge, 0, -1):
            asked = {
                f"/topics/{wrong}": None,
                f"/conversations?topic={wrong}": None,
                f"/conversations/{wrong}/label": {"label": "bug"},
                f"/topics/{wrong}/rename": {"name": "x"},
                f"/topics/{wrong}/merge": {"into": 1},
                "/topics/1/merge": {"into": wrong},
                f"/topics/{wrong}/split": {"conversation_ids": [1]},
                "/topics/1/split": {"conversation_ids": [wrong]},
                f"/reports/{wrong}/export/github": {},
            }
            for path, body in asked.items():
                answer = await ask(client, path, body)
                assert (answer.status_code, answer.json()) == (
                    400,
                    {"error": "malformed request"},
                ), path


async def test_text_with_a_nul_character_is_refused(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    """PostgreSQL keeps no NUL character: a name or a label filter with one is a 400."""
    settings = insights_settings(tmp_path, database, insights_url, admin_token=TOKEN)
    async with serve(settings) as client:
        for n, text in enumerate(LOGIN_BUG):
            assert (await deliver(client, "convo.created", asking(55 + n, text))).is_success
        async with opened(insights_url) as store:
            await settled(store)
        await client._transport.app.state.insights.analysis.update()  # type: ignore[attr-defined]
        [before] = (await client.get("/api/insights/topics", headers=AUTH)).json()
        asked = {
            "/conversations?label=bug%00": None,
            "/topics?label=%00": None,
            f"/topics/{before['id']}/rename": {"name": "Blank\x00login"},
            f"/topics/{before['id']}/split": {"conversation_ids": [55], "name": "\x00"},
        }
        for path, body in asked.items():
            answer = await ask(client, path, body)
            assert answer.status_code == 400, path
            assert list(answer.json()) == ["error"], path
        assert (await client.get("/api/insights/topics", headers=AUTH)).json() == [before]


async def ask(client: httpx.AsyncClient, path: str, body: Any) -> httpx.Response:
    """GET ``/api/insights{path}`` when ``body`` is None, else POST it as JSON; with the token."""
    url = f"/api/insights{path}"
    if body is None:
        return await client.get(url, headers=AUTH)
    return await client.post(url, json=body, headers=AUTH)


def test_the_parameters_warn_of_nothing_while_a_thread_silences_warnings(
    tmp_path: Path, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FastAPI silences pydantic's warning about each parameter's alias (``who``…) with a
    process-wide ``catch_warnings()``: a thread leaving its own meanwhile (scikit-learn in the
    analysis does) must not let the warning out."""
    seen: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *_: seen.append(str(message)))
    warnings.filterwarnings("always", category=UserWarning, append=True)
    url = f"sqlite:///{tmp_path / 'insights.db'}"
    insights = InsightsService(insights_settings(tmp_path, database, url).insights)
    stop = threading.Event()

    def silencing() -> None:
        while not stop.is_set():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)

    insights_api(insights)  # the app is built before its threads start
    thread = threading.Thread(target=silencing)
    thread.start()
    try:
        for _ in range(100):  # without the filter, the first ten or so let one out
            insights_api(insights)
    finally:
        stop.set()
        thread.join()
    assert [message for message in seen if "alias" in message] == []
