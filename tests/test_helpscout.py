"""Help Scout's Dynamic Content app, end to end: signed JSON in, ``{"html": …}`` out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deskside.errors import BadRequest
from deskside.protocols import Decline, RawRequest
from deskside.protocols.helpscout import HelpScout, HelpScoutConfig
from helpers import (
    Element,
    add_customer,
    assert_harmless_html,
    demo_settings,
    helpscout_request,
    make_demo_database,
    post_helpscout,
    readable,
    serve,
)

pytestmark = pytest.mark.anyio

INJECTIONS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "\"><svg onload=alert(1)> ' onfocus='alert(1)",
    "[click](javascript:alert(1)) ![x](https://evil.example/x.png)",
    "**bold** _em_ `code` <b>b</b>",
    "line one\nline two\r\n# heading",
    "{{ 7 * 191 }} Zoë 🚀 \u202e",
]


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_demo_database(tmp_path_factory.mktemp("helpscout") / "demo.db")


@pytest.fixture
def fresh_database(tmp_path: Path) -> str:
    """A demo database of the test's own, to add customers to."""
    return make_demo_database(tmp_path / "demo.db")


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> Any:
    return demo_settings(monkeypatch, tmp_path, database)


async def sidebar_html(settings: Any, document: Any) -> Element:
    async with serve(settings) as client:
        response = await post_helpscout(client, document)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert list(answer) == ["html"]
    assert not answer["html"].lstrip().lower().startswith(("<html", "<!doctype", "<body"))
    return assert_harmless_html(answer["html"])


def titles(tree: Element) -> list[str]:
    return [h4.text() for h4 in tree.find_all("h4")]


def values(tree: Element) -> dict[str, str]:
    """Label → value of every two-line list item."""
    found = {}
    for label in tree.find_all("span", "c-sb-list-item__label"):
        text, value = label.children  # "Plan " <span class="c-sb-list-item__text">Pro</span>
        assert isinstance(text, str) and isinstance(value, Element)
        assert "c-sb-list-item__text" in value.classes
        found[text.strip()] = value.text()
    return found


def muted(tree: Element) -> list[str]:
    return [p.text() for p in tree.find_all("p", "muted")]


# ── Parsing what Help Scout sends ─────────────────────────────────────────────────────────────


def protocol(**config: Any) -> HelpScout:
    return HelpScout("helpscout", HelpScoutConfig.model_validate({"kind": "helpscout"} | config))


def parse(document: Any, *, fold_plus: bool = True, **config: Any) -> Any:
    body = json.dumps(document).encode()
    request = RawRequest(method="POST", body=body, query=b"", headers={})
    return protocol(secret="s", **config).parse(request, fold_plus=fold_plus)


def test_parse_reads_every_address_name_and_context() -> None:
    document = helpscout_request("Fred@Example.com ", "f.smith@example.org")
    lookup = parse(document)
    assert lookup.emails == ("fred@example.com", "f.smith@example.org")
    assert lookup.name == "Fred Smith"
    assert lookup.context == {
        "desk": "helpscout",
        "mailbox_id": 87654,
        "conversation_id": 123,
        "conversation_number": 45,
        "agent_role": "owner",
    }


def test_parse_accepts_a_draft_string_ids_and_a_null_email() -> None:
    document = {
        "ticket": False,
        "customer": {"id": "54321", "email": None, "emails": ["pat@initech.example"]},
        "mailbox": {"id": "87654"},
    }
    lookup = parse(document, mailboxes=[87654])
    assert lookup.emails == ("pat@initech.example",)
    assert lookup.context["mailbox_id"] == 87654
    assert lookup.context["conversation_id"] is None


@pytest.mark.parametrize("mailbox", [{"id": 2}, {"id": "2"}, {"id": "²"}, {"id": True}, None])
def test_parse_declines_other_mailboxes(mailbox: Any) -> None:
    document = helpscout_request("owner@acme.example")
    document["mailbox"] = mailbox
    with pytest.raises(Decline, match="not set up for this mailbox"):
        parse(document, mailboxes=[1])


@pytest.mark.parametrize(
    "document",
    [
        {"customer": "owner@acme.example"},
        {"customer": ["owner@acme.example"]},
        {"customer": {"email": "owner@acme.example"}, "ticket": True},
        {"customer": {"email": "owner@acme.example"}, "mailbox": [1]},
        {"customer": {"email": "owner@acme.example"}, "user": "Ann"},
    ],
    ids=["customer-string", "customer-list", "ticket-true", "mailbox-list", "user-string"],
)
def test_parse_refuses_wrong_types(document: Any) -> None:
    with pytest.raises(BadRequest):
        parse(document)


