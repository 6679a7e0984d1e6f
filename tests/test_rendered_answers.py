"""What each helpdesk *shows* for hostile and NULL-heavy customers, through the real request path.

One config of a user's own (not the demo's) over a SQLite table of accounts whose text columns
hold NUL bytes, bidi overrides, a 100 KB value, NULLs, markdown and HTML payloads and numbers
stored as text. Every helpdesk is asked for every customer with requests signed by the few
lines of hmac below, and its answer is read the way that helpdesk reads it: Help Scout's HTML
parsed, There There's markdown rendered by a CommonMark renderer, Plain's components walked,
Helper's metadata taken as plain text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from deskside.cli import app
from deskside.config import Settings, load_settings
from helpers import Element, assert_harmless_html, parse_html, readable, serve

pytestmark = pytest.mark.anyio

SECRET = "rendered-answers-secret"
ANSWER_LIMIT = 64 * 1024
VALUE_LIMIT = 500
MORE_NOT_SHOWN = "… more not shown"

# ── The customers ─────────────────────────────────────────────────────────────────────────────

XSS = "<img src=x onerror=alert(1)>"
MARKDOWN = "**x** [a](javascript:alert(1))"
HUGE = "Long notes. " * 9_000  # 108 KB
COLUMNS = (
    "email",
    "company",
    "name",
    "plan",
    "region",
    "seats",
    "seat_limit",
    "revenue",
    "notes",
    "billing_email",
)


@dataclass(frozen=True)
class Customer:
    """One customer's rows, and what an agent should read of them."""

    email: str
    rows: tuple[dict[str, str | None], ...]


def account(email: str, **columns: str | None) -> dict[str, str | None]:
    return {column: None for column in COLUMNS} | {"email": email} | columns


HOSTILE = Customer(
    "hostile@rendered.example",
    (
        account(
            "hostile@rendered.example",
            company="Acme\x00 Corp\u202e Ltd",
            name=XSS,
            plan=MARKDOWN,
            region="EU <b>west</b>",
            seats="42",
            seat_limit="50",
            revenue="1,234.50",
            notes=HUGE,
            billing_email="billing@acme.example",
        ),
    ),
)
NULLS = Customer(
    "nulls@rendered.example",
    (account("nulls@rendered.example", company="Nulls Inc", plan="Pro"),),
)
MANY = Customer(
    "many@rendered.example",
    tuple(
        account(
            "many@rendered.example",
            company=f"Branch {n} " + "&" * 80,
            name="<b>Bo</b> \\ Ř" * 40,
            plan="Pro",
            region="Region " + "'" * 60,
            seats=str(n),
            seat_limit="10",
            revenue="99",
            notes='"&<>' * 30_000,
            billing_email=f"b{n}@many.example",
        )
        for n in range(10)
    ),
)
CUSTOMERS = (HOSTILE, NULLS, MANY)

CONFIG = """
[sources.app]
kind = "sql"
label = "Accounts"
url = "{url}"
query = "select * from accounts where lower(email) in :emails order by rowid"

[card]
each = "app"
title = "{{{{ app.company }}}}"
subtitle = "{{{{ app.name }}}}"

[[card.badges]]
text = "{{{{ app.plan }}}}"
color = "blue"

[[card.fields]]
label = "Seats"
value = "app.seats ~ ' / ' ~ app.seat_limit"

[[card.fields]]
label = "Seats used"
type = "number"
value = "app.seats"

[[card.fields]]
label = "Revenue"
type = "currency"
value = "app.revenue"

[[card.fields]]
label = "Revenue as written"
value = "app.revenue"

[[card.fields]]
label = "Limit"
value = "app.seat_limit | default('unlimited')"

[[card.fields]]
label = "Notes"
value = "app.notes"

[[card.fields]]
label = "Plan"
type = "markdown"
template = "**{{{{ app.plan }}}}**"

[[card.links]]
label = "Search {{{{ app.name }}}}"
url = "https://search.example/?q={{{{ app.name | urlencode }}}}"

[[card.links]]
label = "Write to billing"
url = "mailto:{{{{ app.billing_email }}}}"

[[card.sections]]
title = "{{{{ app.region }}}}"

[[card.sections.fields]]
label = "Seat limit"
value = "app.seat_limit"

[[card.sections]]
title = "Account"

[[card.sections.fields]]
label = "Owner"
value = "app.name"

[helpdesks.helpscout]
secret = "{secret}"

[helpdesks.therethere]
secret = "{secret}"

[helpdesks.helper]
secret = "{secret}"

[helpdesks.plain]
secret = "{secret}"

[helpdesks.plain.cards.account]
sections = ["Account"]

[helpdesks.card]
secret = "{secret}"
"""


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The config, over a SQLite file holding every customer's rows."""
    folder = tmp_path_factory.mktemp("rendered")
    database = folder / "accounts.db"
    with sqlite3.connect(database) as connection:
        connection.execute(f"create table accounts ({', '.join(f'{c} text' for c in COLUMNS)})")
        rows = [row for customer in CUSTOMERS for row in customer.rows]
        connection.executemany(
            f"insert into accounts values ({', '.join('?' for _ in COLUMNS)})",  # noqa: S608
            [[row[column] for column in COLUMNS] for row in rows],
        )
    path = folder / "deskside.toml"
    path.write_text(CONFIG.format(url=f"sqlite:///{database}", secret=SECRET), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def settings(config_path: Path) -> Settings:
    return load_settings(config_path)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings) as client:
        yield client


