"""There There's custom sidebar sections, end to end: ``{"email"}`` in, typed rows out."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from deskside.errors import BadRequest
from deskside.protocols import Decline, RawRequest
from deskside.protocols.therethere import ThereThere, ThereThereConfig
from helpers import (
    add_customer,
    demo_settings,
    make_demo_database,
    parse_html,
    post_therethere,
    readable,
    serve,
)

pytestmark = pytest.mark.anyio

TYPED_FIELDS = """
[[card.fields]]
label = "Seats used"
type = "number"
value = "app.employees"

[[card.fields]]
label = "Seat share"
type = "number"
value = "app.employees / app.employee_limit"

[[card.fields]]
label = "Paying"
type = "boolean"
value = "app.mrr_cents > 0"

[[card.fields]]
label = "Website"
type = "url"
value = "app.stripe_customer_id"

[[card.fields]]
label = "Plan"
type = "markdown"
template = "**{{ app.plan }}** ({{ app.name }})"
"""

INJECTIONS = [
    "<script>alert(1)</script> <img src=x onerror=alert(1)>",
    "[click](javascript:alert(1)) [site](https://evil.example) <https://evil.example>",
    "![x](https://evil.example/x.png)",
    "**bold** __strong__ *em* _em_ `code`",
    "line one\nline two\r\n# heading\n- item\n> quote",
    "&lt;b&gt; &amp; \\*not em\\*",
    "{{ 7 * 191 }} Zoë 🚀 \u202e",
]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_demo_database(tmp_path_factory.mktemp("therethere") / "demo.db")


@pytest.fixture
def fresh_database(tmp_path: Path) -> str:
    return make_demo_database(tmp_path / "demo.db")


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> Any:
    return demo_settings(monkeypatch, tmp_path, database, card=TYPED_FIELDS)


async def rows_for(settings: Any, document: Any) -> list[dict[str, Any]]:
    async with serve(settings) as client:
        response = await post_therethere(client, document)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert list(answer) == ["data"]
    for row in answer["data"]:
        assert set(row) == {"name", "value", "type"}
        assert row["type"] in {"markdown", "numeric", "date", "boolean", "url"}
    rows: list[dict[str, Any]] = answer["data"]
    return rows


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in rows}


def rendered(markdown: str) -> Any:
    """How a markdown viewer shows a row (CommonMark, raw HTML allowed: the worst case)."""
    return parse_html(MarkdownIt("commonmark", {"html": True}).render(markdown))


# ── Parsing what There There sends ────────────────────────────────────────────────────────────


def parse(body: bytes, *, fold_plus: bool = True) -> Any:
    desk = ThereThere("therethere", ThereThereConfig(kind="therethere", secret=["s" * 8]))
    return desk.parse(RawRequest("POST", body, b"", {}), fold_plus=fold_plus)


def test_parse_reads_the_address() -> None:
    lookup = parse(b'{"email": " Owner+Test@Acme.example "}')
    assert lookup.emails == ("owner+test@acme.example", "owner@acme.example")
    assert lookup.context == {"desk": "therethere"}
    assert parse(b'{"email":"a+b@x.example"}', fold_plus=False).emails == ("a+b@x.example",)


@pytest.mark.parametrize("body", [b"{}", b'{"email": null}', b'{"email": ""}', b'{"email": "x"}'])
def test_parse_without_an_address_declines(body: bytes) -> None:
    with pytest.raises(Decline):
        parse(body)


@pytest.mark.parametrize(
    "body", [b'{"email": 5}', b'{"email": ["a@x.example"]}', b'{"email": {}}', b"[]", b'"a"']
)
def test_parse_refuses_wrong_types(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse(body)


# ── Answers over HTTP ─────────────────────────────────────────────────────────────────────────


async def test_rows_are_typed(settings: Any) -> None:
    rows = await rows_for(settings, {"email": "owner@acme.example"})
    row = by_name(rows)
    assert row["Status"] == {"name": "Status", "value": "Pro · Owner", "type": "markdown"}
    assert row["Seats used"] == {"name": "Seats used", "value": 42, "type": "numeric"}
    assert row["Seat share"]["type"] == "numeric"
    assert row["Seat share"]["value"] == pytest.approx(0.84)
    assert row["Paying"] == {"name": "Paying", "value": True, "type": "boolean"}
    assert row["Renews"]["type"] == "date"
    assert date.fromisoformat(row["Renews"]["value"])
    assert row["Last seen"]["type"] == "date"
    assert row["Last seen"]["value"].endswith("Z")
    assert datetime.fromisoformat(row["Last seen"]["value"]).utcoffset() is not None
    assert row["Open in admin"] == {
        "name": "Open in admin",
        "value": "https://admin.hr-demo.example/companies/1",
        "type": "url",
    }
    assert row["Stripe dashboard"]["type"] == "url"
    assert row["Employees"]["type"] == "markdown"
    assert rendered(row["Employees"]["value"]).text().strip() == "42 / 50"
    assert rendered(row["MRR"]["value"]).text().strip() == "$249.00"
    plan = rendered(row["Plan"]["value"])
    assert [s.text() for s in plan.find_all("strong")] == ["Pro"]
    assert plan.text().strip() == "Pro (Olivia Owner)"
    assert "Website" not in row  # "cus_demo0001" is not a URL
    assert [r["name"] for r in rows][:2] == ["Account", "Status"]
    assert row["Account"] == {"name": "Account", "value": "Acme HR", "type": "markdown"}


async def test_json_types_survive_the_wire(settings: Any) -> None:
    async with serve(settings) as client:
        response = await post_therethere(client, {"email": "owner@acme.example"})
    raw = json.loads(response.content)
    kinds = {row["name"]: type(row["value"]) for row in raw["data"]}
    assert kinds["Seats used"] is int
    assert kinds["Seat share"] is float
    assert kinds["Paying"] is bool
    assert kinds["Renews"] is str


async def test_an_expired_trial_is_in_the_status_row(settings: Any) -> None:
    row = by_name(await rows_for(settings, {"email": "lapsed@globex.example"}))
    assert row["Status"]["value"] == "Starter · Owner · Trial expired"
    assert row["Paying"]["value"] is False
    assert row["Trial ends"]["type"] == "date"


async def test_address_case_and_spaces_do_not_matter(settings: Any) -> None:
    rows = await rows_for(settings, {"email": "  OWNER+support@Acme.Example "})
    assert by_name(rows)["Seats used"]["value"] == 42


@pytest.mark.parametrize(
    "document",
    [
        {"email": "nobody@nowhere.example"},
        {"email": "test@example.com"},  # the settings page's Test button
        {"email": None},
        {},
    ],
)
async def test_unknown_customers_get_no_rows(settings: Any, document: Any) -> None:
    assert await rows_for(settings, document) == []


# ── Customer data is never markdown ───────────────────────────────────────────────────────────


async def test_the_demos_hostile_customer_is_text(settings: Any) -> None:
    rows = await rows_for(settings, {"email": "mallory@evil.example"})
    plan = rendered(by_name(rows)["Plan"]["value"])
    assert [e.tag for e in plan.iter()] == ["p", "strong"]
    assert plan.text().strip() == (
        "Pro (<img src=x onerror=alert(1)> [click](javascript:alert(1)) **Mallory**)"
    )


@pytest.mark.parametrize("payload", INJECTIONS)
async def test_injected_customer_data_never_becomes_markdown(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_database: str, payload: str
) -> None:
    add_customer(
        fresh_database,
        "victim@evil.example",
        company=payload,
        name=payload,
        plan=payload,
        status=payload,
        stripe_customer_id=payload,
        modules=payload.replace(",", " "),
    )
    settings = demo_settings(monkeypatch, tmp_path, fresh_database, card=TYPED_FIELDS)
    rows = await rows_for(settings, {"email": "victim@evil.example"})
    row = by_name(rows)
    expected_words = readable(payload).split()  # as agents read it: no control or bidi mark
    # Text rows: exactly the customer's text, no element but the paragraph.
    for name in ("Status", "Subscription", "Stripe customer"):
        tree = rendered(row[name]["value"])
        assert [e.tag for e in tree.iter()] == ["p"], (name, row[name])
    assert rendered(row["Stripe customer"]["value"]).text().split() == expected_words
    assert (
        rendered(row["Subscription"]["value"]).text().split()
        == readable(payload.replace("_", " ")).split()
    )
    # Markdown rows: only the author's ** survives.
    for name, strong in (("Plan", [payload]), ("Modules", [payload.replace(",", " ")])):
        tree = rendered(row[name]["value"])
        assert {e.tag for e in tree.iter()} == {"p", "strong"}, (name, row[name])
        assert [" ".join(s.text().split()) for s in tree.find_all("strong")] == [
            readable(s) for s in strong
        ]
    # URL rows are only ever http(s), and the customer's text is not one.
    assert "Website" not in row
    for url in (r["value"] for r in rows if r["type"] == "url"):
        assert url.startswith("https://")
        assert not any(c.isspace() for c in url) and "<" not in url


async def test_script_urls_in_customer_data_are_dropped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_database: str
) -> None:
    add_customer(
        fresh_database,
        "victim@evil.example",
        company="Evil",
        name="Eve",
        stripe_customer_id="javascript:alert(1)",
    )
    add_customer(
        fresh_database,
        "fine@good.example",
        company="Good",
        name="Gus",
        stripe_customer_id="https://good.example/account",
    )
    links = '[[card.links]]\nlabel = "Raw link"\nurl = "{{ app.stripe_customer_id }}"\n'
    settings = demo_settings(monkeypatch, tmp_path, fresh_database, card=TYPED_FIELDS + links)
    row = by_name(await rows_for(settings, {"email": "victim@evil.example"}))
    assert "Website" not in row and "Raw link" not in row
    urls = [r["value"] for r in row.values() if r["type"] == "url"]
    assert urls and all(url.startswith("https://") for url in urls)
    assert not any(r["value"] == "javascript:alert(1)" for r in row.values())
    row = by_name(await rows_for(settings, {"email": "fine@good.example"}))
    assert row["Website"] == {
        "name": "Website",
        "value": "https://good.example/account",
        "type": "url",
    }
    assert row["Raw link"]["value"] == "https://good.example/account"