@pytest.mark.parametrize(
    "customer",
    [{}, {"email": None}, {"email": 5}, {"emails": "owner@acme.example"}, {"emails": [None, ""]}],
)
def test_parse_without_an_address_declines(customer: Any) -> None:
    with pytest.raises(Decline, match="no customer email address"):
        parse({"customer": customer})


def test_help_scout_secrets_are_at_most_40_characters() -> None:
    with pytest.raises(ValueError, match="at most 40"):
        protocol(secret="x" * 41)
    assert protocol(secret="x" * 40)


# ── Answers over HTTP ─────────────────────────────────────────────────────────────────────────


async def test_a_customer_gets_the_style_guide_sidebar(settings: Any) -> None:
    tree = await sidebar_html(settings, helpscout_request("owner@acme.example"))
    assert titles(tree) == ["Acme HR"]
    assert muted(tree) == ["Olivia Owner · owner"]
    assert [(b.text(), b.classes) for b in tree.find_all("span", "badge")] == [
        ("Pro", ["badge", "blue"]),
        ("Owner", ["badge", "purple"]),
    ]
    shown = values(tree)
    assert shown["Employees"] == "42 / 50"
    assert shown["MRR"] == "$249.00"
    assert shown["Subscription"] == "active"
    assert shown["Stripe customer"] == "cus_demo0001"
    assert all("c-sb-list--two-line" in ul.classes for ul in tree.find_all("ul", "c-sb-list"))
    sections = tree.find_all("div", "c-sb-section")
    assert [s.find_all("div", "c-sb-section__title")[0].text().strip() for s in sections] == [
        "Billing",
        "Account",
    ]
    assert all("c-sb-section--toggle" in s.classes for s in sections)
    assert ["open" in s.classes for s in sections] == [True, False]
    links = tree.find_all("a")
    assert {a.text() for a in links} >= {"Open in admin", "Stripe dashboard", "owner@acme.example"}
    for a in links:
        assert a.attrs["target"] == "_blank"
        assert a.attrs["rel"] == "noopener noreferrer"


async def test_an_expired_trial_shows_a_red_badge(settings: Any) -> None:
    tree = await sidebar_html(settings, helpscout_request("lapsed@globex.example"))
    assert titles(tree) == ["Globex"]
    badges = {b.text(): b.classes for b in tree.find_all("span", "badge")}
    assert badges["Trial expired"] == ["badge", "red"]
    assert "Trial" not in badges


async def test_every_address_is_looked_up(settings: Any) -> None:
    document = helpscout_request("pat@initech.example", "pat@initrode.example")
    tree = await sidebar_html(settings, document)
    assert titles(tree) == ["Initech", "Initrode"]
    assert len(tree.find_all("hr")) == 1


async def test_a_null_email_with_an_emails_list(settings: Any) -> None:
    document = helpscout_request()
    document["customer"] |= {"email": None, "emails": ["nobody@x.example", "PAT@INITRODE.example"]}
    tree = await sidebar_html(settings, document)
    assert titles(tree) == ["Initrode"]


async def test_a_plus_address_finds_the_main_account(settings: Any) -> None:
    tree = await sidebar_html(settings, helpscout_request("owner+test@acme.example"))
    assert titles(tree) == ["Acme HR"]


async def test_plus_folding_can_be_turned_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database, fold_plus=False)
    tree = await sidebar_html(settings, helpscout_request("owner+test@acme.example"))
    assert titles(tree) == []
    assert muted(tree) == ["No customer found for owner+test@acme.example."]


async def test_a_draft_with_string_ids_is_answered(settings: Any) -> None:
    document = helpscout_request("owner@acme.example", ticket=False)
    document["customer"]["id"] = "54321"
    document["mailbox"]["id"] = "87654"
    document["user"]["id"] = "9"
    tree = await sidebar_html(settings, document)
    assert titles(tree) == ["Acme HR"]


async def test_an_unknown_customer_gets_a_muted_line(settings: Any) -> None:
    tree = await sidebar_html(settings, helpscout_request("nobody@nowhere.example"))
    assert [(e.tag, e.classes) for e in tree.iter()] == [("p", ["muted"])]
    assert muted(tree) == ["No customer found for nobody@nowhere.example."]


async def test_a_conversation_without_an_address_gets_a_muted_line(settings: Any) -> None:
    tree = await sidebar_html(settings, helpscout_request())
    assert muted(tree) == ["This conversation has no customer email address."]