# ── Requests as each helpdesk sends them, signed independently ───────────────────────────────


def _mac(body: bytes) -> hmac.HMAC:
    return hmac.new(SECRET.encode(), body, hashlib.sha256)


async def _post(
    client: httpx.AsyncClient, path: str, document: Any, header: str, signature: str
) -> Any:
    body = json.dumps(document).encode()
    headers = {"Content-Type": "application/json", header: signature}
    response = await client.post(path, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert len(response.content) < ANSWER_LIMIT, (path, len(response.content))
    return response.json()


async def ask_helpscout(client: httpx.AsyncClient, email: str) -> Any:
    document = {"customer": {"email": email, "emails": [email]}, "mailbox": {"id": 1}}
    body = json.dumps(document).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha1).digest()
    return await _post(
        client, "/helpscout", document, "X-HelpScout-Signature", base64.b64encode(digest).decode()
    )


async def ask_therethere(client: httpx.AsyncClient, email: str) -> Any:
    document = {"email": email}
    signature = _mac(json.dumps(document).encode()).hexdigest()
    return await _post(client, "/therethere", document, "X-There-There-Signature", signature)


async def ask_plain(client: httpx.AsyncClient, email: str) -> Any:
    document = {"cardKeys": ["account"], "customer": {"id": "c_1", "email": email}}
    signature = _mac(json.dumps(document).encode()).hexdigest()
    return await _post(client, "/plain", document, "Plain-Request-Signature", signature)


async def ask_card(client: httpx.AsyncClient, email: str) -> Any:
    document = {"email": email}
    signature = _mac(json.dumps(document).encode()).hexdigest()
    return await _post(client, "/card", document, "X-Deskside-Signature", signature)


async def ask_helper(client: httpx.AsyncClient, email: str) -> Any:
    query = urlencode({"email": email, "timestamp": int(time.time())})
    signature = base64.b64encode(_mac(query.encode()).digest()).decode()
    response = await client.get(
        f"/helper?{query}", headers={"Authorization": f"Bearer {signature}"}
    )
    assert response.status_code == 200, response.text
    assert len(response.content) < ANSWER_LIMIT
    return response.json()


# ── What an agent should read ─────────────────────────────────────────────────────────────────

_BIDI = {0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)}


def shown(text: str, *, limit: int = VALUE_LIMIT) -> str:
    """``text`` as an agent reads it, at most ``limit`` characters ending in "…"."""
    kept = readable(text)
    return kept if len(kept) <= limit else kept[: limit - 1].rstrip() + "…"


def visible(text: str) -> str:
    return " ".join(text.split())


def assert_clean(answer: Any, *, multiline: bool = False) -> None:
    """No None, no control or bidi character (a line break only where allowed), no empty or
    None part in a link: everywhere in ``answer``."""
    for text in strings(answer):
        assert "None" not in text, text[:200]
        for c in text:
            if c == "\n" and multiline:
                continue
            assert unicodedata.category(c) != "Cc" and ord(c) not in _BIDI, (repr(c), text[:200])
        for scheme in ("https://", "http://", "mailto:"):
            if text.startswith(scheme):
                assert text != scheme and not text.endswith(("=", "/?q")), text


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


