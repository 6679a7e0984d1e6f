"""People with roles: the permission table walked route by route and role by role, invitation
links (once, and not after 72 hours), people's API tokens, role changes and removals taking
effect on the next request, sessions that end, and the audit (the store and the commands:
:mod:`test_people_store`)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select, update

from deskside.config import Settings
from deskside.insights.models import Invitation, PersonToken, utcnow
from deskside.insights.people import People
from deskside.server import create_app
from deskside.web.roles import PERMISSIONS, Role
from helpers import BASE_URL, demo_settings
from test_web import NO_INSIGHTS, seed_conversations

pytestmark = pytest.mark.anyio

PASSWORD = "people-admin-password"
PERSON_PASSWORD = "a-person-password"
ADMIN = (
    '[admin]\npassword = "env:DESKSIDE_ADMIN_PASSWORD"\ntoken = "people-admin-token"\n\n[server]\n'
)
ROLES: list[Role | None] = [None, Role.viewer, Role.editor, Role.admin]
ADMIN_ONLY = [
    ("GET", "/ui/people"),
    ("POST", "/ui/people"),
    ("GET", "/ui/connection"),
    ("POST", "/ui/connection/{action}"),
    ("GET", "/ui/setup"),
    ("POST", "/api/insights/forget"),
    ("GET", "/ui/audit"),
    ("GET", "/ui/audit.csv"),
    ("GET", "/api/insights/audit"),
    ("GET", "/insights/helpscout/connect"),
]
"""What the feature asks of an admin: Help Scout's connection, people, erasure, the secrets,
the audit."""
EDITOR_AND_UP = [
    ("POST", "/ui/insights/conversations/{conversation_id}/label"),
    ("POST", "/ui/topics/{topic_id}/merge"),
    ("POST", "/ui/topics/{topic_id}/undo-merge"),
    ("POST", "/ui/reports/{topic_id}/export/github"),
    ("POST", "/api/insights/topics/{topic_id}/split"),
]


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> Settings:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    # Help Scout without an app of deskside's (client_credentials): connecting in the browser
    # answers an admin 400 (not 503 for the demo's missing OAuth app)
    secret = 'webhook_secret = "env:HELPSCOUT_WEBHOOK_SECRET"\n'
    replace = {"[server]\n": ADMIN, secret: secret + 'mode = "client_credentials"\n'}
    return demo_settings(monkeypatch, tmp_path, database, replace=replace)


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[Any, People]]:
    """The real app (lifespan included), once its insights store is open, and its people."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        insights = app.state.insights
        for _ in range(600):
            if insights.ready:
                break
            await asyncio.sleep(0.05)
        assert insights.ready, "the insights store never opened"
        yield app, People(insights.store)


def client_of(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL)


