"""The web UI through the real app (httpx, no browser): private pages, login and its limits,
session cookies, CSRF on every form, the preview of a hostile customer shown as text, and an
agent's relabel changing the dashboard's counts."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from deskside.config import Settings
from deskside.errors import ConfigError, HTTPError
from deskside.helpdesks import protocol_classes
from deskside.insights.analysis.queries import TopicSummary
from deskside.insights.helpscout.client import HelpScoutAPI
from deskside.insights.ingest.backfill import parse_since
from deskside.insights.models import (
    Classification,
    Connection,
    Conversation,
    ImportCursor,
    Mailbox,
)
from deskside.server import create_app
from deskside.web import dashboard
from deskside.web.auth import AdminAuth, PasswordHash, hash_password
from deskside.web.guard import require_admin
from fake_github import FakeGitHub
from fake_helpscout import FakeHelpScout, generate_dataset
from fake_http import Received, Reply
from helpers import BASE_URL, demo_settings, parse_html
from test_insights_webhooks import conversation, deliver, settled

pytestmark = pytest.mark.anyio

PASSWORD = "admin-test-password"
ADMIN = '[admin]\npassword = "env:DESKSIDE_ADMIN_PASSWORD"\n\n[server]\n'
"""The demo config with the web UI on, as ``deskside demo`` runs it."""
CONVERSATIONS = {
    1: "The app crashes every time I upload a photo. Error 500.",
    2: "It would be great if you could add a dark mode to the dashboard.",
    3: "How do I change my password?",
}
"""Customers' words the shipped classifier labels bug, feature and question."""
INJECTED_COMPANY = '"><script>alert("xss")</script> [Evil Corp](https://evil.example) _Ltd_'


NO_INSIGHTS = {
    "[insights]": "#",
    "[insights.helpscout]": "#",
    'webhook_secret = "env:HELPSCOUT_WEBHOOK_SECRET"': "#",
}
"""The demo config without its ``[insights]`` tables (for pages that need none)."""


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> Settings:
    """The demo config: every helpdesk, insights in the data directory, the admin password."""
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    return demo_settings(monkeypatch, tmp_path, database, replace={"[server]\n": ADMIN})


@pytest.fixture
def sidebar_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> Settings:
    """As :func:`settings`, without insights."""
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    replace = {"[server]\n": ADMIN, **NO_INSIGHTS}
    return demo_settings(monkeypatch, tmp_path, database, replace=replace)


