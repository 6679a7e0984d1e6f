"""The generic JSON endpoint ``POST /card``: signatures, bearer tokens, typed answers, OpenAPI.

Requests go through the real app over the demo database; signatures come from the few lines
of hmac below, not from deskside.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from deskside.config import Settings, load_settings
from deskside.errors import ConfigError
from helpers import demo_config_text, serve

pytestmark = pytest.mark.anyio

CARD_SECRET = "card-test-secret"
CARD_TOKEN = "card-test-token"
SIGNATURE = "X-Deskside-Signature"
OTHER_DESKS = {"/helpscout": "post", "/therethere": "post", "/helper": "get", "/plain": "post"}


def card_signature(secret: str, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ── The demo app ──────────────────────────────────────────────────────────────────────────────


def card_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: str,
    *,
    table: str | None = None,
    card: str = "",
) -> Settings:
    """The demo config; ``table`` replaces the body of ``[helpdesks.card]``."""
    for env, value in {
        "DESKSIDE_DEMO_DATABASE_URL": database,
        "HELPSCOUT_SECRET": "hs-unused",
        "THERETHERE_SECRET": "tt-unused",
        "HELPER_SECRET": "helper-unused",
        "HELPER_IDENTITY_TOKEN": "identity-unused",
        "PLAIN_SECRET": "plain-unused",
        "CARD_SECRET": CARD_SECRET,
        "CARD_TOKEN": CARD_TOKEN,
    }.items():
        monkeypatch.setenv(env, value)
    text = demo_config_text(card=card)
    if table is not None:
        text, count = re.subn(r"(?ms)^\[helpdesks\.card\][^\n]*\n.*\Z", table, text)
        assert count == 1
    path = tmp_path / "deskside.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


WITH_TOKEN = """[helpdesks.card]
secret = "env:CARD_SECRET"
token = "env:CARD_TOKEN"
"""
TOKEN_ONLY = """[helpdesks.card]
token = ["env:CARD_TOKEN", "second-token"]
"""


@pytest.fixture
async def client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(card_settings(monkeypatch, tmp_path, database)) as client:
        yield client


async def post_card(
    client: httpx.AsyncClient,
    document: Any,
    *,
    secret: str | None = CARD_SECRET,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST /card signed with ``secret`` (None: unsigned), plus ``headers``."""
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    sent = {"Content-Type": "application/json"}
    if secret is not None:
        sent[SIGNATURE] = card_signature(secret, body)
    response = await client.post("/card", content=body, headers=sent | (headers or {}))
    assert response.status_code < 500, response.text
    return response


def fields(card: dict[str, Any]) -> dict[str, Any]:
    """Every field's value by label, sections included."""
    found = {f["label"]: f["value"] for f in card["fields"]}
    for section in card["sections"]:
        found |= {f["label"]: f["value"] for f in section["fields"]}
    return found


# ── Lookups ───────────────────────────────────────────────────────────────────────────────────


async def test_one_email(client: httpx.AsyncClient) -> None:
    response = await post_card(client, {"email": "owner@acme.example"})
    assert response.status_code == 200
    document = response.json()
    assert set(document) == {"emails", "cards", "notes", "message"}
    assert document["emails"] == ["owner@acme.example"]
    assert document["notes"] == [] and document["message"] is None
    (card,) = document["cards"]
    assert card["title"] == "Acme HR"
    assert card["subtitle"] == "Olivia Owner · owner"
    assert [(b["text"], b["color"]) for b in card["badges"]] == [
        ("Pro", "blue"),
        ("Owner", "purple"),
    ]
    assert card["links"] == [
        {"label": "Open in admin", "url": "https://admin.hr-demo.example/companies/1"}
    ]


async def test_several_emails(client: httpx.AsyncClient) -> None:
    document = {"emails": ["PAT@initech.example", "pat@initrode.example", "pat@initech.example"]}
    response = await post_card(client, document)
    assert response.status_code == 200
    answer = response.json()
    assert answer["emails"] == ["pat@initech.example", "pat@initrode.example"]
    assert [card["title"] for card in answer["cards"]] == ["Initech", "Initrode"]


async def test_email_and_emails_together(client: httpx.AsyncClient) -> None:
    document = {"email": "pat@initech.example", "emails": ["pat@initrode.example"]}
    answer = (await post_card(client, document)).json()
    assert answer["emails"] == ["pat@initech.example", "pat@initrode.example"]
    assert len(answer["cards"]) == 2


