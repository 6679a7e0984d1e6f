"""Plain customer cards (docs/protocols.md §5), end to end over the demo.

Requests are signed by the few lines of hmac below; every 200 answer is checked by an
independent validator of Plain's component tree written from docs/protocols.md.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from markdown_it import MarkdownIt

from deskside.config import Settings, load_settings
from fake_http import FakeHTTPServer, Reply
from helpers import demo_config_text, serve

pytestmark = pytest.mark.anyio

PLAIN_SECRET = "plain-test-secret"
HEADER = "Plain-Request-Signature"
MALLORY_NAME = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) **Mallory**"
MALLORY_COMPANY = '"><script>alert("xss")</script> [Evil Corp](https://evil.example) _Ltd_'


# ── Independent signer and request builder ────────────────────────────────────────────────────


def plain_signature(secret: str, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def plain_request(email: str | None, keys: list[str]) -> dict[str, Any]:
    """A customer-card request shaped like Plain's."""
    return {
        "cardKeys": keys,
        "customer": {"id": "c_01HPLAIN", "email": email, "externalId": None},
        "thread": {"id": "th_01HPLAIN", "externalId": None},
        "tenant": None,
    }


# ── A validator for Plain's components (docs/protocols.md §5) ─────────────────────────────────

_SIZES = {"XS", "S", "M", "L", "XL"}
_TEXT_SIZES = {"S", "M", "L"}
_TEXT_COLORS = {"NORMAL", "MUTED", "SUCCESS", "WARNING", "ERROR"}
BADGE_COLORS = {"GREY", "GREEN", "YELLOW", "RED", "BLUE"}

# component type → (required keys, optional keys)
_COMPONENTS: dict[str, tuple[set[str], set[str]]] = {
    "componentText": ({"text"}, {"textSize", "textColor"}),
    "componentPlainText": ({"plainText"}, {"plainTextSize", "plainTextColor"}),
    "componentBadge": ({"badgeLabel"}, {"badgeColor"}),
    "componentLinkButton": ({"linkButtonLabel", "linkButtonUrl"}, set()),
    "componentCopyButton": ({"copyButtonValue"}, {"copyButtonTooltipLabel"}),
    "componentDivider": (set(), {"dividerSpacingSize"}),
    "componentSpacer": ({"spacerSize"}, set()),
    "componentRow": ({"rowMainContent", "rowAsideContent"}, set()),
    "componentContainer": ({"containerContent"}, set()),
}
_ENUMS = {
    "textSize": _TEXT_SIZES,
    "textColor": _TEXT_COLORS,
    "plainTextSize": _TEXT_SIZES,
    "plainTextColor": _TEXT_COLORS,
    "badgeColor": BADGE_COLORS,
    "dividerSpacingSize": _SIZES,
    "spacerSize": _SIZES,
}
_LISTS = {"rowMainContent", "rowAsideContent", "containerContent"}


def check_component(component: Any, where: str = "component") -> None:
    assert isinstance(component, dict) and len(component) == 1, f"{where}: {component!r}"
    ((kind, body),) = component.items()
    assert kind in _COMPONENTS, f"{where}: unknown component {kind}"
    required, optional = _COMPONENTS[kind]
    assert isinstance(body, dict), f"{where}.{kind}"
    assert required <= set(body) <= required | optional, f"{where}.{kind}: {sorted(body)}"
    for key, value in body.items():
        place = f"{where}.{kind}.{key}"
        if key in _ENUMS:
            assert value in _ENUMS[key], f"{place} = {value!r}"
        elif key in _LISTS:
            assert isinstance(value, list), place
            for index, child in enumerate(value):
                check_component(child, f"{place}[{index}]")
        else:
            assert isinstance(value, str) and value, f"{place} = {value!r}"
    if kind == "componentLinkButton":
        assert body["linkButtonUrl"].startswith(("https://", "http://", "mailto:")), body


def check_answer(document: Any, keys: list[str]) -> None:
    """The answer Plain needs: exactly one card per requested key, in order, all valid."""
    assert isinstance(document, dict) and set(document) == {"cards"}, document
    cards = document["cards"]
    assert [card["key"] for card in cards] == list(dict.fromkeys(keys))
    for card in cards:
        assert set(card) == {"key", "timeToLiveSeconds", "components"}, card
        ttl = card["timeToLiveSeconds"]
        assert type(ttl) is int and ttl > 0
        components = card["components"]
        assert components is None or (isinstance(components, list) and components), card
        for index, component in enumerate(components or []):
            check_component(component, f"{card['key']}[{index}]")


