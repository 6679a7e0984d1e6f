"""Intercom Canvas Kit, conversation details (docs/protocols.md §6.1), end to end over the demo.

Requests are signed by the few lines of hmac below; every canvas is checked by an independent
validator written from the Canvas Kit reference; ``text`` is read as markdown, ``data-table``
values as plain strings, as Intercom shows them (§6.5).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from markdown_it import MarkdownIt

from deskside.config import Settings
from deskside.protocols import RawRequest
from deskside.protocols.intercom import Intercom, IntercomConfig
from helpers import add_customer, demo_secret, demo_settings, make_demo_database, parse_html, serve

pytestmark = pytest.mark.anyio

SECRET = demo_secret("intercom")
HOSTILE = "hostile@intercom.example"
HOSTILE_COMPANY = '"><img src=x onerror=alert(1)> **Evil** [Corp](javascript:alert(1)) _Ltd_'
TWO_ACCOUNTS = "tess@intercom.example"
HOSTILE_MODULES = "a*b*,[x](https://evil.example),<b>c</b>"
VECTOR_BODY = b'{"workspace_id":"abc123","contact":{"email":"jane@example.com"}}'
VECTOR_SIGNATURE = "3220df5b6da29ee4c36ad75f682170ae3ec089d84462a79cd3e586bea6c46eed"


# ── Independent signer, requests and canvas validator ────────────────────────────────────────


def intercom_signature(secret: str, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def initialize(email: str | None, **extra: Any) -> dict[str, Any]:
    """An Inbox initialize request as Intercom sends it for the contact being viewed."""
    contact = {"id": "6650f1", "type": "contact", "role": "user", "name": "Jane", "email": email}
    return {
        "workspace_id": "abc123",
        "workspace_region": "US",
        "admin": {"id": "77", "type": "admin"},
        "context": {"conversation_id": 42, "location": "conversation", "locale": "en"},
        "conversation": {"id": "42", "type": "conversation"},
        "contact": contact,
        **extra,
    }


def refresh(email: str) -> dict[str, Any]:
    """The Refresh button's submit: the same context, the button's id and the canvas shown."""
    return initialize(
        email, component_id="refresh", input_values={}, current_canvas={"content": {}}
    )


async def post(client: httpx.AsyncClient, document: Any, secret: str = SECRET) -> httpx.Response:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    headers = {"content-type": "application/json"}
    headers["x-body-signature"] = intercom_signature(secret, body)
    return await client.post("/intercom", content=body, headers=headers)


_STYLES = {
    "text": {"header", "paragraph", "muted", "error"},
    "button": {"primary", "secondary", "link"},
}
_KEYS = {
    "text": ({"type", "text"}, {"style", "align"}),
    "data-table": ({"type", "items"}, set()),
    "button": ({"type", "id", "label", "action"}, {"style"}),
    "divider": ({"type"}, set()),
    "spacer": ({"type"}, {"size"}),
}


def components_of(answer: Any) -> list[dict[str, Any]]:
    """The canvas's components, after checking the canvas as Intercom would."""
    assert set(answer) == {"canvas"}, answer
    assert set(answer["canvas"]) == {"content"}, answer["canvas"]
    content = answer["canvas"]["content"]
    assert set(content) == {"components"}
    assert len(json.dumps(content, ensure_ascii=False).encode()) <= 64 * 1024
    components: list[dict[str, Any]] = content["components"]
    ids = [c["id"] for c in components if c["type"] == "button"]
    assert len(ids) == len(set(ids)), ids
    for c in components:
        required, optional = _KEYS[c["type"]]
        assert required <= set(c) <= required | optional, c
        if "style" in c:
            assert c["style"] in _STYLES[c["type"]], c
        if c["type"] == "text":
            assert isinstance(c["text"], str) and c["text"], c
        if c["type"] == "data-table":
            assert c["items"], c
            for item in c["items"]:
                assert set(item) == {"type", "field", "value"} and item["type"] == "field-value"
                assert isinstance(item["field"], str) and item["field"], item
                assert isinstance(item["value"], str) and item["value"], item
        if c["type"] == "button":
            action = c["action"]
            assert action == {"type": "submit"} or (
                set(action) == {"type", "url"}
                and action["type"] == "url"
                and action["url"].startswith(("https://", "http://", "mailto:"))
            ), c
    return components


def shown(text: str) -> str:
    """What Intercom's markdown makes of a ``text`` (CommonMark with raw HTML: the worst case)."""
    return parse_html(MarkdownIt("commonmark", {"html": True}).render(text)).text().strip()