def csrf_of(html: str, name: str = "csrf_token") -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def log_in(client: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    form = await client.get("/ui/login")
    data = {"csrf_token": csrf_of(form.text), "username": username, "password": password}
    return await client.post("/ui/login", data=data)


async def invited(people: People, email: str, role: Role) -> str:
    """Add ``email`` with ``role``; their invitation token."""
    _, token = await people.add(email, role, by="test")
    return token


async def accept(client: httpx.AsyncClient, token: str, password: str) -> httpx.Response:
    page = await client.get("/ui/invitation", params={"token": token})
    data = {"csrf_token": csrf_of(page.text), "password": password, "again": password}
    return await client.post("/ui/invitation", data={**data, "token": token})


async def person_client(app: Any, people: People, email: str, role: Role) -> httpx.AsyncClient:
    """A browser of a person with ``role`` who accepted their invitation (so is logged in)."""
    client = client_of(app)
    answer = await accept(client, await invited(people, email, role), PERSON_PASSWORD)
    assert answer.status_code == 303, answer.text
    return client


async def session_csrf(client: httpx.AsyncClient) -> str:
    return csrf_of((await client.get("/ui/preview")).text)


def concrete(path: str) -> str:
    """A route's path with every parameter filled with a value that names nothing."""
    path = path.replace("{path:path}", "nowhere").replace("{rest:path}", "nowhere")
    return re.sub(
        r"\{[a-z_]+\}", lambda m: "nothing" if m.group() == "{action}" else "999999", path
    )


GUARDED = ("/ui", "/api/insights", "/insights/helpscout")
"""The paths of the web UI, the insights API and Help Scout's authorisation in the browser."""


def guarded_routes(app: Any) -> list[tuple[str, str]]:
    """Every (method, path) of the web UI, the insights API and Help Scout's authorisation the
    app registered (in the routers it included too)."""
    found = []
    pending = list(app.routes)
    while pending:
        route = pending.pop(0)
        included = getattr(route, "original_router", None)  # FastAPI keeps included routers
        if included is not None:
            pending += included.routes
        elif isinstance(route, APIRoute) and route.path.startswith(GUARDED):
            found += [(method, route.path) for method in sorted(route.methods)]
    return found


# ── The permission table ─────────────────────────────────────────────────────────────────────


async def test_every_route_answers_each_role_as_the_table_says(settings: Settings) -> None:
    async with running(settings) as (app, people):
        routes = guarded_routes(app)
        assert set(ADMIN_ONLY + EDITOR_AND_UP) <= set(routes)
        missing = [route for route in routes if route not in PERMISSIONS]
        assert not missing, f"routes without a least role: {missing}"
        assert {route: PERMISSIONS[route] for route in ADMIN_ONLY} == dict.fromkeys(
            ADMIN_ONLY, Role.admin
        )
        assert {route: PERMISSIONS[route] for route in EDITOR_AND_UP} == dict.fromkeys(
            EDITOR_AND_UP, Role.editor
        )
        clients: dict[Role | None, httpx.AsyncClient] = {None: client_of(app)}
        for role in Role:
            clients[role] = await person_client(app, people, f"{role.name}@team.example", role)
        csrf = {role: await session_csrf(clients[role]) for role in Role}
        seen = []
        for method, path in routes:
            least = PERMISSIONS[(method, path)]
            for role in ROLES:
                client = clients[role]
                token = csrf.get(role, "") if role else ""
                answer = await client.request(
                    method,
                    concrete(path),
                    data={"csrf_token": token} if method == "POST" else None,
                    headers={"x-csrf-token": token} if method == "POST" else None,
                )
                where = f"{method} {path} as {role.name if role else 'anonymous'}"
                status = answer.status_code
                seen.append((where, status))
                assert status < 500, where
                if least is None:
                    continue
                if role is None:
                    if not path.startswith("/ui"):
                        assert status == 401, where
                    else:
                        assert status == 303, where
                        assert "/ui/login" in answer.headers["location"], where
                elif role < least:
                    assert status == 403, where
                elif path.startswith("/ui/logout"):  # logged out: the cookie is cleared
                    assert status == 303, where
                    assert "deskside_session=" in answer.headers["set-cookie"], where
                    assert (await client.get("/ui/preview")).status_code == 303
                    await log_in(client, f"{role.name}@team.example", PERSON_PASSWORD)
                    csrf[role] = await session_csrf(client)
                else:
                    assert status not in (401, 403), where
                    assert "/ui/login" not in answer.headers.get("location", ""), where
        assert len(seen) == 4 * len(routes)
        for client in clients.values():
            await client.aclose()


async def test_the_admin_password_and_token_stay_admin(settings: Settings) -> None:
    async with running(settings) as (app, _people), client_of(app) as client:
        for username in ("", "admin", "whoever"):
            answer = await log_in(client, username, PASSWORD)
            assert answer.status_code == 303, username
            assert (await client.get("/ui/people")).status_code == 200
            await client.post("/ui/logout", data={"csrf_token": await session_csrf(client)})
        bearer = {"authorization": "Bearer people-admin-token"}
        forget = await client.post(
            "/api/insights/forget", json={"emails": ["gone@customer.example"]}, headers=bearer
        )
        assert forget.status_code == 200, forget.text


# ── Invitations ──────────────────────────────────────────────────────────────────────────────


async def test_an_invitation_works_once(settings: Settings) -> None:
    async with running(settings) as (app, people), client_of(app) as client:
        token = await invited(people, "Viewer@Team.example", Role.viewer)
        page = await client.get("/ui/invitation", params={"token": token})
        assert page.status_code == 200 and "viewer@team.example" in page.text
        data = {"csrf_token": csrf_of(page.text), "token": token}
        data |= {"password": "short", "again": "short"}
        assert (await client.post("/ui/invitation", data=data)).status_code == 400
        data |= {"password": PERSON_PASSWORD, "again": PERSON_PASSWORD}
        first = await client.post("/ui/invitation", data=data)
        assert first.status_code == 303
        assert (await client.get("/ui/insights")).status_code == 200  # logged in
        data |= {"password": "someone-elses-password", "again": "someone-elses-password"}
        second = await client.post("/ui/invitation", data=data)
        assert second.status_code == 404 and "not valid" in second.text
        assert (await client.get("/ui/invitation", params={"token": token})).status_code == 404
        async with client_of(app) as other:
            refused = await log_in(other, "viewer@team.example", "someone-elses-password")
            assert refused.status_code == 401
            assert (await log_in(other, "VIEWER@team.example", PERSON_PASSWORD)).status_code == 303


async def test_an_expired_invitation_is_refused(settings: Settings) -> None:
    async with running(settings) as (app, people), client_of(app) as client:
        token = await invited(people, "late@team.example", Role.editor)
        async with people.store.session() as session:
            await session.execute(
                update(Invitation).values(expires_at=utcnow() - timedelta(minutes=1))
            )
        page = await client.get("/ui/invitation", params={"token": token})
        assert page.status_code == 404 and "expired" in page.text
        assert (await accept_blind(client, token)).status_code == 404
        assert (await log_in(client, "late@team.example", PERSON_PASSWORD)).status_code == 401
        # valid for 72 hours
        fresh = await invited(people, "fresh@team.example", Role.editor)
        async with people.store.read() as session:
            expires = max(row.expires_at for row in await session.scalars(select(Invitation)))
        assert timedelta(hours=71) < expires - utcnow() <= timedelta(hours=72)
        assert (await client.get("/ui/invitation", params={"token": fresh})).status_code == 200


async def accept_blind(client: httpx.AsyncClient, token: str) -> httpx.Response:
    """Post a password to an invitation without its page (as a replayed form would)."""
    form = await client.get("/ui/login")
    data = {"csrf_token": csrf_of(form.text), "password": PERSON_PASSWORD, "again": PERSON_PASSWORD}
    return await client.post("/ui/invitation", data={**data, "token": token})


# ── Tokens, role changes, sessions, the audit ──────────────────────────────────────────────


async def test_a_persons_token_has_their_role_until_revoked(settings: Settings) -> None:
    async with running(settings) as (app, people), client_of(app) as client:
        await invited(people, "bot@team.example", Role.viewer)
        token_id, token = await people.create_token("bot@team.example", "ci", by="test")
        bearer = {"authorization": f"Bearer {token}"}
        assert (await client.get("/api/insights/overview", headers=bearer)).status_code == 200
        rename = await client.post(
            "/api/insights/topics/999999/rename", json={"name": "x"}, headers=bearer
        )
        assert rename.status_code == 403
        await people.set_role("bot@team.example", Role.editor, by="test")
        rename = await client.post(
            "/api/insights/topics/999999/rename", json={"name": "x"}, headers=bearer
        )
        assert rename.status_code == 404  # allowed now; there is no such topic
        forged = {"authorization": f"Bearer {token[:-2]}xx"}
        assert (await client.get("/api/insights/overview", headers=forged)).status_code == 401
        await people.revoke_token(token_id, by="test")
        assert (await client.get("/api/insights/overview", headers=bearer)).status_code == 401
        async with people.store.read() as session:
            stored = [row.digest for row in await session.scalars(select(PersonToken))]
        assert token not in stored and all(len(digest) == 64 for digest in stored)


async def test_role_changes_and_removal_take_effect_on_the_next_request(
    settings: Settings,
) -> None:
    async with running(settings) as (app, people):
        editor = await person_client(app, people, "ed@team.example", Role.editor)
        await seed_conversations(editor, settings)
        topics = await editor.get("/ui/insights")
        assert topics.status_code == 200 and 'class="relabel"' in topics.text
        await people.set_role("ed@team.example", Role.viewer, by="test")
        page = await editor.get("/ui/insights")
        assert page.status_code == 200 and 'class="relabel"' not in page.text
        csrf = csrf_of(page.text)
        relabel = await editor.post(
            "/ui/insights/conversations/1/label", data={"csrf_token": csrf, "label": "bug"}
        )
        assert relabel.status_code == 403 and "needs the editor role" in relabel.text
        await people.remove("ed@team.example", by="test")
        gone = await editor.get("/ui/insights")
        assert gone.status_code == 303 and "/ui/login" in gone.headers["location"]
        await editor.aclose()


async def test_log_out_everywhere_ends_every_session_of_the_person(settings: Settings) -> None:
    async with running(settings) as (app, people):
        first = await person_client(app, people, "two@team.example", Role.viewer)
        async with client_of(app) as second:
            assert (await log_in(second, "two@team.example", PERSON_PASSWORD)).status_code == 303
            assert (await second.get("/ui/preview")).status_code == 200
            csrf = await session_csrf(first)
            ended = await first.post("/ui/logout/everywhere", data={"csrf_token": csrf})
            assert ended.status_code == 303
            assert (await second.get("/ui/preview")).status_code == 303
        await first.aclose()


async def test_the_session_cookie_is_private(settings: Settings) -> None:
    async with running(settings) as (app, people):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://plain.test")
        token = await invited(people, "cookie@team.example", Role.viewer)
        answer = await accept(client, token, PERSON_PASSWORD)
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "secure" not in cookie
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="https://deskside.test"
        ) as secure:
            again = await log_in(secure, "cookie@team.example", PERSON_PASSWORD)
            assert "secure" in again.headers["set-cookie"].lower()
        await client.aclose()


