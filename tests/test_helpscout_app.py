"""Help Scout's app platform, end to end: a signed ``GET`` in, the sidebar's page out.

The contract test covers what every helpdesk owes; this file holds its specifics: the query
signature as PHP's ``json_encode`` writes the message, the page and the headers that let only
Help Scout frame it, and ``customer-id`` resolved through the Mailbox API (the project's fake
Help Scout issues the client-credentials tokens; ``/v2/customers/{id}`` is served here).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from deskside.protocols.helpscout_app import HelpScoutApp, signed_message
from deskside.server import create_app
from fake_helpscout import CLIENT_ID, CLIENT_SECRET, FakeHelpScout
from fake_http import Received, Reply
from helpers import BASE_URL, assert_harmless_html, demo_settings, make_demo_database

pytestmark = pytest.mark.anyio

SECRET = "helpscout_app-test-secret"  # what demo_settings gives the demo's table
PATH = "/helpscout-app"  # the default path of [helpdesks.helpscout_app]
CUSTOMERS = {
    "7001": {"firstName": "Olive", "lastName": "Owner", "emails": ["owner@acme.example"]},
    "7002": {"firstName": "Pat", "lastName": "Patel", "emails": ["PAT@initech.example"]},
    "7003": {"firstName": "No", "lastName": "Mail", "emails": []},
}


def php_signature(secret: str, message: str) -> str:
    """An independent signer: base64 HMAC-SHA1 of the message, as Help Scout computes it."""
    mac = hmac.new(secret.encode(), message.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def signed_query(params: list[tuple[str, str]], message: str, secret: str = SECRET) -> str:
    """``params`` as Help Scout sends them, signed over ``message`` (written out by hand)."""
    signature = php_signature(secret, message)
    pairs = [*params, ("X-HelpScout-Signature", signature)]
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in pairs)


def test_the_published_vector_and_php_json_encode() -> None:
    query = b"conversation-id=123&customer-id=456&mailbox-id=789"
    assert signed_message(query) == (
        b'{"conversation-id":"123","customer-id":"456","mailbox-id":"789"}'
    )
    assert php_signature("my-secret-key", signed_message(query).decode()) == (
        "SNwI6BtgTeMWCfz9eTsIgQDwe+g="
    )
    # In the order received; "/" as "\/", non-ASCII as \uXXXX, "+" a space; no signature.
    query = b"b=%2Fa%2Fb&a=caf%C3%A9+%F0%9F%98%80&X-HelpScout-Signature=x"
    assert signed_message(query) == rb'{"b":"\/a\/b","a":"caf\u00e9 \ud83d\ude00"}'
    assert signed_message(b"") == b"[]"


# ── The page, served ─────────────────────────────────────────────────────────────────────────


@pytest.fixture
def database(tmp_path: Path) -> str:
    return make_demo_database(tmp_path / "demo.db")


@asynccontextmanager
async def served(
    monkeypatch: pytest.MonkeyPatch, tmp: Path, database: str, table: str = ""
) -> AsyncIterator[httpx.AsyncClient]:
    """The demo app (with ``table`` as its ``[helpdesks.helpscout_app]``) behind a client."""
    settings = demo_settings(monkeypatch, tmp, database, sources=table)
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL) as client,
    ):
        yield client


def sidebar_of(page: str) -> str:
    """The part of the page showing the sidebar (the rest is fixed style and script)."""
    match = re.search(r'<div class="hs-sidebar">(.*)</div><script>', page, re.S)
    assert match, page
    return match.group(1)


async def test_a_demo_customer_is_a_page_only_help_scout_may_frame(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    params = [("conversation-id", "123"), ("customer-id", "1001"), ("mailbox-id", "789")]
    message = '{"conversation-id":"123","customer-id":"1001","mailbox-id":"789"}'
    async with served(monkeypatch, tmp_path, database) as client:
        response = await client.get(f"{PATH}?{signed_query(params, message)}")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert "set-cookie" not in response.headers
        assert "x-frame-options" not in response.headers  # it would forbid Help Scout too
        policy = dict(
            part.strip().split(" ", 1)
            for part in response.headers["content-security-policy"].split(";")
        )
        assert policy["frame-ancestors"].split() == [
            "https://secure.helpscout.net",
            "https://*.helpscout.net",
        ]
        assert policy["default-src"] == "'none'"
        page = response.text
        assert page.startswith("<!doctype html>")
        # The page's own style and script are what the policy allows, by hash.
        for tag, directive in (("style", "style-src"), ("script", "script-src")):
            (inline,) = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.S)
            digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
            assert policy[directive] == f"'sha256-{digest}'"
        assert "<h4>Acme HR</h4>" in sidebar_of(page)

        # A parameter changed after signing is refused; so is a signature in a header only.
        tampered = signed_query(params, message).replace("customer-id=1001", "customer-id=1002")
        assert (await client.get(f"{PATH}?{tampered}")).status_code == 401
        query = "&".join(f"{n}={v}" for n, v in params)
        header = {"X-HelpScout-Signature": php_signature(SECRET, message)}
        assert (await client.get(f"{PATH}?{query}", headers=header)).status_code == 401


async def test_customer_data_is_escaped_in_the_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    """The demo's customer 1003 is mallory@evil.example, whose company is an injection."""
    request = HelpScoutApp.example_request(SECRET, ["mallory@evil.example"])
    assert b"customer-id=1003" in request.query and b"email" not in request.query
    async with served(monkeypatch, tmp_path, database) as client:
        response = await client.get(f"{PATH}?{request.query.decode()}")
    assert response.status_code == 200
    assert_harmless_html(sidebar_of(response.text))
    assert response.text.count("<script>") == 1  # the page's own