async def test_answer_values_are_typed_json(client: httpx.AsyncClient) -> None:
    owner = fields((await post_card(client, {"email": "owner@acme.example"})).json()["cards"][0])
    assert owner["MRR"] == 249 and isinstance(owner["MRR"], int | float)
    assert not isinstance(owner["MRR"], bool)
    assert date.fromisoformat(owner["Renews"]) > datetime.now(UTC).date()
    last_seen = datetime.fromisoformat(owner["Last seen"])
    assert last_seen.tzinfo is not None  # demo times are around noon UTC today
    assert owner["Email"] == "owner@acme.example"

    mallory = (await post_card(client, {"email": "mallory@evil.example"})).json()["cards"][0]
    assert fields(mallory)["Over the limit"] is True
    assert mallory["subtitle"].startswith("<img src=x onerror=alert(1)>")  # data, unescaped

    lapsed = fields(
        (await post_card(client, {"email": "lapsed@globex.example"})).json()["cards"][0]
    )
    assert datetime.fromisoformat(lapsed["Trial ends"]) < datetime.now(UTC)
    assert "MRR" not in lapsed


FRACTIONAL_FIELDS = """
[[card.fields]]
label = "Price per seat"
type = "currency"
template = "{{ app.mrr_cents / 200 }}"

[[card.sections]]
title = "Seats"

[[card.sections.fields]]
label = "Seats used"
type = "number"
template = "{{ app.employees / app.employee_limit }}"
"""


async def test_numbers_from_text_are_still_numbers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    """A number read from text (or a database's DECIMAL) is a JSON number, not a string."""
    settings = card_settings(monkeypatch, tmp_path, database, card=FRACTIONAL_FIELDS)
    async with serve(settings) as client:
        card = (await post_card(client, {"email": "owner@acme.example"})).json()["cards"][0]
    assert fields(card)["Price per seat"] == 124.5
    assert fields(card)["Seats used"] == 0.84  # 42 / 50, in a section


@pytest.mark.parametrize(
    "document",
    [
        {"email": "nobody@nowhere.example"},
        {"emails": ["nobody@nowhere.example", "someone@else.example"]},
    ],
)
async def test_unknown_customer_has_no_cards(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    response = await post_card(client, document)
    assert response.status_code == 200
    answer = response.json()
    assert answer["cards"] == [] and answer["notes"] == []
    assert answer["emails"]


@pytest.mark.parametrize(
    "document",
    [{}, {"emails": []}, {"email": "not an address"}, {"email": None}, {"other": 1}],
)
async def test_no_address_is_a_message_not_an_error(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    response = await post_card(client, document)
    assert response.status_code == 200
    answer = response.json()
    assert answer["cards"] == []
    assert answer["message"]


# ── Authentication ────────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {SIGNATURE: ""},
        {SIGNATURE: card_signature("wrong-secret", b'{"email": "owner@acme.example"}')},
        {SIGNATURE: "zz" * 32},
        {"Authorization": f"Bearer {CARD_SECRET}"},  # no token is configured
        {"Authorization": f"Bearer {CARD_TOKEN}"},
    ],
)
async def test_without_a_valid_signature_it_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await post_card(
        client, {"email": "owner@acme.example"}, secret=None, headers=headers
    )
    assert response.status_code == 401
    assert response.json() == {"error": "invalid signature"}


async def test_a_signature_over_other_bytes_is_401(client: httpx.AsyncClient) -> None:
    signed = json.dumps({"email": "owner@acme.example"}).encode()
    sent = json.dumps({"email": "owner@acme.example"}, indent=1).encode()
    headers = {SIGNATURE: card_signature(CARD_SECRET, signed)}
    response = await client.post("/card", content=sent, headers=headers)
    assert response.status_code == 401


