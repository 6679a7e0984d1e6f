"""Renderers: display strings, Help Scout HTML, There There rows, Plain components and Helper
metadata from a neutral Sidebar; and how much of one an answer holds."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from deskside.card import Badge, Card, Color, Field, FieldType, Link, Section, Sidebar
from deskside.render.budget import ANSWER_BYTES, fit
from deskside.render.format import display, json_number
from deskside.render.helper import actions, metadata
from deskside.render.helpscout import render_html
from deskside.render.markdown import escape_markdown, markdown_to_html, markdown_to_text
from deskside.render.plain import card_components
from deskside.render.therethere import render_rows
from helpers import assert_harmless_html, parse_html, readable

INJECTIONS = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "' onmouseover='alert(1)",
    "javascript:alert(1)",
    "[click](javascript:alert(1))",
    "[site](https://evil.example)",
    "![pixel](https://evil.example/p.png)",
    "<https://evil.example>",
    "**bold** __strong__ *em* _em_ ~~gone~~",
    "`code` ``more``",
    "line one\nline two\r\n# heading\n- item\n1. item\n> quote",
    "&lt;b&gt; &amp; &#60;script&#62;",
    "<a href='https://evil.example'>x</a>",
    "<!-- comment --> <![CDATA[x]]>",
    "{{ 7 * 191 }} {% raw %}",
    "Zoë 🚀 \u202eevil\u202c \u2028sep",
    "\\*escaped\\* \\\\",
]


def field(value: Any, type_: FieldType = FieldType.TEXT, **kw: Any) -> Field:
    return Field(label="Label", value=value, type=type_, **kw)


@pytest.mark.parametrize(
    ("value", "type_", "currency", "expected"),
    [
        (1234567, FieldType.NUMBER, None, "1,234,567"),
        (Decimal("1234.5"), FieldType.NUMBER, None, "1,234.5"),
        (0.25, FieldType.NUMBER, None, "0.25"),
        (3.0, FieldType.NUMBER, None, "3"),
        (249, FieldType.CURRENCY, "USD", "$249.00"),
        (249.0, FieldType.CURRENCY, None, "$249.00"),
        (Decimal("1234.5"), FieldType.CURRENCY, "EUR", "€1,234.50"),
        (-5, FieldType.CURRENCY, "GBP", "-£5.00"),
        (1234, FieldType.CURRENCY, "JPY", "¥1,234"),
        (10, FieldType.CURRENCY, "BRL", "BRL 10.00"),
        (date(2027, 3, 12), FieldType.DATE, None, "12 Mar 2027"),
        (
            datetime(2027, 3, 2, 1, 5, tzinfo=timezone(timedelta(hours=3))),
            FieldType.DATETIME,
            None,
            "1 Mar 2027, 22:05 UTC",
        ),
        (date(2027, 3, 12), FieldType.DATETIME, None, "12 Mar 2027"),
        (True, FieldType.BOOLEAN, None, "Yes"),
        (False, FieldType.BOOLEAN, None, "No"),
        ("Pro", FieldType.TEXT, None, "Pro"),
    ],
)
def test_display(value: Any, type_: FieldType, currency: str | None, expected: str) -> None:
    assert display(field(value, type_, currency=currency)) == expected


def test_json_numbers_stay_numbers() -> None:
    assert json_number(42) == 42 and isinstance(json_number(42), int)
    assert json_number(Decimal("12.50")) == 12.5
    assert json_number(Decimal("12")) == 12 and isinstance(json_number(Decimal("12")), int)
    with pytest.raises(TypeError):
        json_number(True)


# ── Help Scout HTML ───────────────────────────────────────────────────────────────────────────

FULL = Sidebar(
    emails=("owner@acme.example",),
    cards=(
        Card(
            title="Acme HR",
            subtitle="Olivia Owner · owner",
            badges=(Badge(text="Pro", color=Color.BLUE), Badge(text="Old", color=Color.GREY)),
            fields=(
                Field(label="Employees", value="42 / 50"),
                Field(label="MRR", value=249, type=FieldType.CURRENCY, currency="USD"),
                Field(label="Site", value="https://acme.example/", type=FieldType.URL),
                Field(label="Email", value="owner@acme.example", type=FieldType.EMAIL),
                Field(label="Modules", value="**payroll**", type=FieldType.MARKDOWN),
            ),
            links=(Link(label="Open in admin", url="https://admin.example/1"),),
            sections=(
                Section(title="Billing", icon="cart", fields=(Field(label="Plan", value="Pro"),)),
                Section(
                    title="Account",
                    collapsed=True,
                    links=(Link(label="Profile", url="https://admin.example/u/1"),),
                ),
            ),
        ),
        Card(title="Initrode"),
    ),
    notes=("Billing API unavailable",),
)


def test_help_scout_markup_uses_the_sidebar_style_guide() -> None:
    tree = assert_harmless_html(render_html(FULL))
    assert [h.text() for h in tree.find_all("h4")] == ["Acme HR", "Initrode"]
    assert len(tree.find_all("hr")) == 1
    assert tree.find_all("p", "muted")[0].text() == "Olivia Owner · owner"
    assert [(b.classes, b.text()) for b in tree.find_all("span", "badge")] == [
        (["badge", "blue"], "Pro"),
        (["badge"], "Old"),
    ]
    lists = tree.find_all("ul", "c-sb-list")
    assert all("c-sb-list--two-line" in ul.classes for ul in lists)
    labels = [item.text() for item in tree.find_all("span", "c-sb-list-item__label")]
    assert "Employees 42 / 50" in labels
    assert "MRR $249.00" in labels
    assert tree.find_all("li", "c-sb-list-divider")[0].attrs["role"] == "separator"
    sections = tree.find_all("div", "c-sb-section")
    assert [s.classes for s in sections] == [
        ["c-sb-section", "c-sb-section--toggle", "open", "is-persisted"],
        ["c-sb-section", "c-sb-section--toggle", "is-persisted"],
    ]
    title = sections[0].find_all("div", "c-sb-section__title")[0]
    assert "js-sb-toggle" in title.classes
    assert title.text().strip() == "Billing"
    assert title.find_all("i", "icon-cart")
    assert sections[0].find_all("div", "c-sb-section__body")
    assert [strong.text() for strong in tree.find_all("strong")] == ["payroll"]
    assert [p.text() for p in tree.find_all("p", "red")] == ["Billing API unavailable"]


def test_every_help_scout_link_opens_in_a_new_tab_without_opener() -> None:
    sidebar = FULL.model_copy(
        update={
            "cards": (
                *FULL.cards,
                Card(
                    title="x",
                    fields=(field("[docs](https://docs.example)", FieldType.MARKDOWN),),
                ),
            )
        }
    )
    links = parse_html(render_html(sidebar)).find_all("a")
    assert {a.attrs["href"] for a in links} == {
        "https://acme.example/",
        "mailto:owner@acme.example",
        "https://admin.example/1",
        "https://admin.example/u/1",
        "https://docs.example",
    }
    for a in links:
        assert a.attrs.get("target") == "_blank"
        assert set((a.attrs.get("rel") or "").split()) == {"noopener", "noreferrer"}


def test_help_scout_message_replaces_everything() -> None:
    sidebar = Sidebar(message="deskside is not set up for this mailbox.", cards=FULL.cards)
    tree = parse_html(render_html(sidebar))
    assert [(e.tag, e.classes, e.text()) for e in tree.iter()] == [
        ("p", ["muted"], "deskside is not set up for this mailbox.")
    ]


def test_help_scout_not_found_and_could_not_look_up() -> None:
    emails = ("nobody@x.example", "nobody2@x.example")
    tree = parse_html(render_html(Sidebar(emails=emails)))
    assert [p.text() for p in tree.find_all("p", "muted")] == [
        "No customer found for nobody@x.example, nobody2@x.example."
    ]
    tree = parse_html(render_html(Sidebar(emails=emails, notes=("App database unavailable",))))
    assert [p.text() for p in tree.find_all("p")] == [
        "Could not look up nobody@x.example, nobody2@x.example.",
        "App database unavailable",
    ]


def injected_sidebar(payload: str) -> Sidebar:
    """``payload`` in every slot of a sidebar that customer data can reach."""
    return Sidebar(
        emails=(payload,),
        cards=(
            Card(
                title=payload,
                subtitle=payload,
                badges=(Badge(text=payload),),
                fields=(
                    Field(label=payload, value=payload),
                    Field(label="md", value=escape_markdown(payload), type=FieldType.MARKDOWN),
                    Field(label="url", value="https://x.example/?q=" + payload, type=FieldType.URL),
                    Field(label="mail", value=payload + "@x.example", type=FieldType.EMAIL),
                ),
                links=(Link(label=payload, url="https://x.example/" + payload),),
                sections=(Section(title=payload, fields=(Field(label="s", value=payload),)),),
            ),
        ),
        notes=(payload,),
    )


@pytest.mark.parametrize("payload", INJECTIONS)
def test_help_scout_html_escapes_customer_data(payload: str) -> None:
    html = render_html(injected_sidebar(payload))
    tree = assert_harmless_html(html)
    # Every tag and attribute is the template's own: none comes from the payload.
    tags = {e.tag for e in tree.iter()}
    assert tags <= {"h4", "p", "span", "ul", "li", "a", "div", "i", "hr"}
    for a in tree.find_all("a"):
        assert set(a.attrs) == {"href", "target", "rel"} | (
            {"class"} if "class" in a.attrs else set()
        )
    # The payload is shown as text, exactly as an agent reads it (without controls and bidi
    # marks; white space is the browser's to lay out).
    expected = readable(payload)
    assert visible(tree.find_all("h4")[0].text()) == expected
    assert visible(tree.find_all("span", "badge")[0].text()) == expected
    assert visible(tree.find_all("p", "red")[0].text()) == expected
    values = [visible(e.text()) for e in tree.find_all("span", "c-sb-list-item__text")]
    assert values[0] == expected
    # Escaped markdown becomes text only: no element of its own.
    markdown_value = tree.find_all("span", "c-sb-list-item__text")[1]
    assert markdown_value.find_all() == []
    assert visible(markdown_value.text()) == expected


def visible(text: str) -> str:
    """What a browser shows of a text node: white space runs as one space."""
    return " ".join(text.split())


def test_markdown_links_to_scripts_are_not_rendered() -> None:
    source = "[a](javascript:alert(1)) [b](JAVASCRIPT:x) [c](data:text/html,x)"
    tree = parse_html(markdown_to_html(source))
    assert tree.iter() == []
    assert tree.text() == source
    source = "<b>raw</b> <script>x</script>"
    tree = parse_html(markdown_to_html(source))
    assert tree.iter() == []
    assert tree.text() == source


def _reference_html(sidebar: Sidebar) -> str:
    """The sidebar as the Jinja template Help Scout's markup was first written in renders it:
    the built-in renderer writes the same markup without a template."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from deskside.render import helpscout

    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent / "data"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(helpscout._ENV.filters)
    return env.get_template("helpscout_sidebar.html").render(sidebar=sidebar).strip()


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(INJECTIONS)
_FIELDS = st.lists(
    st.builds(
        Field,
        label=_TEXT,
        value=_TEXT | st.integers() | st.booleans() | st.dates(),
        type=st.sampled_from(FieldType),
        currency=st.sampled_from([None, "EUR"]),
    ),
    max_size=3,
)
_LINKS = st.lists(st.builds(Link, label=_TEXT, url=_TEXT), max_size=2)
_SECTIONS = st.lists(
    st.builds(
        Section,
        title=_TEXT,
        icon=st.sampled_from([None, "cart", 'x"y']),
        collapsed=st.booleans(),
        fields=_FIELDS.map(tuple),
        links=_LINKS.map(tuple),
    ),
    max_size=2,
)
_CARDS = st.lists(
    st.builds(
        Card,
        title=_TEXT,
        subtitle=st.none() | _TEXT,
        badges=st.lists(st.builds(Badge, text=_TEXT, color=st.sampled_from(Color))).map(tuple),
        fields=_FIELDS.map(tuple),
        links=_LINKS.map(tuple),
        sections=_SECTIONS.map(tuple),
    ),
    max_size=3,
)


