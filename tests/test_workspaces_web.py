"""Workspaces in the web UI, through the real app (httpx, no browser): a person of two
workspaces logs in to their first and switches to the other with the header's form, and then
sees only its conversations; nobody switches to a workspace they are not a member of; the
Audit page and its downloads of a workspace show its own changes and the changes to its
people, never another workspace's; the Help Scout page and Setup name the workspace's own
webhook URL. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deskside.config import Settings
from deskside.insights.people import People
from deskside.web import dashboard
from deskside.web.auth import PasswordHash
from deskside.web.roles import Role
from helpers import BASE_URL, add_workspace, demo_settings, helpscout_signature, parse_html
from test_insights_webhooks import conversation, settled
from test_oidc import LocalProvider, oidc_settings, sign_in
from test_oidc import provider as provider  # the fixture
from test_people import client_of, running
from test_web import ADMIN, PASSWORD, browser, csrf_of, log_in, seed_conversations

pytestmark = pytest.mark.anyio

PERSON_PASSWORD = "a-workspace-person-password"
ACME = {41: "The export button crashes the app with error 500.", 42: "How do I invite a user?"}
"""Conversations of the workspace acme (the default one has test_web's 1, 2 and 3)."""


@pytest.fixture
def settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, insights_url: str
) -> Settings:
    """The demo config with the web UI on, its insights in ``insights_url``."""
    return web_settings(monkeypatch, tmp_path, database, insights_url)


def web_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: str,
    insights_url: str,
    tables: str = "",
) -> Settings:
    """:func:`settings`, with more ``[insights.…]`` ``tables``."""
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    replace = {
        "[server]\n": ADMIN,
        "[insights]": f'[insights]\ndatabase = "{insights_url}"',
        "[insights.helpscout]": f"{tables}\n[insights.helpscout]",
    }
    return demo_settings(monkeypatch, tmp_path, database, replace=replace)


def insights_of(client: httpx.AsyncClient) -> Any:
    return client._transport.app.state.insights  # type: ignore[attr-defined]