# ── Help Scout: HTML, parsed ──────────────────────────────────────────────────────────────────


def helpscout_items(tree: Element) -> dict[str, str]:
    found = {}
    for label in tree.find_all("span", "c-sb-list-item__label"):
        value = label.find_all("span", "c-sb-list-item__text")[0]
        name = label.text()[: -len(value.text())].strip() if value.text() else label.text()
        found[name.strip()] = visible(value.text())
    return found


def helpscout_tree(answer: Any) -> Element:
    """The HTML as a browser builds it, checked clean: its text (where white space is
    layout) and every attribute."""
    tree = assert_harmless_html(answer["html"])
    assert_clean(
        [tree.text(), *(v for e in tree.iter() for v in e.attrs.values() if v)], multiline=True
    )
    return tree


async def test_help_scout_shows_data_as_text(client: httpx.AsyncClient) -> None:
    tree = helpscout_tree(await ask_helpscout(client, HOSTILE.email))
    assert not tree.find_all("img") and not tree.find_all("b")
    for element in tree.iter():
        assert not any(name.startswith("on") for name in element.attrs), element
        assert "javascript:" not in (element.attrs.get("href") or "").lower()
    row = HOSTILE.rows[0]
    assert [visible(h.text()) for h in tree.find_all("h4")] == ["Acme Corp Ltd"]
    assert visible(tree.find_all("p", "muted")[0].text()) == XSS
    assert [b.text() for b in tree.find_all("span", "badge")] == [MARKDOWN]
    items = helpscout_items(tree)
    assert items["Seats"] == "42 / 50"
    assert items["Seats used"] == "42"
    assert items["Revenue"] == "$1,234.50"
    assert items["Revenue as written"] == "1,234.50"
    assert items["Notes"] == shown(HUGE)
    assert items["Plan"] == MARKDOWN  # the author's bold around the data, the data as text
    assert [s.text() for s in tree.find_all("strong")] == [MARKDOWN]
    sections = [visible(t.text()) for t in tree.find_all("div", "c-sb-section__title")]
    assert sections == [shown(str(row["region"])), "Account"]
    links = {a.text(): a.attrs["href"] for a in tree.find_all("a")}
    assert (
        links[f"Search {XSS}"]
        == "https://search.example/?q=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
    )
    assert links["Write to billing"] == "mailto:billing@acme.example"


async def test_help_scout_leaves_out_what_shows_a_missing_value(client: httpx.AsyncClient) -> None:
    tree = helpscout_tree(await ask_helpscout(client, NULLS.email))
    assert [visible(h.text()) for h in tree.find_all("h4")] == ["Nulls Inc"]
    assert tree.find_all("p", "muted") == []  # no subtitle: the name is NULL
    assert helpscout_items(tree) == {"Limit": "unlimited", "Plan": "Pro"}
    assert tree.find_all("a") == []  # ?q= and a bare mailto: are left out
    assert tree.find_all("div", "c-sb-section") == []  # a NULL title, and an empty section


# ── There There: every markdown value and name, rendered ──────────────────────────────────────

_COMMONMARK = MarkdownIt("commonmark")


def rendered(markdown: str) -> tuple[str, set[str]]:
    """The text a CommonMark viewer shows for ``markdown``, and the tags it makes."""
    tree = parse_html(_COMMONMARK.render(markdown))
    return visible(tree.text()), {element.tag for element in tree.iter()}


def therethere_rows(answer: Any) -> dict[str, tuple[str, Any]]:
    shown = {}
    for row in answer["data"]:
        name, tags = rendered(row["name"])
        assert tags <= {"p"}, row
        assert name not in shown or name == "Account", row
        shown[name] = (row["type"], row["value"])
    return shown