@settings(max_examples=150, deadline=None)
@given(
    cards=_CARDS,
    emails=st.lists(_TEXT, max_size=3),
    notes=st.lists(_TEXT, max_size=2),
    message=st.none() | _TEXT,
)
def test_help_scout_markup_is_what_its_template_made(
    cards: list[Card], emails: list[str], notes: list[str], message: str | None
) -> None:
    sidebar = Sidebar(emails=tuple(emails), cards=tuple(cards), notes=tuple(notes), message=message)
    assert render_html(sidebar) == _reference_html(sidebar)


@pytest.mark.parametrize("payload", INJECTIONS)
def test_help_scout_markup_of_fixed_sidebars_is_what_its_template_made(payload: str) -> None:
    for sidebar in (FULL, injected_sidebar(payload), Sidebar(emails=("a@b.example",))):
        assert render_html(sidebar) == _reference_html(sidebar)


# ── There There rows ──────────────────────────────────────────────────────────────────────────


def test_there_there_rows_are_typed() -> None:
    sidebar = Sidebar(
        emails=("owner@acme.example",),
        cards=(
            Card(
                title="Acme HR",
                badges=(Badge(text="Pro"), Badge(text="Owner")),
                fields=(
                    Field(label="Seats", value=42, type=FieldType.NUMBER),
                    Field(label="Ratio", value=Decimal("0.75"), type=FieldType.NUMBER),
                    Field(label="MRR", value=249, type=FieldType.CURRENCY, currency="USD"),
                    Field(label="Renews", value=date(2027, 3, 12), type=FieldType.DATE),
                    Field(
                        label="Seen",
                        value=datetime(2027, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))),
                        type=FieldType.DATETIME,
                    ),
                    Field(label="Owner", value=True, type=FieldType.BOOLEAN),
                    Field(label="Site", value="https://acme.example/", type=FieldType.URL),
                    Field(label="Modules", value="**payroll**", type=FieldType.MARKDOWN),
                    Field(label="Plan", value="Pro_Plus"),
                ),
                links=(Link(label="Admin", url="https://admin.example/1"),),
                sections=(Section(title="S", fields=(Field(label="In section", value="x"),)),),
            ),
        ),
        notes=("Billing API unavailable",),
    )
    rows = json.loads(json.dumps(render_rows(sidebar)))
    assert rows == [
        {"name": "Account", "value": "Acme HR", "type": "markdown"},
        {"name": "Status", "value": "Pro · Owner", "type": "markdown"},
        {"name": "Seats", "value": 42, "type": "numeric"},
        {"name": "Ratio", "value": 0.75, "type": "numeric"},
        {"name": "MRR", "value": "\\$249\\.00", "type": "markdown"},
        {"name": "Renews", "value": "2027-03-12", "type": "date"},
        {"name": "Seen", "value": "2027-03-01T12:00:00Z", "type": "date"},
        {"name": "Owner", "value": True, "type": "boolean"},
        {"name": "Site", "value": "https://acme.example/", "type": "url"},
        {"name": "Modules", "value": "**payroll**", "type": "markdown"},
        {"name": "Plan", "value": "Pro\\_Plus", "type": "markdown"},
        {"name": "Admin", "value": "https://admin.example/1", "type": "url"},
        {"name": "In section", "value": "x", "type": "markdown"},
        {"name": "Note", "value": "Billing API unavailable", "type": "markdown"},
    ]
    assert datetime.fromisoformat(rows[6]["value"]) == datetime(2027, 3, 1, 12, tzinfo=UTC)