@pytest.mark.parametrize(
    ("mailbox_id", "answered"),
    [(1, True), ("1", True), (2, False), ("2", False), (None, False)],
)
async def test_the_mailbox_filter(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: str,
    mailbox_id: Any,
    answered: bool,
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database, helpscout="mailboxes = [1]")
    document = helpscout_request("owner@acme.example")
    document["mailbox"]["id"] = mailbox_id
    tree = await sidebar_html(settings, document)
    if answered:
        assert titles(tree) == ["Acme HR"]
    else:
        assert titles(tree) == []
        assert muted(tree) == ["deskside is not set up for this mailbox."]


# ── Customer data is never markup ─────────────────────────────────────────────────────────────


async def test_the_demos_hostile_customer_is_shown_as_text(settings: Any) -> None:
    tree = await sidebar_html(settings, helpscout_request("mallory@evil.example"))
    assert titles(tree) == [
        '"><script>alert("xss")</script> [Evil Corp](https://evil.example) _Ltd_'
    ]
    assert muted(tree)[0].startswith("<img src=x onerror=alert(1)> [click](javascript:alert(1))")
    assert not tree.find_all("em")


@pytest.mark.parametrize("payload", INJECTIONS)
async def test_injected_customer_data_never_becomes_markup(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_database: str, payload: str
) -> None:
    database = fresh_database
    add_customer(
        database,
        "victim@evil.example",
        company=payload,
        name=payload,
        role=payload,
        status=payload,
        stripe_customer_id=payload,
        modules=payload.replace(",", " "),
    )
    settings = demo_settings(monkeypatch, tmp_path, database)
    tree = await sidebar_html(settings, helpscout_request("victim@evil.example"))
    # The customer's text exactly as an agent reads it: no control or bidi character, and
    # white space is the browser's to lay out.
    text = readable(payload)
    assert [readable(title) for title in titles(tree)] == [text]
    assert [readable(line) for line in muted(tree)] == [f"{text} · {text}"]
    shown = {label: readable(value) for label, value in values(tree).items()}
    assert shown["Subscription"] == readable(payload.replace("_", " "))  # the demo's template
    assert shown["Stripe customer"] == text
    # The author's **bold** around each module is the only formatting in the sidebar; line
    # breaks in a markdown value become spaces.
    (bold,) = tree.find_all("strong")
    assert readable(bold.text()) == text
    assert not tree.find_all("em") and not tree.find_all("code")
    stripe = [a.attrs["href"] for a in tree.find_all("a") if a.text() == "Stripe dashboard"]
    assert stripe and stripe[0].startswith("https://dashboard.stripe.com/customers/")
    assert "<" not in stripe[0] and '"' not in stripe[0] and " " not in stripe[0]


async def test_script_urls_in_customer_data_are_dropped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_database: str
) -> None:
    database = fresh_database
    add_customer(
        database,
        "victim@evil.example",
        company="Evil",
        name="Eve",
        stripe_customer_id="javascript:alert(document.domain)",
    )
    add_customer(
        database,
        "fine@good.example",
        company="Good",
        name="Gus",
        stripe_customer_id="https://good.example/account",
    )
    card = """
[[card.fields]]
label = "Website"
type = "url"
value = "app.stripe_customer_id"

[[card.links]]
label = "Raw link"
url = "{{ app.stripe_customer_id }}"
"""
    settings = demo_settings(monkeypatch, tmp_path, database, card=card)
    tree = await sidebar_html(settings, helpscout_request("victim@evil.example"))
    assert titles(tree) == ["Evil"]
    assert "Website" not in values(tree)
    assert "Raw link" not in {a.text() for a in tree.find_all("a")}
    # The same layout shows a real URL, as a link.
    tree = await sidebar_html(settings, helpscout_request("fine@good.example"))
    assert values(tree)["Website"] == "https://good.example/account"
    hrefs = {a.text(): a.attrs["href"] for a in tree.find_all("a")}
    assert hrefs["Raw link"] == "https://good.example/account"


async def test_a_custom_template_is_autoescaped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    (tmp_path / "sidebar.html").write_text(
        '<p class="who">{{ app.name }}</p>{% for card in sidebar.cards %}<h4>{{ card.title }}</h4>'
        '{% endfor %}{% if not sidebar.found %}<p class="muted">Nobody here</p>{% endif %}',
        encoding="utf-8",
    )
    settings = demo_settings(monkeypatch, tmp_path, database, helpscout='template = "sidebar.html"')
    tree = await sidebar_html(settings, helpscout_request("mallory@evil.example"))
    assert tree.find_all("p", "who")[0].text().startswith("<img src=x onerror=alert(1)>")
    assert titles(tree)[0].startswith('"><script>')
    # An unknown customer has no `app` record: it renders empty, not as an error.
    tree = await sidebar_html(settings, helpscout_request("nobody@nowhere.example"))
    assert tree.find_all("p", "who")[0].text() == ""
    assert muted(tree) == ["Nobody here"]