async def with_acme(
    client: httpx.AsyncClient, settings: Settings, customer: str | None = None
) -> Any:
    """The default workspace's conversations (1, 2, 3) and a workspace acme with its own
    (:data:`ACME`, from ``customer`` when given), each delivered by webhook to its workspace's
    URL, stored and grouped; acme's service."""
    await seed_conversations(client, settings)
    insights = insights_of(client)
    acme = await add_workspace(insights, "acme")
    secret = settings.insights.helpscout.webhook_secret[0].get_secret_value()
    for number, text in ACME.items():
        document = conversation(number, threads=1, customer_id=800 + number)
        document["_embedded"]["threads"][0]["body"] = f"<p>{text}</p>"
        if customer is not None:
            document["primaryCustomer"]["email"] = customer
            document["_embedded"]["threads"][0]["createdBy"]["email"] = customer
        body = json.dumps(document).encode()
        headers = {
            "Content-Type": "application/json",
            "X-HelpScout-Event": "convo.created",
            "X-HelpScout-Signature": helpscout_signature(secret, body),
        }
        answer = await client.post("/webhooks/helpscout/acme", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
    await settled(acme.store)
    await acme.analysis.update()
    return acme


async def person(client: httpx.AsyncClient, email: str, *workspaces: tuple[str, Role]) -> None:
    """``email``, a member of ``workspaces`` (name, role) in that order, with a password."""
    control = insights_of(client).store
    token = None
    for name, role in workspaces:
        _, invited = await People(control, name).add(email, role, by="test")
        token = token or invited
    assert token is not None
    assert await People(control).accept(token, str(PasswordHash.new(PERSON_PASSWORD)))


async def person_log_in(client: httpx.AsyncClient, email: str) -> httpx.Response:
    form = await client.get("/ui/login")
    data = {"csrf_token": csrf_of(form.text), "username": email, "password": PERSON_PASSWORD}
    return await client.post("/ui/login", data=data)


def shown_conversations(html: str) -> set[str]:
    return {
        str(row.attrs["data-conversation"])
        for row in parse_html(html).find_all("tr")
        if "data-conversation" in row.attrs
    }


def switcher(html: str) -> list[str]:
    """The workspaces the header's form offers (none: no form)."""
    tree = parse_html(html)
    forms = [f for f in tree.find_all("form") if f.attrs.get("action") == "/ui/workspace"]
    return [str(o.attrs["value"]) for f in forms for o in f.find_all("option")]


async def switch(client: httpx.AsyncClient, page: httpx.Response, name: str) -> httpx.Response:
    data = {"csrf_token": csrf_of(page.text), "workspace": name}
    return await client.post("/ui/workspace", data=data)


async def test_a_person_of_two_workspaces_switches_and_sees_only_that_ones_conversations(
    settings: Settings,
) -> None:
    async with browser(settings) as client:
        await with_acme(client, settings)
        await person(client, "pat@staff.example", ("default", Role.viewer), ("acme", Role.editor))
        assert (await person_log_in(client, "pat@staff.example")).status_code == 303
        first = await client.get("/ui/insights")
        assert shown_conversations(first.text) == {"1", "2", "3"}
        assert switcher(first.text) == ["default", "acme"]
        assert "pat@staff.example · viewer in default" in parse_html(first.text).text()
        switched = await switch(client, first, "acme")
        assert switched.status_code == 303
        assert switched.headers["location"] == "/ui/insights"
        acme = await client.get("/ui/insights")
        assert shown_conversations(acme.text) == {"41", "42"}
        assert "pat@staff.example · editor in acme" in parse_html(acme.text).text()
        # their role is acme's: an editor relabels there
        relabelled = await client.post(
            "/ui/insights/conversations/42/label",
            data={"csrf_token": csrf_of(acme.text), "label": "docs"},
        )
        assert relabelled.status_code == 303
        assert "/ui/insights/conversations/3/label" not in acme.text
        missing = await client.post(
            "/ui/insights/conversations/3/label",
            data={"csrf_token": csrf_of(acme.text), "label": "docs"},
        )
        assert missing.status_code == 404  # the default workspace's conversation 3 is not here


async def test_a_person_cannot_switch_to_a_workspace_of_others(settings: Settings) -> None:
    async with browser(settings) as client:
        await with_acme(client, settings)
        await person(client, "sam@staff.example", ("default", Role.admin))
        await person_log_in(client, "sam@staff.example")
        page = await client.get("/ui/insights")
        assert switcher(page.text) == []  # one workspace: no form
        assert "sam@staff.example · admin" in parse_html(page.text).text()
        refused = await switch(client, page, "acme")
        assert refused.status_code == 403
        assert "not a member of the workspace 'acme'" in parse_html(refused.text).text()
        assert shown_conversations((await client.get("/ui/insights")).text) == {"1", "2", "3"}
        forged = await client.post("/ui/workspace", data={"workspace": "default"})
        assert forged.status_code == 403  # without the session's CSRF token


async def test_a_person_of_one_other_workspace_logs_in_to_it(settings: Settings) -> None:
    async with browser(settings) as client:
        await with_acme(client, settings)
        await person(client, "ann@acme.example", ("acme", Role.viewer))
        assert (await person_log_in(client, "ann@acme.example")).status_code == 303
        page = await client.get("/ui/insights")
        assert shown_conversations(page.text) == {"41", "42"}
        assert (await switch(client, page, "default")).status_code == 403


async def test_the_audit_of_a_workspace_shows_its_changes_and_its_people(
    settings: Settings,
) -> None:
    async with browser(settings) as client:
        await with_acme(client, settings)
        await log_in(client)
        page = await client.get("/ui/insights")
        assert switcher(page.text) == ["default", "acme"]  # the admin password: every one
        assert (await switch(client, page, "nowhere")).status_code == 404
        assert (await switch(client, page, "")).status_code == 400
        csrf = csrf_of(page.text)
        relabel = {"csrf_token": csrf, "label": "docs"}
        await client.post("/ui/insights/conversations/3/label", data=relabel)
        await person(client, "lee@acme.example", ("acme", Role.viewer))
        assert (await switch(client, page, "acme")).status_code == 303
        await client.post("/ui/insights/conversations/41/label", data=relabel)

        audit = await client.get("/ui/audit")
        rows = parse_html(audit.text).find_all("tr")
        details = [r.text() for r in rows if r.attrs.get("data-action") is not None]
        assert any("conversation 41 to docs" in d for d in details)
        assert not any("conversation 3 to docs" in d for d in details)
        assert any("person_added" in d for d in details)  # lee joined acme
        download = (await client.get("/ui/audit.json")).json()
        assert {e["workspace"] for e in download} == {"acme"}
        assert [e["action"] for e in download][:2] == ["relabel", "person_added"]  # newest first
        assert "conversation 3 to docs" not in (await client.get("/ui/audit.csv")).text

        back = await switch(client, await client.get("/ui/insights"), "default")
        assert back.status_code == 303
        default = (await client.get("/ui/audit.json")).json()
        assert "conversation 3 to docs" in {e["detail"] for e in default}
        assert not any("41" in e["detail"] or e["workspace"] == "acme" for e in default)


def webhook_url(html: str) -> str:
    """The webhook URL the Help Scout page shows."""
    found = [e for e in parse_html(html).find_all("code") if e.attrs.get("id") == "webhook-url"]
    assert len(found) == 1
    return found[0].text()


async def test_the_help_scout_page_and_setup_name_the_workspaces_webhook(
    settings: Settings,
) -> None:
    async with browser(settings) as client:
        await add_workspace(insights_of(client), "acme")
        await log_in(client)
        page = await client.get("/ui/connection")
        assert webhook_url(page.text) == f"{BASE_URL}/webhooks/helpscout"
        assert (await switch(client, page, "acme")).status_code == 303
        acme = await client.get("/ui/connection")
        assert webhook_url(acme.text) == f"{BASE_URL}/webhooks/helpscout/acme"
        assert "the workspace acme" in parse_html(acme.text).text()
        setup = parse_html((await client.get("/ui/setup")).text)
        copied = {e.attrs["data-copy"] for e in setup.iter() if "data-copy" in e.attrs}
        assert f"{BASE_URL}/webhooks/helpscout/acme" in copied
        assert f"{BASE_URL}/webhooks/helpscout" not in copied


async def test_a_switch_a_while_after_the_last_page_keeps_the_workspace_chosen(
    settings: Settings,
) -> None:
    """The session's last use is renewed on the same answer that switches: the new
    workspace's cookie is the one the browser keeps."""
    async with browser(settings) as client:
        await add_workspace(insights_of(client), "acme")
        await log_in(client)
        auth = client._transport.app.state.admin_auth  # type: ignore[attr-defined]
        now = time.time()
        document = {"e": now + 3600, "c": "csrf-token", "p": None, "g": 0, "s": now - 600}
        sealed = auth.seal("session", document)  # the admin password's, used 10 minutes ago
        client.cookies.set("deskside_session", sealed, domain="deskside.test")
        data = {"csrf_token": "csrf-token", "workspace": "acme"}
        switched = await client.post("/ui/workspace", data=data)
        assert switched.status_code == 303
        cookies = switched.headers.get_list("set-cookie")
        assert len(cookies) == 1, cookies
        page = await client.get("/ui/connection")
        assert webhook_url(page.text) == f"{BASE_URL}/webhooks/helpscout/acme"


async def test_single_sign_on_opens_the_persons_first_workspace(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    identities: LocalProvider = request.getfixturevalue("provider")  # test_oidc's, imported
    identities.email = "boss@elsewhere.example"  # not an allowed domain: added to acme only
    settings = oidc_settings(monkeypatch, tmp_path, database, identities)
    async with running(settings) as (app, people), client_of(app) as client:
        await add_workspace(app.state.insights, "acme")
        await people.of("acme").add("boss@elsewhere.example", Role.admin, by="test")
        answer, _ = await sign_in(client)
        assert answer.status_code == 303, answer.text
        page = await client.get("/ui/connection")
        assert webhook_url(page.text) == f"{BASE_URL}/webhooks/helpscout/acme"


async def test_a_topic_shows_plans_as_its_workspaces_reports_table_says(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, insights_url: str
) -> None:
    """acme's ``[insights.workspaces.acme.reports]`` looks up plans; the default workspace
    has no such table."""
    table = '[insights.workspaces.acme.reports]\nplan = "app.plan"\n'
    settings = web_settings(monkeypatch, tmp_path, database, insights_url, table)
    async with browser(settings) as client:
        acme = await with_acme(client, settings, customer="owner@acme.example")
        await log_in(client)
        default_bug = (await bug_topics(insights_of(client).default))[0]
        page = await client.get(f"/ui/topics/{default_bug}")
        assert "Plans" not in parse_html(page.text).text()
        assert (await switch(client, page, "acme")).status_code == 303
        topic = await client.get(f"/ui/topics/{(await bug_topics(acme))[0]}")
        assert "Pro (1)" in parse_html(topic.text).text()


async def bug_topics(workspace: Any) -> list[int]:
    """The ids of the workspace's bug topics."""
    found = await dashboard.topics(workspace.store, await workspace.trends(), label="bug")
    assert found, "no bug topic"
    return [topic.id for topic in found]