def test_there_there_names_each_account_when_there_are_several() -> None:
    sidebar = Sidebar(cards=(Card(title="Initech"), Card(title="Initrode")))
    assert render_rows(sidebar) == [
        {"name": "Account", "value": "Initech", "type": "markdown"},
        {"name": "Account", "value": "Initrode", "type": "markdown"},
    ]


def test_there_there_unknown_or_declined_is_empty() -> None:
    assert render_rows(Sidebar(emails=("nobody@x.example",))) == []
    assert render_rows(Sidebar(message="No customer email address.", cards=FULL.cards)) == []


def rendered_markdown(value: str) -> str:
    """How a markdown viewer shows ``value`` (CommonMark with raw HTML on: the worst case)."""
    return MarkdownIt("commonmark", {"html": True}).render(value)


@pytest.mark.parametrize("payload", INJECTIONS)
def test_there_there_markdown_rows_show_customer_data_as_text(payload: str) -> None:
    card = Card(
        title=payload,
        badges=(Badge(text=payload),),
        fields=(Field(label="Name", value=payload), Field(label="Size", value=payload)),
    )
    rows = render_rows(Sidebar(cards=(card, Card(title="other")), notes=(payload,)))
    markdown_rows = [r for r in rows if r["type"] == "markdown" and r["value"] != "other"]
    assert len(markdown_rows) == 5
    for row in markdown_rows:
        tree = parse_html(rendered_markdown(row["value"]))
        assert [e.tag for e in tree.iter()] == ["p"], (row, rendered_markdown(row["value"]))
        assert " ".join(tree.text().split()) == readable(payload)


