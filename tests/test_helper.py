"""Helper (docs/protocols.md §4): the customer-info request and the widget identity, end to end.

Every request goes through the real app over the demo database. Signatures come from the
small signer below (hmac + base64, written from docs/protocols.md) and from the documented vectors,
never from deskside's own signing code.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import sqlite3
import string
import time
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from prometheus_client import REGISTRY

from deskside.cache import MemoryCache
from deskside.config import Settings, load_settings
from deskside.errors import Unauthorized
from deskside.protocols.base import RawRequest
from deskside.protocols.helper import Helper, HelperConfig, widget_identity
from deskside.server import create_app
from helpers import add_customer, demo_config_text, serve

pytestmark = pytest.mark.anyio

HELPER_SECRET = "helper-test-secret"
IDENTITY_TOKEN = "identity-test-token"

VECTOR_SECRET = "testSecret"
VECTOR_QUERY = "email=user%40example.com&timestamp=1672534800"
VECTOR_SIGNATURE = "AMeZkbMvdAoagGE8kMKukMyvrl+OSOWAjzXteDEjoxY="

WIDGET_SECRET = "9cff9d28-7333-4e29-8f01-c2945f1a887f"
WIDGET_HASH = "ae1567928715af2397f581b3978f25ee2bebd7204ed9aeb4ce96440cfecfdf6b"


# ── Independent signers and encoders ──────────────────────────────────────────────────────────


def helper_signature(secret: str, query: str | bytes) -> str:
    """Standard base64 of HMAC-SHA256 over the query string exactly as sent."""
    raw = query.encode() if isinstance(query, str) else query
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def email_hash(secret: str, email: str, timestamp_ms: int) -> str:
    """Lower-case hex HMAC-SHA256 of ``email:timestamp`` (the widget's ``emailHash``)."""
    message = f"{email}:{timestamp_ms}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


_URLSEARCHPARAMS_SAFE = frozenset(string.ascii_letters + string.digits + "*-._")


def url_search_params(pairs: Iterable[tuple[str, str]]) -> str:
    """What JavaScript's ``new URLSearchParams(pairs).toString()`` gives (WHATWG
    application/x-www-form-urlencoded): ``*-._`` and alphanumerics stay, a space becomes
    ``+``, every other byte of the UTF-8 is ``%XX`` (so ``~`` → ``%7E``, ``+`` → ``%2B``)."""

    def encode(text: str) -> str:
        out = []
        for byte in text.encode():
            char = chr(byte)
            if char == " ":
                out.append("+")
            elif char in _URLSEARCHPARAMS_SAFE:
                out.append(char)
            else:
                out.append(f"%{byte:02X}")
        return "".join(out)

    return "&".join(f"{encode(key)}={encode(value)}" for key, value in pairs)


def now() -> int:
    return int(time.time())


def js_query(email: str, timestamp: int | str | None = None) -> str:
    stamp = now() if timestamp is None else timestamp
    return url_search_params([("email", email), ("timestamp", str(stamp))])


def bearer(query: str, secret: str = HELPER_SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {helper_signature(secret, query)}"}


async def get_helper(
    client: httpx.AsyncClient, query: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """``GET /helper?query``, signed by default; the query string travels untouched."""
    url = f"/helper?{query}" if query else "/helper"
    return await client.get(url, headers=bearer(query) if headers is None else headers)


async def customer_info(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await get_helper(client, js_query(email))
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


# ── The demo app ──────────────────────────────────────────────────────────────────────────────


def helper_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: str,
    *,
    helper: str = "",
    identity: bool = True,
    fold_plus: bool = True,
) -> Settings:
    """The demo config on ``database``, with extra lines for ``[helpdesks.helper]``."""
    for env, value in {
        "DESKSIDE_DEMO_DATABASE_URL": database,
        "HELPSCOUT_SECRET": "hs-unused",
        "THERETHERE_SECRET": "tt-unused",
        "HELPER_SECRET": HELPER_SECRET,
        "HELPER_IDENTITY_TOKEN": IDENTITY_TOKEN,
        "PLAIN_SECRET": "plain-unused",
        "CARD_SECRET": "card-unused",
    }.items():
        monkeypatch.setenv(env, value)
    text = demo_config_text()
    anchor = 'secret = "env:HELPER_SECRET"'
    assert anchor in text
    text = text.replace(anchor, f"{anchor}\n{helper}", 1)
    if not fold_plus:
        text, count = re.subn(
            r"(?m)^fold_plus_addressing = true", "fold_plus_addressing = false", text
        )
        assert count == 1
    if not identity:
        text, count = re.subn(r"(?m)^identity_token = .*$", "", text)
        assert count == 1
    path = tmp_path / "deskside.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


@pytest.fixture
async def client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(helper_settings(monkeypatch, tmp_path, database)) as client:
        yield client


def add_membership(database: str, email: str, name: str, company_id: int) -> None:
    """Make ``email`` a member of one more demo company (plain sqlite3)."""
    with sqlite3.connect(database.removeprefix("sqlite:///")) as connection:
        connection.execute(
            "insert into users (email, name, role, is_owner, company_id) values (?, ?, ?, ?, ?)",
            (email, name, "owner", 1, company_id),
        )


# ── The documented vector ─────────────────────────────────────────────────────────────────────


def vector_protocol(secret: str = VECTOR_SECRET) -> Helper:
    config = HelperConfig.model_validate({"kind": "helper", "secret": secret})
    return Helper("helper", config)


def raw_get(query: str, authorization: str | None) -> RawRequest:
    headers = {} if authorization is None else {"authorization": authorization}
    return RawRequest(method="GET", body=b"", query=query.encode(), headers=headers)


def test_vector_signature_is_accepted_by_helper_verify_and_only_its_age_refused() -> None:
    """The vector is from 2023: its signature passes, then the replay window refuses it.

    (The window is capped at a day, so the vector cannot pass as a whole without faking the
    clock; the live tests below send the same kind of request with a current timestamp.)
    """
    request = raw_get(VECTOR_QUERY, f"Bearer {VECTOR_SIGNATURE}")
    with pytest.raises(Unauthorized) as refused:
        vector_protocol().verify(request)
    assert "replay window" in refused.value.reason

    with pytest.raises(Unauthorized) as wrong_secret:
        vector_protocol("notTheSecret").verify(request)
    assert "does not match" in wrong_secret.value.reason


def test_a_current_request_signed_like_the_vector_passes_helper_verify() -> None:
    query = f"email=user%40example.com&timestamp={now()}"
    vector_protocol().verify(raw_get(query, f"Bearer {helper_signature(VECTOR_SECRET, query)}"))


def test_the_replay_window_cannot_be_configured_past_a_day() -> None:
    with pytest.raises(ValueError, match="replay_window_seconds"):
        HelperConfig.model_validate(
            {"kind": "helper", "secret": "s", "replay_window_seconds": 10**9}
        )


# ── Signatures over the raw query string ──────────────────────────────────────────────────────


def test_url_search_params_encoder_matches_the_whatwg_rules() -> None:
    assert url_search_params([("email", "a+b~c*d e@x.com")]) == "email=a%2Bb%7Ec*d+e%40x.com"
    assert urlencode({"email": "a+b~c*d e@x.com"}) == "email=a%2Bb~c%2Ad+e%40x.com"


async def test_owner_is_found_with_a_current_signed_request(client: httpx.AsyncClient) -> None:
    document = await customer_info(client, "owner@acme.example")
    assert document["success"] is True
    assert document["customer"]["name"] == "Olivia Owner"


async def test_javascript_encoded_query_verifies_over_the_raw_string_and_finds_the_customer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    add_customer(database, "a+b~c*d@example.com", company="Tilde Star Ltd", name="Ada Tilde")
    add_customer(database, "a@example.com", company="Zulu Base Co", name="Ada Base")
    # A space around the address (URLSearchParams writes it as "+") is not part of it;
    # the real "+" in the address travels as %2B.
    query = js_query(" A+b~c*d@Example.com ")
    assert "%7E" in query and "*" in query and "%2B" in query and query.startswith("email=+")
    python_query = urlencode({"email": " A+b~c*d@Example.com ", "timestamp": now()})
    assert python_query != query  # the two encoders really differ for this address

    settings = helper_settings(monkeypatch, tmp_path, database)
    async with serve(settings) as client:
        response = await get_helper(client, query)
        assert response.status_code == 200, response.text
        customer = response.json()["customer"]
        assert customer["name"] == "Ada Tilde"
        # Plus-folding also looked up a@example.com: both accounts are shown.
        accounts = customer["metadata"]["Accounts"]
        assert [account["Account"] for account in accounts] == [
            "Tilde Star Ltd",
            "Zulu Base Co",
        ]

        # The same query signed the Python way does not verify: nothing is re-encoded.
        response = await get_helper(client, query, bearer(python_query))
        assert response.status_code == 401


async def test_python_urlencoded_query_verifies_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    add_customer(database, "a+b~c*d@example.com", company="Tilde Star Ltd", name="Ada Tilde")
    query = urlencode({"email": "a+b~c*d@example.com", "timestamp": now()})
    assert "~" in query and "%2A" in query
    async with serve(helper_settings(monkeypatch, tmp_path, database)) as client:
        response = await get_helper(client, query)
        assert response.status_code == 200, response.text
        assert response.json()["customer"]["metadata"]["Account"] == "Tilde Star Ltd"

        response = await get_helper(client, query, bearer(js_query("a+b~c*d@example.com")))
        assert response.status_code == 401


async def test_parameters_in_any_order_verify(client: httpx.AsyncClient) -> None:
    query = url_search_params([("timestamp", str(now())), ("email", "owner@acme.example")])
    response = await get_helper(client, query)
    assert response.status_code == 200
    assert response.json()["customer"]["value"] == 24900


# ── Replays, timestamps and the Authorization header ──────────────────────────────────────────


@pytest.mark.parametrize("age", [-600, 600, 303, -303])  # a second of slack: now() truncates
async def test_a_request_outside_the_default_window_is_refused(
    client: httpx.AsyncClient, age: int
) -> None:
    response = await get_helper(client, js_query("owner@acme.example", now() - age))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid signature"}


@pytest.mark.parametrize("age", [-240, 0, 240])
async def test_a_request_inside_the_default_window_is_answered(
    client: httpx.AsyncClient, age: int
) -> None:
    response = await get_helper(client, js_query("owner@acme.example", now() - age))
    assert response.status_code == 200
    assert response.json()["customer"]["name"] == "Olivia Owner"


async def test_the_replay_window_is_configurable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = helper_settings(
        monkeypatch, tmp_path, database, helper="replay_window_seconds = 3600"
    )
    async with serve(settings) as client:
        ten_minutes_old = await get_helper(client, js_query("owner@acme.example", now() - 600))
        assert ten_minutes_old.status_code == 200
        two_hours_old = await get_helper(client, js_query("owner@acme.example", now() - 7200))
        assert two_hours_old.status_code == 401


@pytest.mark.parametrize(
    "query",
    [
        "email=owner%40acme.example",
        "email=owner%40acme.example&timestamp=",
        "email=owner%40acme.example&timestamp=soon",
        "email=owner%40acme.example&timestamp=-5",
        "email=owner%40acme.example&timestamp=1.7e9",
        "email=owner%40acme.example&timestamp=%EF%BC%91%EF%BC%92",  # full-width digits
        "email=owner%40acme.example&timestamp=99999999999999999999999",
        "email=owner%40acme.example&timestamp=0",
    ],
)
async def test_a_missing_or_garbage_timestamp_is_refused(
    client: httpx.AsyncClient, query: str
) -> None:
    response = await get_helper(client, query)  # correctly signed, but no usable time
    assert response.status_code == 401


async def test_a_millisecond_timestamp_is_refused(client: httpx.AsyncClient) -> None:
    response = await get_helper(client, js_query("owner@acme.example", now() * 1000))
    assert response.status_code == 401


def _digest(query: str) -> bytes:
    return base64.b64decode(helper_signature(HELPER_SECRET, query))


BAD_AUTHORIZATIONS: dict[str, Callable[[str], dict[str, str]]] = {
    "missing": lambda q: {},
    "empty": lambda q: {"Authorization": ""},
    "no scheme": lambda q: {"Authorization": helper_signature(HELPER_SECRET, q)},
    "basic": lambda q: {"Authorization": f"Basic {helper_signature(HELPER_SECRET, q)}"},
    "bearer alone": lambda q: {"Authorization": "Bearer"},
    "bearer empty": lambda q: {"Authorization": "Bearer "},
    "wrong secret": lambda q: {"Authorization": f"Bearer {helper_signature('wrong', q)}"},
    "hex": lambda q: {"Authorization": f"Bearer {_digest(q).hex()}"},
    "truncated": lambda q: {"Authorization": f"Bearer {helper_signature(HELPER_SECRET, q)[:-4]}"},
    "other query": lambda q: {
        "Authorization": f"Bearer {helper_signature(HELPER_SECRET, q + '&x=1')}"
    },
    "other header": lambda q: {"X-Signature": helper_signature(HELPER_SECRET, q)},
}


@pytest.mark.parametrize("case", BAD_AUTHORIZATIONS)
async def test_a_missing_or_wrong_authorization_is_refused(
    client: httpx.AsyncClient, case: str
) -> None:
    query = js_query("owner@acme.example")
    response = await get_helper(client, query, BAD_AUTHORIZATIONS[case](query))
    assert response.status_code == 401
    assert response.json() == {"error": "invalid signature"}


async def test_the_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient) -> None:
    query = js_query("owner@acme.example")
    headers = {"authorization": f"bearer {helper_signature(HELPER_SECRET, query)}"}
    response = await get_helper(client, query, headers)
    assert response.status_code == 200


# ── The answer ────────────────────────────────────────────────────────────────────────────────


async def test_the_answer_has_helpers_customer_shape(client: httpx.AsyncClient) -> None:
    document = await customer_info(client, "owner@acme.example")
    assert set(document) == {"success", "customer"}
    assert document["success"] is True
    customer = document["customer"]
    assert set(customer) == {"name", "value", "metadata", "actions"}
    assert customer["name"] == "Olivia Owner"
    assert customer["value"] == 24900 and type(customer["value"]) is int
    assert customer["actions"] == {
        "Open in admin": "https://admin.hr-demo.example/companies/1",
        "Stripe dashboard": "https://dashboard.stripe.com/customers/cus_demo0001",
    }
    metadata = customer["metadata"]
    assert metadata["Account"] == "Acme HR"
    assert metadata["Status"] == ["Pro", "Owner"]
    assert metadata["MRR"] == 249 and isinstance(metadata["MRR"], int | float)
    assert metadata["Employees"] == "42 / 50"
    assert metadata["Billing"] == {"Subscription": "active", "Stripe customer": "cus_demo0001"}
    assert "Trial ends" not in metadata and "Over the limit" not in metadata


async def test_metadata_values_are_typed_json(client: httpx.AsyncClient) -> None:
    owner = (await customer_info(client, "owner@acme.example"))["customer"]["metadata"]
    renews = datetime.strptime(owner["Renews"], "%Y-%m-%d").date()
    assert renews > datetime.now(UTC).date()
    last_seen = owner["Account details"]["Last seen"]
    assert last_seen.endswith("Z")
    assert datetime.fromisoformat(last_seen).tzinfo is not None

    mallory = (await customer_info(client, "mallory@evil.example"))["customer"]["metadata"]
    assert mallory["Over the limit"] is True

    lapsed = (await customer_info(client, "lapsed@globex.example"))["customer"]
    assert lapsed["value"] == 0
    assert "Trial expired" in lapsed["metadata"]["Status"]
    assert datetime.fromisoformat(lapsed["metadata"]["Trial ends"]) < datetime.now(UTC)


@pytest.mark.parametrize(
    "query",
    [
        "email=nobody%40nowhere.example",
        "email=not-an-address",
        "email=",
        "timestamp_only=1",
    ],
)
async def test_nobody_found_is_exactly_success(client: httpx.AsyncClient, query: str) -> None:
    query = f"{query}&timestamp={now()}"
    response = await get_helper(client, query)
    assert response.status_code == 200
    assert response.json() == {"success": True}


async def test_lookup_is_case_insensitive(client: httpx.AsyncClient) -> None:
    document = await customer_info(client, "  OWNER@Acme.Example ")
    assert document["customer"]["value"] == 24900


async def test_two_companies_are_both_in_the_metadata(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    add_membership(database, "pat@initech.example", "Pat Patel", company_id=4)  # Initrode
    async with serve(helper_settings(monkeypatch, tmp_path, database)) as client:
        customer = (await customer_info(client, "pat@initech.example"))["customer"]
    assert customer["name"] == "Pat Patel"
    accounts = customer["metadata"]["Accounts"]
    assert [account["Account"] for account in accounts] == ["Initech", "Initrode"]
    assert [account["MRR"] for account in accounts] == [599, 49]
    assert customer["actions"]["Open in admin (Initech)"].endswith("/companies/3")
    assert customer["actions"]["Open in admin (Initrode)"].endswith("/companies/4")


async def test_injection_payloads_stay_plain_strings(client: httpx.AsyncClient) -> None:
    response = await get_helper(client, js_query("mallory@evil.example"))
    customer = response.json()["customer"]
    assert (
        customer["name"] == "<img src=x onerror=alert(1)> [click](javascript:alert(1)) **Mallory**"
    )
    assert customer["metadata"]["Account"] == (
        '"><script>alert("xss")</script> [Evil Corp](https://evil.example) _Ltd_'
    )
    assert "&lt;" not in response.text and "&amp;" not in response.text  # not HTML-escaped
    for label, url in customer["actions"].items():
        assert url.startswith("https://"), (label, url)
        assert "javascript:" not in url.lower()


# ── Widget identity ───────────────────────────────────────────────────────────────────────────


def test_widget_identity_vector() -> None:
    expected = email_hash(WIDGET_SECRET, "customer@example.com", 1693324800000)
    assert expected == WIDGET_HASH
    identity = widget_identity(WIDGET_SECRET, "customer@example.com", timestamp_ms=1693324800000)
    assert identity == {
        "email": "customer@example.com",
        "timestamp": 1693324800000,
        "emailHash": WIDGET_HASH,
    }


def identity_headers(token: str = IDENTITY_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


async def test_identity_for_a_known_customer(client: httpx.AsyncClient) -> None:
    body = json.dumps({"email": "owner@acme.example"})
    response = await client.post("/helper/identity", content=body, headers=identity_headers())
    assert response.status_code == 200, response.text
    identity = response.json()
    assert set(identity) == {"email", "timestamp", "emailHash", "customerMetadata"}
    assert identity["email"] == "owner@acme.example"
    assert abs(identity["timestamp"] - time.time() * 1000) < 60_000
    expected = email_hash(HELPER_SECRET, identity["email"], identity["timestamp"])
    assert identity["emailHash"] == expected
    assert identity["customerMetadata"] == {
        "name": "Olivia Owner",
        "value": 24900,
        "links": {
            "Open in admin": "https://admin.hr-demo.example/companies/1",
            "Stripe dashboard": "https://dashboard.stripe.com/customers/cus_demo0001",
        },
    }


@pytest.mark.parametrize("fold_plus", [True, False])
async def test_identity_follows_the_plus_folding_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, fold_plus: bool
) -> None:
    """The widget's metadata is looked up like Helper's own request for the same address."""
    settings = helper_settings(monkeypatch, tmp_path, database, fold_plus=fold_plus)
    body = json.dumps({"email": "owner+widget@acme.example"})
    async with serve(settings) as client:
        info = await customer_info(client, "owner+widget@acme.example")
        response = await client.post("/helper/identity", content=body, headers=identity_headers())
    assert response.status_code == 200
    identity = response.json()
    assert identity["email"] == "owner+widget@acme.example"
    assert ("customer" in info) is fold_plus
    assert ("customerMetadata" in identity) is fold_plus


async def test_identity_for_an_unknown_customer_has_no_metadata(
    client: httpx.AsyncClient,
) -> None:
    body = json.dumps({"email": "new.user@example.com"})
    response = await client.post("/helper/identity", content=body, headers=identity_headers())
    assert response.status_code == 200
    identity = response.json()
    assert set(identity) == {"email", "timestamp", "emailHash"}
    assert identity["emailHash"] == email_hash(
        HELPER_SECRET, "new.user@example.com", identity["timestamp"]
    )


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": IDENTITY_TOKEN},
        {"Authorization": f"Basic {IDENTITY_TOKEN}"},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {IDENTITY_TOKEN}x"},
        {"Authorization": f"Bearer {HELPER_SECRET}"},  # the signing secret is not a token
    ],
)
async def test_identity_needs_the_bearer_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = json.dumps({"email": "owner@acme.example"})
    response = await client.post("/helper/identity", content=body, headers=headers)
    assert response.status_code == 401
    assert "emailHash" not in response.text


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'"owner@acme.example"',
        b"{}",
        b'{"email": null}',
        b'{"email": 5}',
        b'{"email": ["owner@acme.example"]}',
        b'{"email": "not an address"}',
        b'{"email": ""}',
        b"[" * 5000 + b"]" * 5000,
    ],
)
async def test_identity_with_a_bad_body_is_400(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/helper/identity", content=body, headers=identity_headers())
    assert response.status_code in (400, 413)
    if len(body) <= 4096:
        assert response.status_code == 400


async def test_identity_with_a_too_large_body_is_413(client: httpx.AsyncClient) -> None:
    body = json.dumps({"email": "owner@acme.example", "pad": "x" * 10_000}).encode()
    response = await client.post("/helper/identity", content=body, headers=identity_headers())
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(10):
            yield b" " * 1000

    response = await client.post("/helper/identity", content=chunks(), headers=identity_headers())
    assert response.status_code == 413


async def test_identity_only_takes_post(client: httpx.AsyncClient) -> None:
    response = await client.get("/helper/identity", headers=identity_headers())
    assert response.status_code == 405


async def test_identity_endpoint_does_not_exist_without_a_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = helper_settings(monkeypatch, tmp_path, database, identity=False)
    helper = settings.helpdesks["helper"]
    assert isinstance(helper, HelperConfig) and not helper.identity_token
    body = json.dumps({"email": "owner@acme.example"})
    async with serve(settings) as client:
        response = await client.post("/helper/identity", content=body, headers=identity_headers())
        assert response.status_code in (404, 405)
        # The customer-info endpoint itself still works.
        assert (await customer_info(client, "owner@acme.example"))["customer"]["value"] == 24900


# ── Malformed input never breaks the server ───────────────────────────────────────────────────


async def _asgi_get(app: Any, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """One GET straight into the ASGI app, with query bytes no HTTP client would send."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"deskside.test"), *headers],
        "client": ("127.0.0.1", 1234),
        "server": ("deskside.test", 443),
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


MALFORMED_QUERIES = [
    b"",
    b"email",
    b"%",
    b"%zz=%zz",
    b"email=%ff%fe",
    b"email=\xff\xfe",
    b"email=owner%40acme.example&email=x%40y.example",
    b"&&&&==&&",
    b"x=1&" * 60,
    b"email=" + b"a" * 5000 + b"%40example.com",
    b"email=a%00b%40example.com",
]


@pytest.mark.parametrize("query", MALFORMED_QUERIES)
async def test_malformed_queries_are_never_a_server_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, query: bytes
) -> None:
    app = create_app(helper_settings(monkeypatch, tmp_path, database))
    timestamp = f"&timestamp={now()}".encode()
    signed = query + timestamp
    unsigned_status = await _asgi_get(app, "/helper", query, [])
    assert unsigned_status == 401
    bearer_header = f"Bearer {helper_signature(HELPER_SECRET, signed)}".encode()
    signed_status = await _asgi_get(app, "/helper", signed, [(b"authorization", bearer_header)])
    assert signed_status in (200, 400), signed_status
    await app.state.service.aclose()


async def test_a_signed_query_with_too_many_fields_is_a_400(client: httpx.AsyncClient) -> None:
    query = f"timestamp={now()}&email=owner%40acme.example&" + "&".join(
        f"x{i}=1" for i in range(30)
    )
    response = await get_helper(client, query)
    assert response.status_code == 400


async def test_a_body_on_the_customer_info_route_is_refused_when_huge(
    client: httpx.AsyncClient,
) -> None:
    query = js_query("owner@acme.example")
    huge = await client.request(
        "GET", f"/helper?{query}", content=b"x" * 200_000, headers=bearer(query)
    )
    assert huge.status_code == 413


# ── Replays ───────────────────────────────────────────────────────────────────────────────────


def cached_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, cache: str
) -> Settings:
    """The Helper settings with ``cache = …`` (``memory`` or a Redis URL) at the top."""
    helper_settings(monkeypatch, tmp_path, database)
    path = tmp_path / "deskside.toml"
    path.write_text(f'cache = "{cache}"\n' + path.read_text(encoding="utf-8"), encoding="utf-8")
    return load_settings(path)


@pytest.fixture(params=["memory", "redis"])
def cache_url(request: pytest.FixtureRequest) -> str:
    """Where the replay memory lives: in the process, or in a real (emptied) Redis."""
    return "memory" if request.param == "memory" else str(request.getfixturevalue("redis_url"))


async def test_a_replayed_request_is_refused_and_a_fresh_one_answered(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, cache_url: str
) -> None:
    def replays_counted() -> float:
        labels = {"helpdesk": "helper", "reason": "replayed"}
        return REGISTRY.get_sample_value("deskside_signature_failures_total", labels) or 0.0

    counted = replays_counted()
    stamp = now()
    query = js_query("owner@acme.example", stamp)
    async with serve(cached_settings(monkeypatch, tmp_path, database, cache_url)) as client:
        first = await get_helper(client, query)
        replayed = await get_helper(client, query)
        fresh = await get_helper(client, js_query("owner@acme.example", stamp + 1))
        # Written differently, the same signature is still the same request.
        signature = helper_signature(HELPER_SECRET, query)
        padded = await get_helper(client, query, {"Authorization": f"bearer  {signature} "})
    assert first.status_code == 200, first.text
    assert first.json()["customer"]["name"] == "Olivia Owner"
    assert (replayed.status_code, replayed.json()) == (401, {"error": "invalid signature"})
    assert fresh.status_code == 200, fresh.text
    assert padded.status_code == 401
    assert replays_counted() - counted == 2  # for the metrics, apart from forged signatures


async def test_a_refused_request_does_not_use_up_its_query(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    query = js_query("owner@acme.example")
    async with serve(helper_settings(monkeypatch, tmp_path, database)) as client:
        forged = await get_helper(client, query, bearer(query, "a guessed secret"))
        genuine = await get_helper(client, query)
    assert forged.status_code == 401
    assert genuine.status_code == 200, genuine.text


async def test_replays_are_refused_across_replicas_sharing_redis(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, redis_url: str
) -> None:
    settings = cached_settings(monkeypatch, tmp_path, database, redis_url)
    query = js_query("owner@acme.example")
    async with serve(settings) as one, serve(settings) as other:
        first = await get_helper(one, query)
        replayed = await get_helper(other, query)
        elsewhere = await get_helper(other, js_query("hr@acme.example"))
    assert first.status_code == 200, first.text
    assert replayed.status_code == 401
    assert elsewhere.status_code == 200, elsewhere.text


async def test_two_helper_endpoints_remember_their_own_requests() -> None:
    config = vector_protocol().config
    one, other = Helper("helper", config), Helper("helper_eu", config)
    query = f"email=user%40example.com&timestamp={now()}"
    request = raw_get(query, f"Bearer {helper_signature(VECTOR_SECRET, query)}")
    seen = MemoryCache()
    for protocol in (one, other):
        protocol.verify(request)
        await protocol.refuse_replay(request, seen)
    with pytest.raises(Unauthorized) as refused:
        await other.refuse_replay(request, seen)
    assert refused.value.code == "replayed"