async def test_the_audit_says_who_did_what_without_customers_data(settings: Settings) -> None:
    async with running(settings) as (app, people), client_of(app) as client:
        assert (await log_in(client, "", "wrong-password")).status_code == 401
        assert (await log_in(client, "admin", PASSWORD)).status_code == 303
        csrf = await session_csrf(client)
        added = await client.post(
            "/ui/people", data={"csrf_token": csrf, "email": "new@team.example", "role": "editor"}
        )
        assert added.status_code == 200
        link = re.search(r'<code id="shown-value">([^<]+)</code>', added.text)
        assert link and link.group(1).startswith(f"{BASE_URL}/ui/invitation?token=")
        person = next(p for p in await people.listed() if p.email == "new@team.example")
        changed = await client.post(
            f"/ui/people/{person.id}/role", data={"csrf_token": csrf, "role": "viewer"}
        )
        assert changed.status_code == 303
        made = await client.post(
            f"/ui/people/{person.id}/token", data={"csrf_token": csrf, "name": "ci"}
        )
        assert made.status_code == 200 and "dsk_" in made.text
        (listed,) = await people.tokens()
        revoked = await client.post(f"/ui/tokens/{listed.id}/revoke", data={"csrf_token": csrf})
        assert revoked.status_code == 303
        await client.post(
            "/api/insights/forget",
            json={"emails": ["customer@customer.example"]},
            headers={"x-csrf-token": csrf},
        )
        actions = [(row.actor, row.action) for row in await people.audit()]
        assert [action for _actor, action in reversed(actions)] == [
            "login_failed",
            "login",
            "person_added",
            "role_changed",
            "token_created",
            "token_revoked",
        ]
        assert all(actor == "ui:admin" for actor, _action in actions[:5])
        page = await client.get("/ui/people")
        assert "role_changed: person" in page.text and "new@team.example" in page.text
        assert "customer@customer.example" not in page.text