# ── Plain: plain text for data, markdown only where the author wrote it ──────────────────────


def plain_components(sidebar: Sidebar) -> list[tuple[str, dict[str, Any]]]:
    """Every component of the main card and all sections, depth first, as ``(type, body)``."""
    titles = [s.title for card in sidebar.cards for s in card.sections]
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(components: list[dict[str, Any]]) -> None:
        for component in components:
            ((kind, body),) = component.items()
            found.append((kind, body))
            for key in ("rowMainContent", "rowAsideContent", "containerContent"):
                walk(body.get(key, []))

    walk(card_components(sidebar, main=True, sections=titles) or [])
    return found


def test_plain_shows_customer_values_as_plain_text_without_escapes() -> None:
    components = plain_components(FULL)
    plain = [body["plainText"] for kind, body in components if kind == "componentPlainText"]
    markdown = [body["text"] for kind, body in components if kind == "componentText"]
    assert markdown == ["**payroll**"]  # the only markdown is the markdown field's
    assert plain[:2] == ["Acme HR", "Olivia Owner · owner"]
    assert {"Employees", "42 / 50", "MRR", "$249.00", "Billing", "Plan", "Pro"} <= set(plain)
    assert plain[-1] == "Billing API unavailable"
    assert all("\\" not in text for text in plain)
    sizes = {
        (body["plainText"], body["plainTextSize"]) for k, body in components if "plainText" in body
    }
    assert {("Acme HR", "L"), ("Billing", "M"), ("42 / 50", "S")} <= sizes