async def test_a_bearer_token_or_a_signature_authenticates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = card_settings(monkeypatch, tmp_path, database, table=WITH_TOKEN)
    document = {"email": "owner@acme.example"}
    async with serve(settings) as client:
        by_token = await post_card(
            client, document, secret=None, headers={"Authorization": f"Bearer {CARD_TOKEN}"}
        )
        assert by_token.status_code == 200
        assert by_token.json()["cards"][0]["title"] == "Acme HR"

        lower_case = await post_card(
            client, document, secret=None, headers={"authorization": f"bearer {CARD_TOKEN}"}
        )
        assert lower_case.status_code == 200

        by_signature = await post_card(client, document)
        assert by_signature.status_code == 200

        wrong_token = await post_card(
            client, document, secret=None, headers={"Authorization": "Bearer not-the-token"}
        )
        assert wrong_token.status_code == 401

        # A wrong token is refused even when a good signature comes along.
        both = await post_card(client, document, headers={"Authorization": "Bearer nope"})
        assert both.status_code == 401

        neither = await post_card(client, document, secret=None)
        assert neither.status_code == 401

        basic = await post_card(
            client, document, secret=None, headers={"Authorization": f"Basic {CARD_TOKEN}"}
        )
        assert basic.status_code == 401


async def test_token_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> None:
    settings = card_settings(monkeypatch, tmp_path, database, table=TOKEN_ONLY)
    document = {"email": "owner@acme.example"}
    async with serve(settings) as client:
        for token in (CARD_TOKEN, "second-token"):
            response = await post_card(
                client, document, secret=None, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200
        signed = await post_card(client, document)  # no secret: signatures are not accepted
        assert signed.status_code == 401
        neither = await post_card(client, document, secret=None)
        assert neither.status_code == 401


def test_neither_secret_nor_token_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    with pytest.raises(ConfigError) as error:
        card_settings(monkeypatch, tmp_path, database, table="[helpdesks.card]\n")
    message = str(error.value)
    assert "helpdesks.card" in message and "secret" in message and "token" in message


def test_an_empty_token_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    with pytest.raises(ConfigError):
        card_settings(monkeypatch, tmp_path, database, table='[helpdesks.card]\ntoken = " "\n')


# ── OpenAPI ───────────────────────────────────────────────────────────────────────────────────


async def test_the_card_route_is_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    """/card is described exactly; the other helpdesks' routes are published beside it (their
    own tests fuzz them from it), the health check is not."""
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    assert "/card" in schema["paths"]
    for path, method in OTHER_DESKS.items():
        assert list(schema["paths"][path]) == [method], path
    assert "/healthz" not in schema["paths"]
    operation = schema["paths"]["/card"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"email", "emails"} <= set(body["properties"])
    assert body["properties"]["emails"]["type"] == "array"
    assert "200" in operation["responses"] and "401" in operation["responses"]


async def test_openapi_security_names_declared_schemes(client: httpx.AsyncClient) -> None:
    """Either authentication is listed, each naming a scheme in components.securitySchemes."""
    schema = (await client.get("/openapi.json")).json()
    declared = schema["components"]["securitySchemes"]
    requirements = schema["paths"]["/card"]["post"]["security"]
    assert len(requirements) == 2  # alternatives: a signature or a token
    used = {name: declared[name] for requirement in requirements for name in requirement}
    assert sorted(scheme["type"] for scheme in used.values()) == ["apiKey", "http"]
    for scheme in used.values():
        if scheme["type"] == "apiKey":
            assert (scheme["in"], scheme["name"].lower()) == ("header", "x-deskside-signature")
        else:
            assert scheme["scheme"].lower() == "bearer"


# ── Malformed input ───────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'[{"email": "owner@acme.example"}]',
        b"null",
        b'"owner@acme.example"',
        b'{"email": 5}',
        b'{"email": ["owner@acme.example"]}',
        b'{"email": {"x": 1}}',
        b'{"emails": "owner@acme.example"}',
        b'{"emails": [1, 2]}',
        b'{"emails": null}',
        b'{"emails": {"a": "owner@acme.example"}}',
        b'{"email": NaN}',
        b"{" * 10_000,
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    ],
    ids=lambda value: re.sub(r"\W+", "_", value[:30].decode("latin-1")) or "empty",
)
async def test_malformed_bodies_are_400(client: httpx.AsyncClient, body: bytes) -> None:
    response = await post_card(client, body)
    assert response.status_code == 400, response.text


async def test_many_addresses_are_capped_not_refused(client: httpx.AsyncClient) -> None:
    emails = [f"user{i}@example.com" for i in range(200)] + ["owner@acme.example"]
    response = await post_card(client, {"emails": emails})
    assert response.status_code == 200
    assert len(response.json()["emails"]) <= 20


async def test_a_huge_body_is_413(client: httpx.AsyncClient) -> None:
    document = {"email": "owner@acme.example", "pad": "x" * 100_000}
    assert (await post_card(client, document)).status_code == 413
    assert (await post_card(client, document, secret=None)).status_code == 413