@asynccontextmanager
async def browser(settings: Settings, base_url: str = BASE_URL) -> AsyncIterator[httpx.AsyncClient]:
    """The real app (lifespan included) behind a client that keeps cookies, as a browser."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base_url) as client,
    ):
        yield client


def csrf_of(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def log_in(
    client: httpx.AsyncClient, password: str = PASSWORD, next: str = ""
) -> httpx.Response:
    form = await client.get("/ui/login")
    assert form.status_code == 200
    data = {"csrf_token": csrf_of(form.text), "password": password, "next": next}
    return await client.post("/ui/login", data=data)


async def seed_conversations(
    client: httpx.AsyncClient, settings: Settings, more: dict[int, str] | None = None
) -> None:
    """Deliver :data:`CONVERSATIONS` (and ``more``) as Help Scout webhooks, and wait until they
    are stored, classified and grouped into topics."""
    secret = settings.insights.helpscout.webhook_secret[0].get_secret_value()
    for conversation_id, text in {**CONVERSATIONS, **(more or {})}.items():
        document = conversation(conversation_id, threads=1, customer_id=700 + conversation_id)
        document["_embedded"]["threads"][0]["body"] = f"<p>{text}</p>"
        response = await deliver(client, "convo.created", document, secret=secret)
        assert response.status_code == 200, response.text
    insights = client._transport.app.state.insights  # type: ignore[attr-defined]
    await settled(insights.store)
    await insights.analysis.update()


def label_counts(html: str) -> dict[str, int]:
    """The dashboard's count per label, as shown (and of ``unsure`` labels, by
    :func:`unsure_count`)."""
    tree = parse_html(html)
    counts = {
        str(element.attrs["data-label"]): int(element.text())
        for element in tree.find_all("span", "count__n")
    }
    counts.pop("unsure")
    return counts


def unsure_count(html: str) -> int:
    """How many labels the dashboard says the classifier is unsure of."""
    [shown] = [
        e
        for e in parse_html(html).find_all("span", "count__n")
        if e.attrs["data-label"] == "unsure"
    ]
    return int(shown.text())


def listed(html: str) -> list[str]:
    """The conversation ids a page lists, in order."""
    rows = parse_html(html).find_all("tr")
    return [str(r.attrs["data-conversation"]) for r in rows if "data-conversation" in r.attrs]


def back_link(html: str) -> tuple[str, str] | None:
    """An error page's way back: its link's target and text."""
    found = [a for a in parse_html(html).find_all("a") if a.attrs.get("id") == "back"]
    return (found[0].attrs["href"] or "", found[0].text()) if found else None


HUGE = "99999999999999999999999"
"""An id no row can have: more than a signed 64-bit integer holds."""


# ── Access ───────────────────────────────────────────────────────────────────────────────────


async def test_logged_out_pages_redirect_to_login(sidebar_settings: Settings) -> None:
    async with browser(sidebar_settings) as client:
        for path in ("/ui/", "/ui/preview?email=a@b.example", "/ui/setup", "/ui/insights"):
            response = await client.get(path)
            assert response.status_code == 303, path
            location = response.headers["location"]
            assert location.startswith("/ui/login?next=/ui/"), location
            assert "set-cookie" not in response.headers
        assert (await client.get("/ui")).headers["location"] == "/ui/"
        # a logged-out form post changes nothing and goes to the login page
        relabel = await client.post("/ui/insights/conversations/1/label", data={"label": "bug"})
        assert (relabel.status_code, relabel.headers["location"]) == (303, "/ui/login")
        # the helpdesk endpoints are as they were
        assert (await client.post("/helpscout", content=b"{}")).status_code == 401


async def test_no_ui_without_an_admin_password(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database, replace=NO_INSIGHTS)  # no [admin]
    assert not settings.admin.ui_enabled
    async with browser(settings) as client:
        assert (await client.get("/ui/login")).status_code == 404
        assert (await client.get("/ui/static/ui.css")).status_code == 404


async def test_login_sets_a_private_session_cookie_and_logout_ends_it(
    sidebar_settings: Settings,
) -> None:
    async with browser(sidebar_settings) as client:
        response = await log_in(client, next="/ui/setup")
        assert response.status_code == 303
        assert response.headers["location"] == "/ui/setup"
        cookie = next(
            c for c in response.headers.get_list("set-cookie") if c.startswith("deskside_session=")
        )
        flags = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "secure", "path", "max-age"} <= flags
        assert "samesite=lax" in cookie.lower()
        assert 11 * 3600 < int(re.search(r"Max-Age=(\d+)", cookie).group(1)) <= 12 * 3600  # type: ignore[union-attr]

        page = await client.get("/ui/setup")
        assert page.status_code == 200
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["cache-control"] == "no-store"

        logout = await client.post("/ui/logout", data={"csrf_token": csrf_of(page.text)})
        assert (logout.status_code, logout.headers["location"]) == (303, "/ui/login")
        assert (await client.get("/ui/setup")).status_code == 303


async def test_session_cookie_is_not_secure_over_plain_http(sidebar_settings: Settings) -> None:
    async with browser(sidebar_settings, base_url="http://127.0.0.1:8000") as client:
        response = await log_in(client)
        cookie = response.headers["set-cookie"]
        assert "deskside_session=" in cookie and "secure" not in cookie.lower()


async def test_wrong_password_forged_form_and_too_many_attempts(sidebar_settings: Settings) -> None:
    async with browser(sidebar_settings) as client:
        wrong = await log_in(client, password="guess-one")
        assert wrong.status_code == 401
        assert "Wrong password" in wrong.text
        assert "deskside_session" not in wrong.headers.get("set-cookie", "")

        # the login form's own CSRF token is required too
        forged = await client.post("/ui/login", data={"password": PASSWORD})
        assert forged.status_code == 403

        for _ in range(4):
            assert (await log_in(client, password="guess-again")).status_code == 401
        limited = await log_in(client)  # even the right password waits now
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
        assert "deskside_session" not in limited.headers.get("set-cookie", "")


async def test_a_forged_session_cookie_is_refused(sidebar_settings: Settings) -> None:
    async with browser(sidebar_settings) as client:
        await log_in(client)
        value = client.cookies["deskside_session"]
        payload, signature = value.split(".")
        client.cookies.set(
            "deskside_session", f"{payload}.{signature[::-1]}", domain="deskside.test"
        )
        assert (await client.get("/ui/setup")).status_code == 303


async def test_password_hash_in_the_config(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    hashed = hash_password("correct horse battery")
    assert PasswordHash.parse(hashed).matches("correct horse battery")
    assert not PasswordHash.parse(hashed).matches("correct horse battery!")
    settings = demo_settings(
        monkeypatch,
        tmp_path,
        database,
        replace={"[server]\n": f'[admin]\npassword_hash = "{hashed}"\n\n[server]\n', **NO_INSIGHTS},
    )
    async with browser(settings) as client:
        assert (await log_in(client)).status_code == 401
        assert (await log_in(client, password="correct horse battery")).status_code == 303
    with pytest.raises(ConfigError, match="password_hash"):
        demo_settings(
            monkeypatch,
            tmp_path,
            database,
            replace={"[server]\n": '[admin]\npassword_hash = "scrypt$1$2"\n[server]\n'},
        )


# ── CSRF ─────────────────────────────────────────────────────────────────────────────────────


async def test_posts_without_the_csrf_token_are_refused(settings: Settings) -> None:
    async with browser(settings) as client:
        await log_in(client)
        await seed_conversations(client, settings)
        for data in ({"label": "docs"}, {"label": "docs", "csrf_token": "not-the-token"}):
            refused = await client.post("/ui/insights/conversations/3/label", data=data)
            assert refused.status_code == 403
            assert "CSRF" in refused.text
        logout = await client.post("/ui/logout", data={})
        assert logout.status_code == 403
        probe = await client.post("/ui/preview/probe", data={"desk": "helpscout", "email": "a@b.c"})
        assert probe.status_code == 403
        assert (await client.get("/ui/setup")).status_code == 200  # still logged in


async def test_require_admin_takes_a_token_or_a_session_with_its_csrf_token(
    settings: Settings,
) -> None:
    admin = settings.admin.model_copy(update={"token": [settings.admin.password]})
    app = FastAPI()
    app.state.service = SimpleNamespace(settings=SimpleNamespace(admin=admin))

    @app.exception_handler(HTTPError)
    async def _error(_request: Request, exc: HTTPError) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status)

    @app.api_route("/private", methods=["GET", "POST"], dependencies=[Depends(require_admin)])
    async def private() -> dict[str, Any]:
        return {"ok": True}

    auth = AdminAuth.of(SimpleNamespace(app=app))  # type: ignore[arg-type]
    session = auth.new_session()
    response = JSONResponse({})
    fake_request = SimpleNamespace(url=SimpleNamespace(scheme="https"))
    auth.set_session(response, fake_request, session)  # type: ignore[arg-type]
    cookie = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL) as client:
        assert (await client.get("/private")).status_code == 401
        bearer = {"Authorization": f"Bearer {PASSWORD}"}
        assert (await client.post("/private", headers=bearer)).status_code == 200
        client.cookies.set("deskside_session", cookie, domain="deskside.test")
        assert (await client.get("/private")).status_code == 200
        assert (await client.post("/private")).status_code == 403
        assert (await client.post("/private", json={"csrf_token": session.csrf})).status_code == 403
        ok_header = await client.post("/private", headers={"X-CSRF-Token": session.csrf})
        ok_form = await client.post("/private", data={"csrf_token": session.csrf})
        assert (ok_header.status_code, ok_form.status_code) == (200, 200)


# ── Pages ────────────────────────────────────────────────────────────────────────────────────


async def test_preview_shows_the_injection_payload_as_text(sidebar_settings: Settings) -> None:
    async with browser(sidebar_settings) as client:
        await log_in(client)
        page = await client.get("/ui/preview", params={"email": "mallory@evil.example"})
    assert page.status_code == 200
    html = page.text
    assert "<script>alert" not in html and "<img" not in html
    tree = parse_html(html)
    # the only script is the UI's own file; no element carries an event handler
    scripts = tree.find_all("script")
    assert [s.attrs.get("src", "").split("?")[0] for s in scripts] == ["/ui/static/ui.js"]
    assert not [e for e in tree.iter() if any(name.startswith("on") for name in e.attrs)]
    # every helpdesk's answer is on the page, each showing the payload as text
    desks = {e.attrs["data-desk"]: e for e in tree.find_all("section", "desk")}
    assert set(desks) == set(protocol_classes())
    assert INJECTED_COMPANY in desks["therethere"].find_all("table")[0].text()
    assert INJECTED_COMPANY in desks["plain"].find_all("div", "plain-card")[0].text()
    # Help Scout's HTML, in a sandboxed frame: the payload is escaped inside the document
    [frame] = desks["helpscout"].find_all("iframe")
    assert frame.attrs["sandbox"] == "allow-scripts allow-popups allow-popups-to-escape-sandbox"
    document = parse_html(frame.attrs["srcdoc"] or "")
    assert INJECTED_COMPANY in document.find_all("h4")[0].text()
    assert [s.text() for s in document.find_all("script")] != []  # only the frame's own
    assert all("alert" not in s.text() for s in document.find_all("script"))
    assert not document.find_all("img")
    # and where the sources answered from, how fast, from the cache or not
    sources = tree.find_all("table")[0].text()
    assert "App database" in sources and "1 record" in sources and "miss" in sources


async def test_preview_of_several_or_no_addresses(sidebar_settings: Settings) -> None:
    async with browser(sidebar_settings) as client:
        await log_in(client)
        both = await client.get(
            "/ui/preview", params={"email": "pat@initech.example, pat@initrode.example"}
        )
        assert "Initech" in both.text and "Initrode" in both.text
        again = await client.get(
            "/ui/preview", params={"email": "pat@initech.example, pat@initrode.example"}
        )
        assert ">hit<" in again.text  # the second lookup came from the cache
        pasted = await client.get(  # as a mail client copies them
            "/ui/preview", params={"email": "Pat <pat@initech.example>;pat@initrode.example"}
        )
        assert "Initech" in pasted.text and "Initrode" in pasted.text
        bad = await client.get("/ui/preview", params={"email": "not an address"})
        assert "Not an email address" in bad.text


async def test_send_as_helpdesk_reports_the_probe(sidebar_settings: Settings) -> None:
    async with browser(sidebar_settings) as client:
        await log_in(client)
        page = await client.get("/ui/preview", params={"email": "owner@acme.example"})
        data = {
            "csrf_token": csrf_of(page.text),
            "desk": "helpscout",
            "email": "owner@acme.example",
        }
        probed = await client.post("/ui/preview/probe", data=data)
    # deskside.test resolves nowhere: the probe says it could not reach the endpoint
    assert probed.status_code == 200
    assert (
        "FAIL" in probed.text and "could not reach https://deskside.test/helpscout" in probed.text
    )


async def test_send_as_helpdesk_keeps_every_address_typed(sidebar_settings: Settings) -> None:
    typed = "owner@acme.example, pat@initech.example"
    async with browser(sidebar_settings) as client:
        await log_in(client)
        page = await client.get("/ui/preview", params={"email": typed})
        probes = [
            form
            for form in parse_html(page.text).find_all("form")
            if form.attrs.get("action") == "/ui/preview/probe"
        ]
        fields = [{i.attrs["name"]: i.attrs["value"] for i in f.find_all("input")} for f in probes]
        [sent] = [f for f in fields if f["desk"] == "helpscout"]
        assert sent["email"] == typed  # the form sends what was typed
        assert all("first address only" in form.text() for form in probes)  # and says so
        probed = await client.post("/ui/preview/probe", data=sent)
    assert probed.status_code == 200
    tree = parse_html(probed.text)
    [field] = [i for i in tree.find_all("input") if i.attrs.get("id") == "email"]
    assert field.attrs["value"] == typed  # what was typed is still there
    assert f"Lookup of {typed}" in tree.text()
    assert "Initech" in tree.text()  # the second customer's preview too
    [verdict] = tree.find_all("div", "probe")
    assert "Sent for owner@acme.example, the first address only." in verdict.text()


async def test_setup_lists_what_to_paste(settings: Settings) -> None:
    async with browser(settings) as client:
        await log_in(client)
        page = await client.get("/ui/setup")
    text = parse_html(page.text).text()
    assert "https://deskside.test/helpscout" in text
    assert "https://deskside.test/webhooks/helpscout" in text
    assert "from $HELPSCOUT_SECRET" in text
    assert "every mailbox" in text
    assert "account, billing" in text  # Plain's card keys
    copy = [e for e in parse_html(page.text).iter() if "data-copy" in e.attrs]
    assert {"https://deskside.test/helpscout", "hs-test-secret"} <= {
        e.attrs["data-copy"] for e in copy
    }
    assert "every mailbox" not in {e.attrs["data-copy"] for e in copy}  # to read, not paste
    assert "app" in text and "ok" in text  # the source's check


async def test_relabel_changes_the_counts(settings: Settings) -> None:
    async with browser(settings) as client:
        await log_in(client)
        await seed_conversations(client, settings)
        before = await client.get("/ui/insights")
        assert before.status_code == 200
        assert label_counts(before.text) == {
            "all": 3, "bug": 1, "feature": 1, "docs": 0, "question": 1, "other": 0,
        }  # fmt: skip
        assert "<svg" in before.text and "series--bug" in before.text
        # conversations go by the number Help Scout shows (#103), not deskside's id (3)
        assert ">Label of conversation #103</label>" in before.text
        changed = await client.post(
            "/ui/insights/conversations/3/label",
            data={"csrf_token": csrf_of(before.text), "label": "docs"},
        )
        assert changed.status_code == 303
        after = await client.get(changed.headers["location"])
        assert label_counts(after.text) == {
            "all": 3, "bug": 1, "feature": 1, "docs": 1, "question": 0, "other": 0,
        }  # fmt: skip
        assert "Conversation #103 is now labelled docs" in parse_html(after.text).text()
        only_docs = await client.get("/ui/insights", params={"label": "docs"})
        rows = parse_html(only_docs.text).find_all("tr")
        assert [
            r.attrs.get("data-conversation") for r in rows if "data-conversation" in r.attrs
        ] == ["3"]
        unknown = await client.post(
            "/ui/insights/conversations/3/label",
            data={"csrf_token": csrf_of(before.text), "label": "urgent", "filter": "docs"},
        )
        assert unknown.status_code == 400
        assert back_link(unknown.text) == ("/ui/insights?label=docs", "Back to Insights")


async def test_unsure_labels_are_listed_first_to_check_until_an_agent_decides(
    settings: Settings,
) -> None:
    async with browser(settings) as client:
        await log_in(client)
        await seed_conversations(client, settings)
        store = client._transport.app.state.insights.store  # type: ignore[attr-defined]
        async with store.session() as session:
            for conversation_id, confidence in ((1, 0.45), (2, 0.3), (3, 0.95)):
                classification = await session.get(Classification, conversation_id)
                assert classification is not None and classification.by == "model"
                classification.confidence = confidence
        page = await client.get("/ui/insights")
        assert unsure_count(page.text) == 2
        unsure = await client.get("/ui/insights", params={"label": "unsure"})
        assert listed(unsure.text) == ["2", "1"]  # the least confident first
        assert "Unsure labels, least confident first" in unsure.text
        rows = [r for r in parse_html(unsure.text).find_all("tr") if "data-conversation" in r.attrs]
        assert [[b.text() for b in r.find_all("span", "badge")] for r in rows] == [["unsure"]] * 2
        decided = await client.post(
            "/ui/insights/conversations/2/label",
            data={"csrf_token": csrf_of(unsure.text), "label": "bug", "filter": "unsure"},
        )
        assert "label=unsure" in decided.headers["location"]  # back to the same list
        after = await client.get(decided.headers["location"])
        assert listed(after.text) == ["1"]  # an agent's label is never unsure
        assert unsure_count(after.text) == 1
        api = await client.get("/api/insights/conversations", params={"label": "unsure"})
        assert [(c["id"], c["unsure"]) for c in api.json()] == [(1, True)]


async def test_relabel_names_the_conversation_as_the_page_shows_it(settings: Settings) -> None:
    async with browser(settings) as client:
        await log_in(client)
        await seed_conversations(client, settings)
        token = csrf_of((await client.get("/ui/insights")).text)
        # relabelled out of the list being looked at, it is still named by its number
        moved = await client.post(
            "/ui/insights/conversations/2/label",
            data={"csrf_token": token, "label": "other", "filter": "feature"},
        )
        shown = await client.get(moved.headers["location"])
        assert 'data-conversation="2"' not in shown.text
        flash = parse_html(shown.text).find_all("p", "notice")[0].text()
        assert flash.startswith("Conversation #102 is now labelled other")
        # without a number, the id is all there is
        store = client._transport.app.state.insights.store  # type: ignore[attr-defined]
        async with store.session() as session:
            (await session.get(Conversation, 1)).number = None  # type: ignore[union-attr]
        page = await client.get("/ui/insights")
        assert ">Label of conversation 1</label>" in page.text
        moved = await client.post(
            "/ui/insights/conversations/1/label", data={"csrf_token": token, "label": "docs"}
        )
        shown = await client.get(moved.headers["location"])
        assert "Conversation 1 is now labelled docs" in parse_html(shown.text).text()


def test_admin_password_mistakes_are_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    monkeypatch.setenv("SHORT_PASSWORD", "short")
    with pytest.raises(ConfigError, match="shorter than 8 characters"):
        demo_settings(
            monkeypatch,
            tmp_path,
            database,
            replace={"[server]\n": '[admin]\npassword = "env:SHORT_PASSWORD"\n[server]\n'},
        )
    with pytest.raises(ConfigError, match="did you mean `password`"):
        demo_settings(
            monkeypatch,
            tmp_path,
            database,
            replace={"[server]\n": '[admin]\npasswrod = "long enough"\n[server]\n'},
        )


# ── Topics and reports ───────────────────────────────────────────────────────────────────────


async def bug_topics(client: httpx.AsyncClient) -> list[TopicSummary]:
    insights = client._transport.app.state.insights  # type: ignore[attr-defined]
    return await dashboard.topics(insights.store, await insights.trends(), label="bug")


async def test_a_topic_is_renamed_split_and_merged_back(settings: Settings) -> None:
    async with browser(settings) as client:
        await log_in(client)
        await seed_conversations(
            client, settings, {4: "The app crashes every time I upload a photo, error 500."}
        )
        topics = await bug_topics(client)
        first = topics[0].id
        page = await client.get(f"/ui/topics/{first}")
        token = csrf_of(page.text)
        for other in topics[1:]:  # however the grouping went, one bug topic to start with
            merged = await client.post(
                f"/ui/topics/{other.id}/merge",
                data={"csrf_token": token, "into": str(first), "confirmed": "1"},
            )
            assert merged.headers["location"].startswith(f"/ui/topics/{first}?done=merge&undo=")
        [topic] = await bug_topics(client)
        assert (topic.id, topic.conversations, topic.customers) == (first, 2, 2)

        renamed = await client.post(
            f"/ui/topics/{first}/rename", data={"csrf_token": token, "name": "  Photo   uploads "}
        )
        shown = await client.get(renamed.headers["location"])
        assert "<h1>Photo uploads" in shown.text and "given by a person" in shown.text
        rows = parse_html(shown.text).find_all("tr")
        assert sorted(
            r.attrs["data-conversation"] or "" for r in rows if "data-conversation" in r.attrs
        ) == ["1", "4"]

        split = await client.post(
            f"/ui/topics/{first}/split",
            content=f"csrf_token={token}&conversation=4&name=Error+500",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert split.status_code == 303
        new_id = int(split.headers["location"].split("/")[3].split("?")[0])
        assert {(t.id, t.name, t.conversations) for t in await bug_topics(client)} == {
            (first, "Photo uploads", 1),
            (new_id, "Error 500", 1),
        }
        everything = await client.post(
            f"/ui/topics/{new_id}/split", data={"csrf_token": token, "conversation": "4"}
        )
        assert everything.status_code == 400 and "not all" in everything.text
        # a refused change leads back to the topic it was about
        assert back_link(everything.text) == (f"/ui/topics/{new_id}", "Back to the topic")
        nothing = await client.post(f"/ui/topics/{first}/split", data={"csrf_token": token})
        blank = await client.post(
            f"/ui/topics/{first}/rename", data={"csrf_token": token, "name": "   "}
        )
        assert [nothing.status_code, blank.status_code] == [400, 400]
        assert "the name is empty" in blank.text
        for refused in (nothing, blank):
            assert back_link(refused.text) == (f"/ui/topics/{first}", "Back to the topic")
        back = await client.post(
            f"/ui/topics/{new_id}/merge",
            data={"csrf_token": token, "into": str(first), "confirmed": "1"},
        )
        assert back.headers["location"].startswith(f"/ui/topics/{first}?done=merge&undo=")
        assert [(t.id, t.conversations) for t in await bug_topics(client)] == [(first, 2)]
        assert (await client.get(f"/ui/topics/{new_id}")).status_code == 404  # merged away

        forged = await client.post(f"/ui/topics/{first}/rename", data={"name": "Hijacked"})
        assert forged.status_code == 403
        assert (await bug_topics(client))[0].name == "Photo uploads"


async def test_ids_no_row_can_have_are_not_found(settings: Settings) -> None:
    async with browser(settings) as client:
        await log_in(client)
        await seed_conversations(client, settings)
        [bug] = await bug_topics(client)
        token = csrf_of((await client.get(f"/ui/topics/{bug.id}")).text)
        for wrong in (HUGE, "0", "-1", "abc"):
            page = await client.get(f"/ui/topics/{wrong}")
            assert page.status_code == 404, wrong
            assert f"There is no topic {wrong}" in page.text
        changes = {
            f"/ui/insights/conversations/{HUGE}/label": {"label": "bug"},
            f"/ui/topics/{HUGE}/rename": {"name": "Renamed"},
            f"/ui/topics/{HUGE}/merge": {"into": str(bug.id)},
            f"/ui/topics/{HUGE}/split": {"conversation": "1"},
        }
        for path, data in changes.items():
            refused = await client.post(path, data={"csrf_token": token, **data})
            assert refused.status_code == 404, path
            assert f"There is no {'conversation' if 'insights' in path else 'topic'} {HUGE}" in (
                parse_html(refused.text).text()
            )
        for into in (HUGE, "0", "²"):  # as if no topic were chosen
            merge = await client.post(
                f"/ui/topics/{bug.id}/merge", data={"csrf_token": token, "into": into}
            )
            assert merge.status_code == 400
            assert "choose the topic to merge into" in merge.text
        split = await client.post(
            f"/ui/topics/{bug.id}/split", data={"csrf_token": token, "conversation": HUGE}
        )
        assert split.status_code == 400
        assert [(t.id, t.name) for t in await bug_topics(client)] == [(bug.id, bug.name)]
        # and a page that does not exist is a page too
        nowhere = await client.get("/ui/nowhere")
        assert nowhere.status_code == 404 and "text/html" in nowhere.headers["content-type"]
        assert back_link(nowhere.text) == ("/ui/", "Back to the start")


async def test_every_topic_is_reachable_from_insights(settings: Settings) -> None:
    more = {
        4: "Please add an export to PDF for the monthly invoices.",
        5: "The login page is blank after I type the two-factor code.",
        6: "Where is the documentation for the REST API webhooks?",
        7: "Can I get a refund for last month?",
        8: "Syncing with Google Calendar duplicates every event.",
        9: "I would love keyboard shortcuts in the editor.",
        10: "The mobile app logs me out every few minutes.",
        11: "How do I invite a colleague to my workspace?",
        12: "Your docs still show the old pricing page.",
    }
    async with browser(settings) as client:
        await log_in(client)
        await seed_conversations(client, settings, more)
        insights = client._transport.app.state.insights  # type: ignore[attr-defined]
        store = insights.store
        for topic in await dashboard.topics(store, {}):  # one topic per conversation: 12
            members = await dashboard.conversations(store, topic=topic.id)
            for member in members[1:]:
                await insights.analysis.split_topic(topic.id, [member.id], by="cli")
        every = await dashboard.topics(store, await insights.trends())
        assert len(every) == 12 and "question" in {t.label for t in every}

        page = await client.get("/ui/insights")
        tree = parse_html(page.text)
        [listed] = tree.find_all("ol", "topics")
        assert len(listed.find_all("li")) == 10
        [all_topics] = [a for a in tree.find_all("a") if a.attrs.get("id") == "all-topics"]
        assert (all_topics.attrs["href"], all_topics.text()) == ("/ui/topics", "All 12 topics")
        # each conversation links to its topic
        topic_of = {str(c.id): c.topic_id for c in await dashboard.conversations(store)}
        rows = [r for r in tree.find_all("tr") if "data-conversation" in r.attrs]
        assert len(rows) == 12
        for row in rows:
            topic_id = topic_of[row.attrs["data-conversation"] or ""]
            assert f"/ui/topics/{topic_id}" in [a.attrs["href"] for a in row.find_all("a")]

        topics_page = await client.get("/ui/topics")
        assert topics_page.status_code == 200
        sections = {
            section.find_all("h2")[0].attrs["id"]: {
                int((a.attrs["href"] or "").rsplit("/", 1)[1]) for a in section.find_all("a")
            }
            for section in parse_html(topics_page.text).find_all("section", "topic-group")
        }
        by_label: dict[str, set[int]] = {}
        for topic in every:
            by_label.setdefault(f"topics-{topic.label}", set()).add(topic.id)
        assert sections == by_label


async def test_reports_export_to_github(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    with FakeGitHub(token="gh-token", repository="acme/app") as github:
        reports = (
            "[insights.reports]\n"
            'github_repository = "acme/app"\n'
            'github_token = "gh-token"\n'
            f'github_api_url = "{github.api_url}"\n\n'
            "[insights.helpscout]"
        )
        settings = demo_settings(
            monkeypatch,
            tmp_path,
            database,
            replace={"[server]\n": ADMIN, "[insights.helpscout]": reports},
        )
        async with browser(settings) as client:
            await log_in(client)
            await seed_conversations(client, settings)
            page = await client.get("/ui/reports")
            [bug] = await bug_topics(client)
            assert f'action="/ui/reports/{bug.id}/export/github"' in page.text
            quotes = re.findall(r"<blockquote>(.+?)</blockquote>", page.text)
            assert quotes and all(page.text.count(quote) == 1 for quote in quotes)  # said once
            nowhere = await client.post(
                f"/ui/reports/{HUGE}/export/github", data={"csrf_token": csrf_of(page.text)}
            )
            assert nowhere.status_code == 404
            for _ in range(2):  # the second export updates the same issue
                exported = await client.post(
                    f"/ui/reports/{bug.id}/export/github", data={"csrf_token": csrf_of(page.text)}
                )
                assert exported.status_code == 303
                shown = await client.get(exported.headers["location"])
                assert f"Exported topic {bug.id}" in shown.text
        assert len(github.issues) == 1
        assert [r.method for r in github.requests()][:1] == ["POST"]


def helpscout_app_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, helpscout: dict[str, Any]
) -> Settings:
    """:func:`settings` with an encryption key and these ``[insights.helpscout]`` keys."""
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    key = Fernet.generate_key().decode()
    lines = "".join(f"{name} = {json.dumps(value)}\n" for name, value in helpscout.items())
    replace = {
        "[server]\n": ADMIN,
        "[insights]": f'[insights]\nencryption_key = "{key}"\n#',
        "[insights.helpscout]": f"[insights.helpscout]\n{lines}#",
    }
    return demo_settings(monkeypatch, tmp_path, database, replace=replace)


async def test_connection_page_connects_selects_mailboxes_and_disconnects(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    app = {"client_id": "app-id", "client_secret": "app-secret"}
    settings = helpscout_app_settings(monkeypatch, tmp_path, database, app)
    async with browser(settings) as client:
        await log_in(client)
        page = await client.get("/ui/connection")
        assert "Not connected" in page.text
        assert (
            "form-action 'self' https://secure.helpscout.net"
            in (page.headers["content-security-policy"])
        )
        token = csrf_of(page.text)
        connect = await client.post("/ui/connection/connect", data={"csrf_token": token})
        assert connect.status_code == 303
        location = connect.headers["location"]
        assert location.startswith(settings.insights.helpscout.authorize_url)
        assert "client_id=app-id" in location and "state=" in location

        store = client._transport.app.state.insights.store  # type: ignore[attr-defined]
        async with store.session() as session:
            session.add(Connection(provider="helpscout", mode="oauth"))
            session.add_all(
                [Mailbox(id=11, name="Support"), Mailbox(id=12, name="Sales <b>team</b>")]
            )
            session.add(ImportCursor(key="all:2026-08-01", imported=40, total=100, next_url="x"))
        page = await client.get("/ui/connection")
        text = parse_html(page.text).text()
        assert "Connected since" in text and "Sales <b>team</b>" in text
        assert "40 of 100 conversations" in text

        chosen = await client.post(
            "/ui/connection/mailboxes", data={"csrf_token": token, "mailbox": "12"}
        )
        assert chosen.headers["location"] == "/ui/connection?done=mailboxes"
        async with store.read() as session:
            selected = {m.id: m.selected for m in await session.scalars(select(Mailbox))}
        assert selected == {11: False, 12: True}
        every = await client.post(
            "/ui/connection/mailboxes", data={"csrf_token": token, "every": "1", "mailbox": "12"}
        )
        assert every.status_code == 303
        async with store.read() as session:
            assert not any(m.selected for m in await session.scalars(select(Mailbox)))

        forged = await client.post("/ui/connection/disconnect", data={})
        assert forged.status_code == 403
        gone = await client.post("/ui/connection/disconnect", data={"csrf_token": token})
        assert gone.headers["location"] == "/ui/connection?done=disconnect"
        assert "Not connected" in (await client.get("/ui/connection")).text


async def test_connecting_needs_the_encryption_key_and_says_so(settings: Settings) -> None:
    async with browser(settings) as client:  # the demo config: no [insights] encryption_key
        await log_in(client)
        page = await client.get("/ui/connection")
        assert "insights.encryption_key is not set" in parse_html(page.text).text()
        assert 'action="/ui/connection/connect"' not in page.text  # no button that must fail
        # a connect sent anyway (from an older page) fails on the connection page, not Insights
        token = csrf_of(page.text)
        failed = await client.post("/ui/connection/connect", data={"csrf_token": token})
        assert failed.status_code == 503
        tree = parse_html(failed.text)
        assert tree.find_all("h1")[0].text() == "Help Scout connection"
        assert "insights.encryption_key is not set" in tree.text()
        current = [a.text() for a in tree.find_all("a") if a.attrs.get("aria-current") == "page"]
        assert current == ["Help Scout"]
        assert back_link(failed.text) == ("/ui/connection", "Back to the Help Scout connection")


async def test_an_import_started_from_the_connection_page_resumes_after_a_failure(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    with FakeHelpScout(generate_dataset(60, customers=20, seed=3), page_size=10) as helpscout:
        table = helpscout.settings_document(mode="client_credentials")
        settings = helpscout_app_settings(monkeypatch, tmp_path, database, table)
        expected = helpscout.dataset.matching(parse_since("365d"))
        async with browser(settings) as client:
            await log_in(client)
            insights = client._transport.app.state.insights  # type: ignore[attr-defined]
            page = await client.get("/ui/connection")
            assert 'action="/ui/connection/import"' not in page.text  # not connected yet
            async with HelpScoutAPI(settings.insights, insights.store) as api:
                await api.connect_client_credentials()
            page = await client.get("/ui/connection")
            token = csrf_of(page.text)
            start = {"csrf_token": token, "since": "365d"}
            assert (await client.post("/ui/connection/import", data={})).status_code == 403
            wrong = await client.post("/ui/connection/import", data={**start, "since": "5y"})
            assert wrong.status_code == 400
            assert back_link(wrong.text) == ("/ui/connection", "Back to the Help Scout connection")

            pages_served = 0
            clicked_twice = threading.Event()

            def refuse_the_third_page(request: Received) -> Reply | None:
                nonlocal pages_served
                if request.path != "/v2/conversations":
                    return None
                pages_served += 1
                clicked_twice.wait(60)  # the import runs until the second click is answered
                return Reply(403, b"{}") if pages_served == 3 else None

            helpscout.fault = refuse_the_third_page
            started = await client.post("/ui/connection/import", data=start)
            assert started.headers["location"] == "/ui/connection?done=import"
            following = await client.get(started.headers["location"])
            assert "The import has started" in following.text
            assert 'data-reload-seconds="3"' in following.text
            twice = await client.post("/ui/connection/import", data=start)
            assert "already+running" in twice.headers["location"]
            clicked_twice.set()
            await wait_for_import(insights)
            stopped = parse_html((await client.get("/ui/connection")).text).text()
            assert "The last import stopped: Help Scout answered GET" in stopped
            assert "20 of 60 conversations" in stopped

            helpscout.fault = None
            await client.post("/ui/connection/import", data=start)
            await wait_for_import(insights)
            finished = parse_html((await client.get("/ui/connection")).text).text()
            assert "The last import stopped" not in finished
            assert f"finished, {len(expected)} conversations" in finished
            async with insights.store.read() as session:
                stored = set(await session.scalars(select(Conversation.id)))
            assert stored == {c["id"] for c in expected}

            await client.post("/ui/connection/import", data=start)  # once more: nothing to do
            await wait_for_import(insights)
            page = parse_html((await client.get("/ui/connection")).text).text()
            assert "Nothing to fetch" in page


async def wait_for_import(insights: Any, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while insights.default.last_import.running:
        assert time.monotonic() < deadline, f"the import did not finish in {seconds} s"
        await asyncio.sleep(0.05)


# ── Setup behind a proxy, and the server's own address ────────────────────────────────────────


async def test_setup_shows_every_url_under_the_public_url(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    server = ADMIN + 'public_url = "https://deskside.example.com/"\n'
    settings = demo_settings(monkeypatch, tmp_path, database, replace={"[server]\n": server})
    async with browser(settings, base_url="http://127.0.0.1:8000") as client:
        client.headers["X-Forwarded-Host"] = "attacker.example"  # no proxy is trusted
        await log_in(client)
        page = await client.get("/ui/setup")
    text = parse_html(page.text).text()
    copy = {e.attrs["data-copy"] for e in parse_html(page.text).iter() if "data-copy" in e.attrs}
    for path in ("/helpscout", "/plain", "/helper/identity", "/webhooks/helpscout"):
        assert f"https://deskside.example.com{path}" in copy, path
    # Connect on the Help Scout page comes back to the server's callback
    assert "https://deskside.example.com/insights/helpscout/callback" in copy
    assert "deskside connect uses [insights.helpscout] redirect_url instead" in text
    assert "127.0.0.1" not in " ".join(copy) and "attacker" not in text
    # The insights panels never take a helpdesk's place (the demo serves one named helpscout_app)
    ids = [str(e.attrs["id"]) for e in parse_html(page.text).iter() if "id" in e.attrs]
    assert len(ids) == len(set(ids)), ids
    assert {"setup-helpscout_app", "setup-insights-oauth", "setup-insights-webhooks"} <= set(ids)


async def test_setup_without_insights_has_no_help_scout_app(sidebar_settings: Settings) -> None:
    async with browser(sidebar_settings) as client:
        await log_in(client)
        text = parse_html((await client.get("/ui/setup")).text).text()
    assert "https://deskside.test/helpscout" in text
    assert "Redirection URL" not in text and "/webhooks/helpscout" not in text


async def test_the_servers_address_leads_to_the_ui(
    sidebar_settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    async with browser(sidebar_settings) as client:
        home = await client.get("/")
    assert (home.status_code, home.headers["location"]) == (302, "/ui/")
    without_ui = demo_settings(monkeypatch, tmp_path, database, replace=NO_INSIGHTS)
    async with browser(without_ui) as client:
        home = await client.get("/")
    assert (home.status_code, home.json()) == (404, {"error": "Not Found"})