@pytest.mark.parametrize("payload", INJECTIONS)
def test_plain_text_is_the_customer_data_exactly(payload: str) -> None:
    components = plain_components(injected_sidebar(payload))
    plain = [body["plainText"] for kind, body in components if kind == "componentPlainText"]
    expected = readable(payload)
    assert " ".join(plain[0].split()) == expected  # the title, as it is
    assert any(" ".join(text.split()) == expected for text in plain[1:])
    for kind, body in components:
        if kind == "componentText":  # the markdown field only: escaped data renders as text
            assert " ".join(parse_html(rendered_markdown(body["text"])).text().split()) == expected


# ── Helper: plain text ────────────────────────────────────────────────────────────────────────


def test_helper_metadata_shows_markdown_fields_as_their_plain_text() -> None:
    card = Card(
        title="Acme",
        fields=(
            Field(label="Modules", value=r"**payroll** · **time\-off**", type=FieldType.MARKDOWN),
            Field(
                label="Note",
                value=r"Likes email\. Uses A\/B tests \(50\% off\)",
                type=FieldType.MARKDOWN,
            ),
            Field(
                label="Docs",
                value="See [the guide](https://docs.example/g) now",
                type=FieldType.MARKDOWN,
            ),
            Field(label="Seats", value=42, type=FieldType.NUMBER),
            Field(label="Raw", value="**kept** as written"),
        ),
    )
    facts = metadata(Sidebar(cards=(card,)))
    assert facts == {
        "Account": "Acme",
        "Modules": "payroll · time-off",
        "Note": "Likes email. Uses A/B tests (50% off)",
        "Docs": "See the guide (https://docs.example/g) now",
        "Seats": 42,
        "Raw": "**kept** as written",
    }


@pytest.mark.parametrize(
    ("markdown", "text"),
    [
        ("**bold** and *em* and `code`", "bold and em and code"),
        ("[https://a.example](https://a.example)", "https://a.example"),
        ("[owner@a.example](mailto:owner@a.example)", "owner@a.example"),
        ("[a](javascript:alert(1))", "[a](javascript:alert(1))"),
        ("line one  \nline two", "line one\nline two"),
        (r"\*not em\* \[x\]", "*not em* [x]"),
        ("<b>raw</b>", "<b>raw</b>"),
    ],
)
def test_markdown_as_plain_text(markdown: str, text: str) -> None:
    assert markdown_to_text(markdown) == text