async def test_there_there_shows_data_as_text(client: httpx.AsyncClient) -> None:
    answer = await ask_therethere(client, HOSTILE.email)
    assert_clean(answer)
    rows = therethere_rows(answer)
    for name, (kind, value) in rows.items():
        if kind == "markdown":
            text, tags = rendered(value)
            assert tags <= ({"p", "strong"} if name == "Plan" else {"p"}), (name, value)
            rows[name] = (kind, text)
    assert rows["Account"] == ("markdown", "Acme Corp Ltd")
    assert rows["Status"] == ("markdown", MARKDOWN)
    assert rows["Seats"] == ("markdown", "42 / 50")
    assert rows["Seats used"] == ("numeric", 42)
    assert rows["Revenue"] == ("markdown", "$1,234.50")
    assert rows["Revenue as written"] == ("markdown", "1,234.50")
    assert rows["Notes"] == ("markdown", shown(HUGE))
    assert rows["Plan"] == ("markdown", MARKDOWN)
    assert rows["Owner"] == ("markdown", XSS)
    assert rows[f"Search {XSS}"] == (
        "url",
        "https://search.example/?q=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E",
    )
    assert rows["Write to billing"] == ("markdown", "billing@acme.example")


async def test_there_there_leaves_out_what_shows_a_missing_value(
    client: httpx.AsyncClient,
) -> None:
    answer = await ask_therethere(client, NULLS.email)
    assert_clean(answer)
    assert [(row["name"], row["value"]) for row in answer["data"]] == [
        ("Account", "Nulls Inc"),
        ("Status", "Pro"),
        ("Limit", "unlimited"),
        ("Plan", "**Pro**"),
    ]


# ── Plain: data in componentPlainText, markdown only where the author wrote it ────────────────


def walk(components: list[Any] | None) -> Iterator[tuple[str, dict[str, Any]]]:
    for component in components or []:
        ((kind, body),) = component.items()
        yield kind, body
        for key in ("rowMainContent", "rowAsideContent", "containerContent"):
            yield from walk(body.get(key))


def plain_rows(components: list[Any]) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for kind, body in walk(components):
        if kind == "componentRow":
            ((label_kind, label),) = body["rowMainContent"][0].items()
            assert label_kind == "componentPlainText"
            found[label["plainText"]] = body["rowAsideContent"]
    return found


async def test_plain_shows_data_as_plain_text(client: httpx.AsyncClient) -> None:
    answer = await ask_plain(client, HOSTILE.email)
    assert_clean(answer)
    (card,) = answer["cards"]
    components = card["components"]
    plain = [body["plainText"] for kind, body in walk(components) if kind == "componentPlainText"]
    markdown = [body["text"] for kind, body in walk(components) if kind == "componentText"]
    assert all("\\" not in text for text in plain), plain
    assert markdown == ["**\\*\\*x\\*\\* \\[a\\]\\(javascript\\:alert\\(1\\)\\)**"]
    assert rendered(markdown[0]) == (MARKDOWN, {"p", "strong"})
    assert plain[:2] == ["Acme Corp Ltd", XSS]
    rows = plain_rows(components)
    aside = {label: row[0] for label, row in rows.items()}
    assert aside["Seats"]["componentPlainText"]["plainText"] == "42 / 50"
    assert aside["Seats used"]["componentPlainText"]["plainText"] == "42"
    assert aside["Revenue"]["componentPlainText"]["plainText"] == "$1,234.50"
    assert aside["Revenue as written"]["componentPlainText"]["plainText"] == "1,234.50"
    assert aside["Notes"]["componentPlainText"]["plainText"] == shown(HUGE)
    assert aside["Owner"]["componentPlainText"]["plainText"] == XSS
    assert "Account" in plain  # the section's title
    buttons = {
        body["linkButtonLabel"]: body["linkButtonUrl"]
        for kind, body in walk(components)
        if kind == "componentLinkButton"
    }
    assert buttons == {
        f"Search {XSS}": "https://search.example/?q=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E",
        "Write to billing": "mailto:billing@acme.example",
    }


async def test_plain_leaves_out_what_shows_a_missing_value(client: httpx.AsyncClient) -> None:
    answer = await ask_plain(client, NULLS.email)
    assert_clean(answer)
    components = answer["cards"][0]["components"]
    assert list(plain_rows(components)) == ["Limit", "Plan"]
    assert not [kind for kind, _ in walk(components) if kind == "componentLinkButton"]


# ── Helper: plain text for its JSON view and its AI ───────────────────────────────────────────