def texts(components: list[dict[str, Any]], style: str) -> list[str]:
    return [c["text"] for c in components if c["type"] == "text" and c.get("style") == style]


def table(components: list[dict[str, Any]]) -> dict[str, str]:
    """Every data-table row, label → value."""
    rows = [item for c in components if c["type"] == "data-table" for item in c["items"]]
    return {item["field"]: item["value"] for item in rows}


# ── Fixtures ─────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    database = make_demo_database(tmp_path_factory.mktemp("intercom") / "demo.db")
    add_customer(
        database, HOSTILE, company=HOSTILE_COMPANY, name="**Eve**", modules=HOSTILE_MODULES
    )
    for company in ("Umbrella", "Vandelay"):
        add_customer(database, TWO_ACCOUNTS, company=company, name="Tess")
    return database


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> Settings:
    return demo_settings(monkeypatch, tmp_path, database)


# ── The signature ────────────────────────────────────────────────────────────────────────────


def test_the_documented_vector_is_what_deskside_accepts() -> None:
    assert intercom_signature("test_client_secret", VECTOR_BODY) == VECTOR_SIGNATURE
    config = IntercomConfig.model_validate({"kind": "intercom", "secret": "test_client_secret"})
    desk = Intercom("intercom", config)
    signed = RawRequest("POST", VECTOR_BODY, b"", {"x-body-signature": VECTOR_SIGNATURE})
    desk.verify(signed)
    lookup = desk.parse(signed, fold_plus=True)
    assert lookup.emails == ("jane@example.com",)
    assert lookup.context == {"desk": "intercom", "workspace_id": "abc123", "conversation_id": None}


async def test_a_signature_over_other_bytes_is_refused(settings: Settings) -> None:
    body = json.dumps(initialize("owner@acme.example")).encode()
    async with serve(settings) as client:
        respaced = body.replace(b":", b": ")  # the same JSON, other bytes
        headers = {"x-body-signature": intercom_signature(SECRET, body)}
        assert (
            await client.post("/intercom", content=respaced, headers=headers)
        ).status_code == 401
        assert (await post(client, body)).status_code == 200


# ── The canvas ───────────────────────────────────────────────────────────────────────────────


async def test_a_customer_is_a_canvas_of_header_badges_tables_and_link_buttons(
    settings: Settings,
) -> None:
    async with serve(settings) as client:
        response = await post(client, initialize("Owner@Acme.example"))
    assert response.status_code == 200
    components = components_of(response.json())
    assert components[0] == {"type": "text", "text": "Acme HR", "style": "header"}
    assert texts(components, "muted") == ["Olivia Owner · owner"]
    assert texts(components, "paragraph") == ["Pro · Owner", "**Billing**", "**Account**"]
    rows = table(components)
    assert rows["Employees"] == "42 / 50"
    assert rows["MRR"] == "$249.00"
    assert rows["Modules"] == "payroll · time-off · reviews"  # the author's bold, read as text
    assert rows["Email"] == "owner@acme.example"
    links = {c["label"]: c["action"] for c in components if c["type"] == "button"}
    assert links["Open in admin"] == {
        "type": "url",
        "url": "https://admin.hr-demo.example/companies/1",
    }
    assert links["Stripe dashboard"]["type"] == "url"
    # a section is its title, then its table, then its buttons
    kinds = [c["type"] for c in components]
    billing = components.index({"type": "text", "text": "**Billing**", "style": "paragraph"})
    assert kinds[billing : billing + 3] == ["text", "data-table", "button"]
    # last, the Refresh button, which posts back to the Submit URL
    assert components[-1]["action"] == {"type": "submit"}
    assert components[-1]["id"] == "refresh"


async def test_customer_data_is_plain_in_tables_and_never_markup_in_text(
    settings: Settings,
) -> None:
    async with serve(settings) as client:
        response = await post(client, initialize(HOSTILE))
    components = components_of(response.json())
    [title] = texts(components, "header")
    assert shown(title) == HOSTILE_COMPANY  # read exactly as written: no tag, link or bold
    html = MarkdownIt("commonmark", {"html": True}).render(title)
    assert "<img" not in html and "<strong>" not in html and "<a " not in html
    assert shown(texts(components, "muted")[0]) == "**Eve** · owner"
    # data-table values are shown as they are: no backslashes, no markdown
    assert table(components)["Modules"] == "a*b* · [x](https://evil.example) · <b>c</b>"