# ── There There row names ─────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("payload", INJECTIONS)
def test_there_there_names_from_data_cannot_become_markdown(payload: str) -> None:
    card = Card(
        title="Acme",
        links=(Link(label=f"Search {payload}", url="https://s.example/"),),
        fields=(Field(label=f"{payload} seats", value=3, type=FieldType.NUMBER),),
    )
    rows = render_rows(Sidebar(cards=(card,)))
    for row in rows[1:]:
        tree = parse_html(rendered_markdown(row["name"]))
        assert [e.tag for e in tree.iter()] == ["p"], row
    expected = readable(payload)
    names = [" ".join(parse_html(rendered_markdown(r["name"])).text().split()) for r in rows]
    assert names == ["Account", f"{expected} seats".strip(), f"Search {expected}".strip()]


def test_there_there_names_that_read_the_same_as_markdown_are_left_as_written() -> None:
    labels = ["Seats used", "MRR (Stripe)", "Plan: Pro", "time_off", "50% off"]
    card = Card(title="Acme", fields=tuple(Field(label=label, value=1) for label in labels))
    assert [row["name"] for row in render_rows(Sidebar(cards=(card,)))] == ["Account", *labels]


# ── The neutral card, and the size of every answer ────────────────────────────────────────────


def test_the_card_model_holds_no_control_or_bidi_character() -> None:
    card = Card(
        title="Acme\x00 \u202eHR\u202c",
        badges=(Badge(text="Pro\x1b[1m"),),
        fields=(Field(label="Notes\t1", value="one\r\ntwo\x00\u2066three\u2069"),),
        links=(Link(label="a\u200fb", url="https://a.example/"),),
    )
    assert card.title == "Acme HR"
    assert card.badges[0].text == "Pro[1m"
    assert (card.fields[0].label, card.fields[0].value) == ("Notes 1", "one\ntwothree")
    assert card.links[0].label == "ab"
    assert Sidebar(notes=("a\nb",)).notes == ("a b",)


WORST_TEXT = "&\"'<>\\`[](){}*_#🚀Ř" * 40  # every character the renderers escape or widen


def worst_card(n: int) -> Card:
    def value(i: int) -> str:
        return WORST_TEXT[i % 7 :][:500]

    fields = [
        Field(
            label=value(i)[:40],
            value=value(i) if type_ is FieldType.TEXT else f"https://x.example/{value(i)}",
            type=type_,
            copyable=i % 2 == 0,
        )
        for i, type_ in enumerate([FieldType.TEXT, FieldType.URL] * 20)
    ]
    markdown = "[a](https://b.example) **c** " * 16
    fields.append(Field(label="Md", value=markdown, type=FieldType.MARKDOWN))
    links = tuple(Link(label=value(i), url=f"https://x.example/{i}") for i in range(10))
    section = Section(title=value(n), fields=tuple(fields[:10]), links=links[:3])
    return Card(
        title=f"{n} {value(n)}",
        subtitle=value(n + 1),
        badges=(Badge(text=value(n)[:60]),) * 5,
        fields=tuple(fields),
        links=links,
        sections=(section,) * 4,
    )


def test_what_fits_in_an_answer_stays_under_64_kib_in_every_format() -> None:
    cards, cut = fit([worst_card(n) for n in range(10)])
    assert cut and cards
    sidebar = Sidebar(
        emails=tuple(f"{'x' * 300}{n}@a.example" for n in range(20)),
        cards=cards,
        notes=("… more not shown",),
    )
    titles = [section.title for card in cards for section in card.sections]
    answers = {
        "helpscout": {"html": render_html(sidebar)},
        "therethere": {"data": render_rows(sidebar)},
        "plain": {
            "cards": [
                {"key": "k", "components": card_components(sidebar, main=True, sections=titles)}
            ]
        },
        "helper": {"customer": {"metadata": metadata(sidebar), "actions": actions(sidebar)}},
        "card": sidebar.model_dump(mode="json"),
    }
    for desk, answer in answers.items():
        size = len(json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode())
        assert size < ANSWER_BYTES, (desk, size)
    # Far from empty: the bound is not met by showing nothing.
    assert len(json.dumps(answers["helpscout"]).encode()) > ANSWER_BYTES / 4