async def test_without_insights_the_admin_password_is_the_only_way_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    replace = {"[server]\n": ADMIN, **NO_INSIGHTS}
    settings = demo_settings(monkeypatch, tmp_path, database, replace=replace)
    app = create_app(settings)
    async with app.router.lifespan_context(app), client_of(app) as client:
        assert (await log_in(client, "someone@team.example", PASSWORD)).status_code == 303
        people = await client.get("/ui/people")
        assert people.status_code == 404
        assert "People and roles are kept in the insights store" in people.text
        assert 'href="/ui/people"' not in (await client.get("/ui/preview")).text


SESSION_SECRET = "people-session-secret"


def sealed_session(document: dict[str, Any], secret: str = SESSION_SECRET) -> str:
    """A session cookie as the server signs it, signed here independently: unpadded URL-safe
    base64 JSON, a dot, HMAC-SHA256 of ``session.<payload>`` under a key derived from
    ``[admin] session_secret``."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    key = hmac.new(secret.encode(), b"deskside session key v1", hashlib.sha256).digest()
    payload = b64(json.dumps(document, separators=(",", ":")).encode())
    signature = b64(hmac.new(key, f"session.{payload}".encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


async def test_a_session_ends_when_idle_or_of_an_older_generation(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    admin = ADMIN.replace("\n\n[server]", f'\nsession_secret = "{SESSION_SECRET}"\n\n[server]')
    settings = demo_settings(monkeypatch, tmp_path, database, replace={"[server]\n": admin})
    async with running(settings) as (app, people):
        await (await person_client(app, people, "idle@team.example", Role.viewer)).aclose()
        (person,) = await people.listed()
        now = time.time()
        session = {"e": now + 3600, "c": "csrf-token", "p": person.id, "g": 1, "s": now - 600}
        cases = {
            "used 10 minutes ago": (session, SESSION_SECRET, 200),
            "unused for 3 hours": ({**session, "s": now - 3 * 3600}, SESSION_SECRET, 303),
            "before the invitation was used": ({**session, "g": 0}, SESSION_SECRET, 303),
            "expired": ({**session, "e": now - 1}, SESSION_SECRET, 303),
            "signed with another key": (session, "another-secret", 303),
        }
        for case, (document, secret, status) in cases.items():
            async with client_of(app) as client:
                client.cookies.set("deskside_session", sealed_session(document, secret))
                answer = await client.get("/ui/preview")
                assert answer.status_code == status, case
                if status == 200:  # its last use is renewed
                    renewed = answer.headers["set-cookie"]
                    assert renewed.startswith("deskside_session=") and "httponly" in renewed.lower()