def walk(components: list[Any] | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every component in the tree, depth first, as ``(type, body)``."""
    for component in components or []:
        ((kind, body),) = component.items()
        yield kind, body
        for key in _LISTS & set(body):
            yield from walk(body[key])


def texts(components: list[Any] | None) -> list[str]:
    """What every text component shows: plain text as it is, markdown as rendered."""
    return [
        body["plainText"] if kind == "componentPlainText" else shown(body["text"])[1]
        for kind, body in walk(components)
        if kind in ("componentPlainText", "componentText")
    ]


# ── Markdown as Plain would show it ───────────────────────────────────────────────────────────

_MARKDOWN = MarkdownIt("commonmark")


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text += data


def shown(markdown: str) -> tuple[set[str], str]:
    """The HTML tags rendering ``markdown`` makes, and the text a reader sees."""
    parser = _Tags()
    parser.feed(_MARKDOWN.render(markdown))
    parser.close()
    return set(parser.tags), parser.text.strip()


def test_markdown_check_would_catch_unescaped_customer_data() -> None:
    assert {"img", "strong"} <= shown(MALLORY_NAME)[0]
    assert {"script", "a", "em"} <= shown(MALLORY_COMPANY)[0]
    assert shown(r"cus\_demo0001 \*\*x\*\*") == ({"p"}, "cus_demo0001 **x**")


# ── The demo app ──────────────────────────────────────────────────────────────────────────────


def plain_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: str,
    *,
    sources: str = "",
    deadline_ms: int | None = None,
) -> Settings:
    for env, value in {
        "DESKSIDE_DEMO_DATABASE_URL": database,
        "HELPSCOUT_SECRET": "hs-unused",
        "THERETHERE_SECRET": "tt-unused",
        "HELPER_SECRET": "helper-unused",
        "HELPER_IDENTITY_TOKEN": "identity-unused",
        "PLAIN_SECRET": PLAIN_SECRET,
        "CARD_SECRET": "card-unused",
    }.items():
        monkeypatch.setenv(env, value)
    path = tmp_path / "deskside.toml"
    text = demo_config_text(sources=sources, deadline_ms=deadline_ms)
    path.write_text(text, encoding="utf-8")
    return load_settings(path)


@pytest.fixture
async def client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(plain_settings(monkeypatch, tmp_path, database)) as client:
        yield client


async def post_plain(
    client: httpx.AsyncClient,
    document: Any,
    *,
    secret: str = PLAIN_SECRET,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST to /plain, signed over the exact bytes sent; every 200 answer is validated."""
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    sent = {
        "Content-Type": "application/json",
        "Plain-Workspace-Id": "w_01HPLAIN",
        HEADER: plain_signature(secret, body),
    }
    response = await client.post("/plain", content=body, headers=sent | (headers or {}))
    assert response.status_code < 500, response.text
    if response.status_code == 200 and isinstance(document, dict):
        check_answer(response.json(), document["cardKeys"])
    return response


async def cards(client: httpx.AsyncClient, email: str | None, keys: list[str]) -> dict[str, Any]:
    """The answer's cards by key, for ``email``."""
    response = await post_plain(client, plain_request(email, keys))
    assert response.status_code == 200, response.text
    return {card["key"]: card for card in response.json()["cards"]}


# ── Signature ─────────────────────────────────────────────────────────────────────────────────


async def test_a_request_signed_over_its_raw_body_is_answered(client: httpx.AsyncClient) -> None:
    # Spacing and key order Plain happens to use must not matter: the bytes are signed.
    body = (
        b'{ "customer" : {"email":"owner@acme.example","id":"c_1","externalId":null},\n'
        b'  "cardKeys":["account"] }'
    )
    response = await post_plain(client, body)
    assert response.status_code == 200
    assert response.json()["cards"][0]["components"] is not None


@pytest.mark.parametrize(
    "headers",
    [
        {HEADER: ""},
        {HEADER: plain_signature("wrong-secret", b"{}")},
        {HEADER: "not hex at all"},
        {HEADER: "ab" * 16},  # too short
    ],
)
async def test_a_bad_signature_is_401(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await post_plain(
        client, plain_request("owner@acme.example", ["account"]), headers=headers
    )
    assert response.status_code == 401
    assert response.json() == {"error": "invalid signature"}


async def test_a_signature_over_reserialised_json_is_401(client: httpx.AsyncClient) -> None:
    document = plain_request("owner@acme.example", ["account"])
    sent = json.dumps(document, indent=2).encode()
    compact = json.dumps(document, separators=(",", ":")).encode()
    response = await client.post(
        "/plain", content=sent, headers={HEADER: plain_signature(PLAIN_SECRET, compact)}
    )
    assert response.status_code == 401


async def test_a_signature_for_another_body_is_401(client: httpx.AsyncClient) -> None:
    signed = json.dumps(plain_request("owner@acme.example", ["account"])).encode()
    sent = json.dumps(plain_request("pat@initech.example", ["account"])).encode()
    headers = {HEADER: plain_signature(PLAIN_SECRET, signed)}
    response = await client.post("/plain", content=sent, headers=headers)
    assert response.status_code == 401


# ── Every requested key comes back ────────────────────────────────────────────────────────────


async def test_every_requested_key_comes_back_in_order(client: httpx.AsyncClient) -> None:
    keys = ["billing", "no-such-card", "account", "another-unknown"]
    response = await post_plain(client, plain_request("owner@acme.example", keys))
    answered = response.json()["cards"]
    assert [card["key"] for card in answered] == keys
    by_key = {card["key"]: card for card in answered}
    assert by_key["no-such-card"]["components"] is None
    assert by_key["another-unknown"]["components"] is None
    assert by_key["account"]["components"] and by_key["billing"]["components"]
    assert all(card["timeToLiveSeconds"] == 300 for card in answered)


@pytest.mark.parametrize(
    "customer",
    [
        {"id": "c_1", "email": "nobody@nowhere.example", "externalId": None},
        {"id": "c_1", "email": None, "externalId": "ext-1"},
        {"id": "c_1", "externalId": None},
        {"id": "c_1", "email": "not an address"},
        None,
    ],
)
async def test_an_unknown_customer_gets_every_key_with_null_components(
    client: httpx.AsyncClient, customer: dict[str, Any] | None
) -> None:
    keys = ["account", "billing", "other"]
    document: dict[str, Any] = {"cardKeys": keys, "customer": customer}
    response = await post_plain(client, document)
    assert response.status_code == 200
    assert response.json() == {
        "cards": [{"key": key, "timeToLiveSeconds": 300, "components": None} for key in keys]
    }


async def test_no_card_keys_is_an_empty_answer(client: httpx.AsyncClient) -> None:
    response = await post_plain(client, plain_request("owner@acme.example", []))
    assert response.json() == {"cards": []}


# ── What each card shows ──────────────────────────────────────────────────────────────────────


def rows(components: list[Any] | None) -> dict[str, list[dict[str, Any]]]:
    """Each row's label → its aside components."""
    found = {}
    for kind, body in walk(components):
        if kind == "componentRow":
            (label,) = body["rowMainContent"]
            found[label["componentPlainText"]["plainText"]] = body["rowAsideContent"]
    return found


def aside_text(aside: list[dict[str, Any]]) -> str:
    return aside[0]["componentPlainText"]["plainText"]


async def test_account_card_shows_title_badges_rows_and_the_account_section(
    client: httpx.AsyncClient,
) -> None:
    account = (await cards(client, "owner@acme.example", ["account"]))["account"]["components"]
    first = account[0]["componentPlainText"]
    assert (first["plainText"], first["plainTextSize"]) == ("Acme HR", "L")
    badges = [body for kind, body in walk(account) if kind == "componentBadge"]
    assert [(b["badgeLabel"], b["badgeColor"]) for b in badges] == [
        ("Pro", "BLUE"),
        ("Owner", "BLUE"),  # purple is not one of Plain's colours
    ]
    found = rows(account)
    assert list(found) == ["Employees", "Renews", "MRR", "Modules", "Email", "Last seen"]
    assert aside_text(found["Employees"]) == "42 / 50"
    assert aside_text(found["MRR"]) == "$249.00"
    assert aside_text(found["Email"]) == "owner@acme.example"
    headings = texts(account)
    assert "Account" in headings and "Billing" not in headings
    assert "Subscription" not in found
    links = [body for kind, body in walk(account) if kind == "componentLinkButton"]
    assert links == [
        {
            "linkButtonLabel": "Open in admin",
            "linkButtonUrl": "https://admin.hr-demo.example/companies/1",
        }
    ]
    assert not [kind for kind, _ in walk(account) if kind == "componentCopyButton"]


async def test_billing_card_shows_the_billing_section_only_with_a_copy_button(
    client: httpx.AsyncClient,
) -> None:
    billing = (await cards(client, "owner@acme.example", ["billing"]))["billing"]["components"]
    headings = texts(billing)
    assert headings[0] == "Billing"
    assert "Acme HR" not in headings and "Account" not in headings
    assert not [kind for kind, _ in walk(billing) if kind == "componentBadge"]
    found = rows(billing)
    assert list(found) == ["Subscription", "Stripe customer"]
    copy = found["Stripe customer"][1]["componentCopyButton"]
    assert copy["copyButtonValue"] == "cus_demo0001"  # the raw id, not markdown-escaped
    assert aside_text(found["Stripe customer"]) == "cus_demo0001"
    links = [body["linkButtonUrl"] for kind, body in walk(billing) if kind == "componentLinkButton"]
    assert links == ["https://dashboard.stripe.com/customers/cus_demo0001"]


async def test_several_accounts_each_get_a_heading(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    with sqlite3.connect(database.removeprefix("sqlite:///")) as connection:
        connection.execute(
            "insert into users (email, name, role, is_owner, company_id) "
            "values ('pat@initech.example', 'Pat Patel', 'owner', 1, 4)"  # also in Initrode
        )
    async with serve(plain_settings(monkeypatch, tmp_path, database)) as client:
        answer = await cards(client, "pat@initech.example", ["account", "billing"])
    for key in ("account", "billing"):
        components = answer[key]["components"]
        headings = texts(components)
        assert "Initech" in headings and "Initrode" in headings
        assert any(kind == "componentDivider" for kind, _ in walk(components))
    copies = [
        body["copyButtonValue"]
        for kind, body in walk(answer["billing"]["components"])
        if kind == "componentCopyButton"
    ]
    assert copies == ["cus_demo0003", "cus_demo0004"]


@pytest.mark.parametrize(
    ("email", "badge", "color"),
    [
        ("lapsed@globex.example", "Trial expired", "RED"),
        ("trial@hooli.example", "Trial", "YELLOW"),
        ("mallory@evil.example", "Past due", "RED"),
        ("art@vandelay.example", "Canceled", "GREY"),
        ("owner@acme.example", "Pro", "BLUE"),
    ],
)
async def test_badges_use_only_plains_colours(
    client: httpx.AsyncClient, email: str, badge: str, color: str
) -> None:
    account = (await cards(client, email, ["account"]))["account"]["components"]
    badges = {b["badgeLabel"]: b["badgeColor"] for k, b in walk(account) if k == "componentBadge"}
    assert badges[badge] == color
    assert set(badges.values()) <= BADGE_COLORS


async def test_injection_payloads_are_plain_text(client: httpx.AsyncClient) -> None:
    answer = await cards(client, "mallory@evil.example", ["account", "billing"])
    components = [c for card in answer.values() for c in card["components"]]
    plain = [body["plainText"] for kind, body in walk(components) if kind == "componentPlainText"]
    assert plain[:2] == [MALLORY_COMPANY, f"{MALLORY_NAME} · owner"]  # as it is, no backslash
    assert all("\\" not in text for text in plain), plain
    # Markdown is only the author's: the Modules field, whose **bold** is the only formatting.
    (modules,) = [body["text"] for kind, body in walk(components) if kind == "componentText"]
    assert modules == rows(components)["Modules"][0]["componentText"]["text"]
    assert shown(modules) == ({"p", "strong"}, "payroll")
    for kind, body in walk(components):
        if kind == "componentLinkButton":
            assert body["linkButtonUrl"].startswith("https://"), body


# ── Sources that fail or hang ─────────────────────────────────────────────────────────────────

BROKEN_SOURCE = """
[sources.crm]
kind = "sql"
label = "CRM"
url = "env:DESKSIDE_DEMO_DATABASE_URL"
query = "select * from no_such_table where email in :emails"
"""


async def test_a_failing_source_adds_a_warning_and_every_key_still_comes_back(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = plain_settings(monkeypatch, tmp_path, database, sources=BROKEN_SOURCE)
    async with serve(settings) as client:
        response = await post_plain(
            client, plain_request("owner@acme.example", ["account", "billing", "x"])
        )
    answer = {card["key"]: card for card in response.json()["cards"]}
    assert list(answer) == ["account", "billing", "x"]
    for key in ("account", "billing"):
        last = answer[key]["components"][-1]["componentPlainText"]
        assert last["plainTextColor"] == "WARNING"
        assert last["plainText"] == "CRM unavailable"
        assert answer[key]["timeToLiveSeconds"] <= 60  # ask again soon
    assert answer["x"]["components"] is None


async def test_when_the_main_source_fails_the_cards_say_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    empty = tmp_path / "empty.db"  # a database without the app's tables
    sqlite3.connect(empty).close()
    async with serve(plain_settings(monkeypatch, tmp_path, f"sqlite:///{empty}")) as client:
        response = await post_plain(
            client, plain_request("owner@acme.example", ["account", "billing", "x"])
        )
    answer = {card["key"]: card for card in response.json()["cards"]}
    assert list(answer) == ["account", "billing", "x"]
    for key in ("account", "billing"):
        (only,) = answer[key]["components"]
        assert only["componentPlainText"]["plainTextColor"] == "WARNING"
        assert only["componentPlainText"]["plainText"] == "App database unavailable"
    assert answer["x"]["components"] is None


async def test_a_slow_source_is_cut_off_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    with FakeHTTPServer() as server:
        server.route("/crm/*", Reply.json({"tier": "gold"}, delay=20))
        slow = f"""
[sources.crm]
kind = "http"
label = "CRM"
url = "{server.url("/crm/{email}")}"
"""
        # Long enough for the demo's SQLite database to answer on a busy machine.
        settings = plain_settings(monkeypatch, tmp_path, database, sources=slow, deadline_ms=1500)
        async with serve(settings) as client:
            started = time.monotonic()
            response = await post_plain(
                client, plain_request("owner@acme.example", ["billing", "account", "x"])
            )
            elapsed = time.monotonic() - started
    assert elapsed < 10  # did not wait for the 20 s source, however busy the machine
    answer = {card["key"]: card for card in response.json()["cards"]}
    assert list(answer) == ["billing", "account", "x"]
    assert "CRM unavailable" in texts(answer["account"]["components"])
    assert "Acme HR" in texts(answer["account"]["components"])


# ── Malformed requests ────────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    "card_keys",
    [
        "missing",
        None,
        "account",
        [1, 2],
        ["account", None],
        [["account"]],
        {"account": True},
        [f"key{i}" for i in range(26)],
    ],
    ids=lambda value: re.sub(r"\W+", "_", repr(value))[:30],
)
async def test_malformed_card_keys_are_400(client: httpx.AsyncClient, card_keys: Any) -> None:
    document = plain_request("owner@acme.example", ["account"])
    if card_keys == "missing":
        del document["cardKeys"]
    else:
        document["cardKeys"] = card_keys
    response = await post_plain(client, json.dumps(document).encode())
    assert response.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b'["account"]',
        b"null",
        b"42",
        b'"cardKeys"',
        b'{"cardKeys": ["account"], "customer": "owner@acme.example"}',
        b'{"cardKeys": ["account"], "customer": []}',
        b'{"cardKeys": ["account"], "customer": {"email": 5}}',
        b'{"cardKeys": ["account"], "customer": {"email": ["owner@acme.example"]}}',
        b'{"cardKeys": ["account"], "customer": {"email": NaN}}',
        b"{" * 10_000,
        b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    ],
    ids=lambda value: re.sub(r"\W+", "_", value[:30].decode("latin-1")) or "empty",
)
async def test_malformed_bodies_are_400(client: httpx.AsyncClient, body: bytes) -> None:
    response = await post_plain(client, body)
    assert response.status_code == 400, response.text


async def test_a_huge_body_is_413(client: httpx.AsyncClient) -> None:
    document = plain_request("owner@acme.example", ["account"]) | {"pad": "x" * 100_000}
    response = await post_plain(client, document)
    assert response.status_code == 413
    unsigned = await client.post("/plain", content=b"[" * 200_000)
    assert unsigned.status_code == 413