async def test_without_a_mailbox_api_an_unlisted_customer_is_explained(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    async with served(monkeypatch, tmp_path, database) as client:
        response = await client.get(f"{PATH}?{load('424242')}")
        assert response.status_code == 200
        assert "no Mailbox API app" in sidebar_of(response.text)
        response = await client.get(f"{PATH}?{load('12ab')}")
        assert response.status_code == 400
        assert response.json() == {"error": "`customer-id` must be a number"}


# ── customer-id through the Mailbox API ──────────────────────────────────────────────────────


@pytest.fixture
def helpscout() -> Iterator[FakeHelpScout]:
    """The project's fake Help Scout (tokens), answering ``/v2/customers/{id}`` too."""
    with FakeHelpScout() as fake:
        fake.fault = lambda request: _customer(fake, request)
        yield fake


def _customer(fake: FakeHelpScout, request: Received) -> Reply | None:
    if not request.path.startswith("/v2/customers/"):
        return None  # the fake's own: the token endpoint
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    if token not in fake.valid_access_tokens():
        return Reply.json({"error": "invalid_token"}, status=401)
    found = CUSTOMERS.get(request.path.rsplit("/", 1)[1])
    if found is None:
        return Reply.json({"message": "not found"}, status=404)
    emails = [{"id": i, "value": v, "type": "work"} for i, v in enumerate(found["emails"])]
    names = {"firstName": found["firstName"], "lastName": found["lastName"]}
    return Reply.json({"id": 1, **names, "_embedded": {"emails": emails}})


def api_table(fake: FakeHelpScout) -> str:
    return f"""
[helpdesks.helpscout_app]
secret = "env:HELPSCOUT_APP_SECRET"
app_id = "{CLIENT_ID}"
app_secret = "{CLIENT_SECRET}"
api_url = "{fake.url("")}"
"""


def load(customer_id: str) -> str:
    return signed_query([("customer-id", customer_id)], f'{{"customer-id":"{customer_id}"}}')


async def test_customer_id_is_found_through_the_mailbox_api_and_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, helpscout: FakeHelpScout
) -> None:
    async with served(monkeypatch, tmp_path, database, api_table(helpscout)) as client:
        first = await client.get(f"{PATH}?{load('7001')}")
        again = await client.get(f"{PATH}?{load('7001')}")
        other = await client.get(f"{PATH}?{load('7002')}")  # PAT@… : case is no matter
    assert first.status_code == again.status_code == other.status_code == 200
    assert "<h4>Acme HR</h4>" in sidebar_of(first.text)
    assert "<h4>Acme HR</h4>" in sidebar_of(again.text)
    assert "<h4>Initech</h4>" in sidebar_of(other.text)
    assert len(helpscout.token_requests("client_credentials")) == 1  # one token for all
    asked = [r.path for r in helpscout.api_requests("/v2/customers/")]
    assert asked == ["/v2/customers/7001", "/v2/customers/7002"]  # 7001 once


async def test_an_expired_token_is_replaced_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, helpscout: FakeHelpScout
) -> None:
    async with served(monkeypatch, tmp_path, database, api_table(helpscout)) as client:
        assert (await client.get(f"{PATH}?{load('7001')}")).status_code == 200
        helpscout.expire_access_tokens()
        response = await client.get(f"{PATH}?{load('7002')}")
    assert "<h4>Initech</h4>" in sidebar_of(response.text)
    assert len(helpscout.token_requests("client_credentials")) == 2


async def test_what_the_mailbox_api_cannot_answer_is_said_in_the_page(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, helpscout: FakeHelpScout
) -> None:
    async with served(monkeypatch, tmp_path, database, api_table(helpscout)) as client:
        missing = await client.get(f"{PATH}?{load('9999')}")
        no_mail = await client.get(f"{PATH}?{load('7003')}")
        helpscout.fault = lambda request: Reply.json({"message": "down"}, status=503)
        down = await client.get(f"{PATH}?{load('7002')}")
    assert (missing.status_code, no_mail.status_code, down.status_code) == (200, 200, 200)
    assert "Help Scout has no such customer." in sidebar_of(missing.text)
    assert "no customer email address" in sidebar_of(no_mail.text)
    assert "Mailbox API is unavailable right now" in sidebar_of(down.text)