async def test_helper_metadata_is_plain_text(client: httpx.AsyncClient) -> None:
    answer = await ask_helper(client, HOSTILE.email)
    json.dumps(answer, allow_nan=False)
    assert "\\u0000" not in json.dumps(answer)  # PostgreSQL jsonb refuses it
    assert_clean(answer, multiline=True)
    customer = answer["customer"]
    assert customer["name"] == "Acme Corp Ltd"
    metadata = customer["metadata"]
    assert metadata["Account"] == "Acme Corp Ltd"
    assert metadata["About"] == XSS
    assert metadata["Status"] == [MARKDOWN]
    assert metadata["Seats"] == "42 / 50"
    assert metadata["Seats used"] == 42
    assert metadata["Revenue"] == 1234.5
    assert metadata["Revenue as written"] == "1,234.50"
    assert metadata["Notes"] == shown(HUGE)
    assert metadata["Plan"] == MARKDOWN  # no ** of the author's, no backslash escapes
    assert metadata[shown(str(HOSTILE.rows[0]["region"]))] == {"Seat limit": "50"}
    assert metadata["Account details"] == {"Owner": XSS}
    assert customer["actions"] == {
        f"Search {XSS}": "https://search.example/?q=%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E",
        "Write to billing": "mailto:billing@acme.example",
    }


async def test_helper_leaves_out_what_shows_a_missing_value(client: httpx.AsyncClient) -> None:
    answer = await ask_helper(client, NULLS.email)
    assert_clean(answer, multiline=True)
    assert answer["customer"]["metadata"] == {
        "Account": "Nulls Inc",
        "Status": ["Pro"],
        "Limit": "unlimited",
        "Plan": "Pro",
    }
    assert answer["customer"]["actions"] == {}


# ── Every helpdesk: the size cap, and a note instead of a cut ─────────────────────────────────

ASK: dict[str, Callable[[httpx.AsyncClient, str], Any]] = {
    "helpscout": ask_helpscout,
    "therethere": ask_therethere,
    "helper": ask_helper,
    "plain": ask_plain,
    "card": ask_card,
}


@pytest.mark.parametrize("desk", list(ASK))
@pytest.mark.parametrize("customer", CUSTOMERS, ids=lambda customer: customer.email)
async def test_every_answer_is_clean_and_under_the_cap(
    client: httpx.AsyncClient, desk: str, customer: Customer
) -> None:
    answer = await ASK[desk](client, customer.email)
    assert len(json.dumps(answer, ensure_ascii=False).encode()) < ANSWER_LIMIT
    if desk == "helpscout":
        helpscout_tree(answer)
    else:
        assert_clean(answer, multiline=desk in ("helper", "card"))
    text = json.dumps(answer, ensure_ascii=False)
    assert (MORE_NOT_SHOWN in text) == (customer is MANY), desk
    assert "Branch 0" in text if customer is MANY else "Branch" not in text
    if customer is MANY:
        assert "Branch 9" not in text  # trailing accounts dropped whole, not cut


# ── What the commands say about it ────────────────────────────────────────────────────────────

NULLS_LEFT_OUT = [
    "subtitle left out: app.name is empty",
    "field 'Seats' left out: app.seats, app.seat_limit are empty",
    "field 'Seats used' left out: app.seats is empty",
    "field 'Revenue' left out: app.revenue is empty",
    "field 'Revenue as written' left out: app.revenue is empty",
    "field 'Notes' left out: app.notes is empty",
    "link 'Search {{ app.name }}' left out: app.name is empty",
    "link 'Write to billing' left out: app.billing_email is empty",
    "section '{{ app.region }}' left out: app.region is empty",
    "field 'Owner' left out: app.name is empty",
]


def test_preview_and_check_say_what_was_left_out_without_failing(config_path: Path) -> None:
    runner = CliRunner()
    preview = runner.invoke(app, ["preview", NULLS.email, "-c", str(config_path)])
    assert preview.exit_code == 0, preview.output
    check = runner.invoke(app, ["check", "-c", str(config_path), "--email", NULLS.email])
    assert check.exit_code == 0, check.output  # information, not a failure
    for output in (preview.stdout, check.stdout):
        notes = [line for line in output.splitlines() if line.startswith("card: ")]
        assert notes == [f"card: {line}" for line in NULLS_LEFT_OUT], output