async def test_an_unknown_customer_is_a_muted_no_customer_found(settings: Settings) -> None:
    async with serve(settings) as client:
        response = await post(client, initialize("nobody@intercom.example"))
    assert response.status_code == 200
    components = components_of(response.json())
    assert components[0] == {"type": "text", "text": "No customer found", "style": "muted"}
    assert [c["type"] for c in components] == ["text", "button"]
    assert components[1]["id"] == "refresh"


async def test_a_contact_without_an_address_says_so(settings: Settings) -> None:
    async with serve(settings) as client:
        response = await post(client, initialize(None))
    components = components_of(response.json())
    assert components == [
        {"type": "text", "text": "This contact has no email address.", "style": "muted"}
    ]


async def test_older_api_versions_app_id_and_customer_are_read(settings: Settings) -> None:
    document = {"app_id": "abc123", "customer": {"email": "owner@acme.example"}}
    async with serve(settings) as client:
        response = await post(client, document)
    assert texts(components_of(response.json()), "header") == ["Acme HR"]


async def test_two_accounts_are_divided_and_their_buttons_have_their_own_ids(
    settings: Settings,
) -> None:
    async with serve(settings) as client:
        response = await post(client, initialize(TWO_ACCOUNTS))
    components = components_of(response.json())
    assert texts(components, "header") == ["Umbrella", "Vandelay"]
    assert [c["type"] for c in components].count("divider") == 1


@pytest.mark.parametrize(
    "change",
    [
        {"contact": "owner@acme.example"},
        {"contact": {"email": 5}},
        {"customer": ["owner@acme.example"]},
        {"context": "conversation"},
        {"component_id": 7},
    ],
)
async def test_wrong_types_are_400(settings: Settings, change: dict[str, Any]) -> None:
    async with serve(settings) as client:
        response = await post(client, {**initialize("owner@acme.example"), **change})
    assert response.status_code == 400
    assert list(response.json()) == ["error"]


# ── Refresh ──────────────────────────────────────────────────────────────────────────────────


@pytest.fixture
def fresh_database(tmp_path: Path) -> Path:
    path = tmp_path / "demo.db"
    make_demo_database(path)
    return path


def rename_company(database: Path, old: str, new: str) -> None:
    with sqlite3.connect(database) as connection:
        connection.execute("update companies set name = ? where name = ?", (new, old))


async def test_the_refresh_button_asks_the_sources_again_past_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_database: Path
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, f"sqlite:///{fresh_database}")
    async with serve(settings) as client:
        first = await post(client, initialize("owner@acme.example"))
        assert texts(components_of(first.json()), "header") == ["Acme HR"]
        rename_company(fresh_database, "Acme HR", "Acme People")
        # switching conversations: Intercom asks again, answered from the cache
        cached = await post(client, initialize("owner@acme.example"))
        assert texts(components_of(cached.json()), "header") == ["Acme HR"]
        refreshed = await post(client, refresh("owner@acme.example"))
        assert refreshed.status_code == 200
        assert texts(components_of(refreshed.json()), "header") == ["Acme People"]
        # and the fresh answer is what the next initialize shows
        after = await post(client, initialize("owner@acme.example"))
        assert texts(components_of(after.json()), "header") == ["Acme People"]


# ── Size ─────────────────────────────────────────────────────────────────────────────────────

MANY_LONG_FIELDS = "\n".join(
    f'[[card.fields]]\nlabel = "Note {index}"\nvalue = "app.modules"\n' for index in range(40)
)


async def test_a_huge_card_stays_under_intercoms_64_kb_and_says_more_was_cut(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_database: Path
) -> None:
    database = f"sqlite:///{fresh_database}"
    huge = '"é<' * 3000  # JSON escapes and multi-byte characters: the heaviest text
    add_customer(database, "huge@intercom.example", company="Huge", name="Hu", modules=huge)
    settings = demo_settings(
        monkeypatch,
        tmp_path,
        database,
        card=MANY_LONG_FIELDS,
        replace={'currency = "USD"': 'currency = "USD"\nmax_value_length = 10000'},
    )
    async with serve(settings) as client:
        response = await post(client, initialize("huge@intercom.example"))
    assert response.status_code == 200
    assert len(response.content) <= 64 * 1024
    components = components_of(response.json())
    assert "… more not shown" in texts(components, "muted")
    assert table(components)["Note 0"] == huge
    example = Intercom.example_request(SECRET, ["huge@intercom.example"])
    assert Intercom.check_answer(200, response.json(), example) == []
