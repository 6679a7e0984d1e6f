"""The ``[card]`` layout: typed fields, conditions, sections, one card per record, config errors."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt

from deskside.card import Color, FieldType, Sidebar
from deskside.config import load_settings
from deskside.errors import ConfigError
from deskside.expressions import normalise_record
from deskside.layout import MAX_CARDS, CardLayout, LeftOut, build_sidebar
from deskside.lookup import Lookup
from deskside.render.format import display
from deskside.resolve import Profile, SourceResult
from helpers import parse_html

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)


def profile(
    records: dict[str, list[dict[str, Any]]],
    *,
    failed: dict[str, str] | None = None,
    emails: tuple[str, ...] = ("owner@acme.example",),
) -> Profile:
    """What the resolver would hand over: records normalised as sources' records are."""
    results = {
        name: SourceResult(records=[normalise_record(r) for r in rows])
        for name, rows in records.items()
    }
    results |= {name: SourceResult(error=error) for name, error in (failed or {}).items()}
    labels = {name: name.title() + " source" for name in results}
    return Profile(lookup=Lookup(emails=emails), results=results, labels=labels)


def build(
    card: dict[str, Any], records: dict[str, list[dict[str, Any]]], **kwargs: Any
) -> tuple[Sidebar, list[str]]:
    problems: list[str] = []
    layout = CardLayout.model_validate(card)
    sidebar = build_sidebar(layout, profile(records, **kwargs), now=NOW, problems=problems)
    return sidebar, problems


def failures(problems: list[str]) -> list[str]:
    """The problems that are failures, not notes of pieces left out for missing data."""
    return [problem for problem in problems if not isinstance(problem, LeftOut)]


def left_out(problems: list[str]) -> list[str]:
    return [problem for problem in problems if isinstance(problem, LeftOut)]


def shown(sidebar: Sidebar) -> dict[str, str]:
    """Label → display string of the first card's top-level fields."""
    return {field.label: display(field) for field in sidebar.cards[0].fields}


def test_field_types_coerce_and_display() -> None:
    card = {
        "fields": [
            {"label": "Seats", "type": "number", "value": "app.seats"},
            {"label": "Ratio", "type": "number", "value": "app.ratio"},
            {"label": "MRR", "type": "currency", "value": "app.mrr_cents / 100"},
            {"label": "Fee", "type": "currency", "currency": "EUR", "value": "app.fee"},
            {"label": "Renews", "type": "date", "value": "app.renews_on"},
            {"label": "Seen", "type": "datetime", "value": "app.last_seen_at"},
            {"label": "Since", "type": "datetime", "value": "app.since"},
            {"label": "Owner", "type": "boolean", "value": "app.is_owner"},
            {"label": "Beta", "type": "boolean", "value": "app.beta"},
            {"label": "Site", "type": "url", "value": "app.site"},
            {"label": "Email", "type": "email", "value": "app.email"},
            {"label": "Plan", "value": "app.plan"},
        ]
    }
    record = {
        "seats": "1,234",
        "ratio": "0.75",
        "mrr_cents": 24900,
        "fee": "1234.5",
        "renews_on": "2027-03-12",
        "last_seen_at": "2027-02-28T10:30:00+02:00",
        "since": 1700000000,
        "is_owner": "yes",
        "beta": 0,
        "site": " https://acme.example/hr ",
        "email": "owner@acme.example",
        "plan": "  Pro ",
    }
    sidebar, problems = build(card, {"app": [record]})
    assert problems == []
    fields = {field.label: field for field in sidebar.cards[0].fields}
    assert fields["Seats"].value == 1234
    assert fields["Ratio"].value == Decimal("0.75")
    assert fields["Renews"].value == date(2027, 3, 12)
    assert fields["Seen"].value == datetime(2027, 2, 28, 8, 30, tzinfo=UTC)
    assert fields["Owner"].value is True
    assert fields["Beta"].value is False
    assert fields["MRR"].currency == "USD"
    assert fields["Plan"].currency is None
    assert shown(sidebar) == {
        "Seats": "1,234",
        "Ratio": "0.75",
        "MRR": "$249.00",
        "Fee": "€1,234.50",
        "Renews": "12 Mar 2027",
        "Seen": "28 Feb 2027, 08:30 UTC",
        "Since": "14 Nov 2023, 22:13 UTC",
        "Owner": "Yes",
        "Beta": "No",
        "Site": "https://acme.example/hr",
        "Email": "owner@acme.example",
        "Plan": "Pro",
    }


def test_card_currency_is_the_default_for_currency_fields() -> None:
    card = {"currency": "GBP", "fields": [{"label": "MRR", "type": "currency", "value": "9.5"}]}
    sidebar, _ = build(card, {"app": [{}]})
    assert shown(sidebar) == {"MRR": "£9.50"}


@pytest.mark.parametrize(
    ("type_", "raw"),
    [
        ("number", "lots"),
        ("number", "NaN"),
        ("number", "-Infinity"),
        ("currency", "1e999999"),
        ("number", float("nan")),
        ("number", True),
        ("date", "next week"),
        ("date", "2027-02-30"),
        ("datetime", 1e20),
        ("datetime", 1700000000000 * 1000),
        ("datetime", "0001-01-01T00:00:00+05:00"),
        ("boolean", "maybe"),
        ("url", "javascript:alert(1)"),
        ("url", "JaVaScRiPt:alert(1)"),
        ("url", "data:text/html,<script>alert(1)</script>"),
        ("url", "//evil.example/"),
        ("email", "not an address"),
        ("email", "nobody"),
    ],
)
def test_a_value_that_is_not_of_its_type_is_left_out_and_reported(type_: str, raw: Any) -> None:
    card = {
        "fields": [
            {"label": "Broken", "type": type_, "value": "app.raw"},
            {"label": "Plan", "value": "app.plan"},
        ]
    }
    started = time.perf_counter()
    sidebar, problems = build(card, {"app": [{"raw": raw, "plan": "Pro"}]})
    # Milliseconds even on a busy machine; a value that sent the layout into a runaway loop
    # (a year 10^12, a huge number of days) would not finish in this.
    assert time.perf_counter() - started < 10
    assert shown(sidebar) == {"Plan": "Pro"}
    assert len(problems) == 1
    assert "Broken" in problems[0]


@pytest.mark.parametrize("empty", [None, "", "   ", "\n"])
def test_empty_values_are_left_out_and_missing_ones_say_so(empty: Any) -> None:
    card = {
        "fields": [
            {"label": "Empty", "value": "app.empty"},
            {"label": "Empty number", "type": "number", "value": "app.empty"},
            {"label": "Missing", "value": "app.no_such_column"},
            {"label": "Missing source", "value": "billing.total"},
            {"label": "Template", "template": "{{ app.empty }}"},
            {"label": "Zero", "type": "number", "value": "app.zero"},
            {"label": "False", "type": "boolean", "value": "app.off"},
        ]
    }
    sidebar, problems = build(card, {"app": [{"empty": empty, "zero": 0, "off": False}]})
    assert failures(problems) == []
    assert shown(sidebar) == {"Zero": "0", "False": "No"}
    missing = [
        "field 'Missing' left out: app.no_such_column is empty",
        "field 'Missing source' left out: billing is empty",
    ]
    if empty is None:  # a NULL is missing; an empty string is just empty
        missing = [
            "field 'Empty' left out: app.empty is empty",
            "field 'Empty number' left out: app.empty is empty",
            *missing,
            "field 'Template' left out: app.empty is empty",
        ]
    assert sorted(problems) == sorted(missing)


def test_failing_conditions_hide_their_piece_and_are_reported() -> None:
    broken = "app.seats > 'many'"  # int > str raises
    card = {
        "badges": [{"text": "Big", "when": broken}, {"text": "Pro"}],
        "fields": [{"label": "Seats", "value": "app.seats", "when": broken}],
        "links": [{"label": "Admin", "url": "https://admin.example/", "when": broken}],
        "sections": [
            {"title": "Billing", "when": broken, "fields": [{"label": "A", "value": "1"}]},
            {"title": "Other", "fields": [{"label": "B", "value": "app.seats / 0"}]},
        ],
    }
    sidebar, problems = build(card, {"app": [{"seats": 3}]})
    only = sidebar.cards[0]
    assert [b.text for b in only.badges] == ["Pro"]
    assert only.fields == ()
    assert only.links == ()
    assert only.sections == ()  # "Other" has nothing left to show
    assert len(problems) == 5
    assert sum(broken in p for p in problems) == 4
    assert any("'B'" in p and "ZeroDivisionError" in p for p in problems)


def test_conditions_choose_badges_fields_links_and_sections() -> None:
    card = {
        "title": "{{ app.company }}",
        "badges": [
            {"text": "Trial expired", "color": "red", "when": "app.trial_ends_at < now"},
            {"text": "Trial", "color": "orange", "when": "app.trial_ends_at >= now"},
            {"text": "Owner", "color": "purple", "when": "app.is_owner"},
        ],
        "fields": [{"label": "Over limit", "value": "'yes'", "when": "app.seats > app.limit"}],
        "links": [
            {
                "label": "Stripe",
                "url": "https://stripe.example/{{ app.stripe }}",
                "when": "app.stripe",
            }
        ],
        "sections": [
            {
                "title": "Billing",
                "icon": "cart",
                "when": "app.paying",
                "fields": [{"label": "Plan", "value": "app.plan"}],
            }
        ],
    }
    expired = {
        "company": "Globex",
        "trial_ends_at": "2027-02-19T12:00:00+00:00",
        "is_owner": True,
        "seats": 12,
        "limit": 10,
        "stripe": "cus_1",
        "paying": True,
        "plan": "Pro",
    }
    trialing = expired | {
        "company": "Hooli",
        "trial_ends_at": "2027-03-10T12:00:00Z",
        "is_owner": False,
        "seats": 1,
        "stripe": None,
        "paying": False,
    }
    sidebar, problems = build(card, {"app": [expired, trialing]})
    assert problems == []
    globex, hooli = sidebar.cards
    assert [(b.text, b.color) for b in globex.badges] == [
        ("Trial expired", Color.RED),
        ("Owner", Color.PURPLE),
    ]
    assert [f.label for f in globex.fields] == ["Over limit"]
    assert [(link.label, link.url) for link in globex.links] == [
        ("Stripe", "https://stripe.example/cus_1")
    ]
    assert [(s.title, s.icon, [f.value for f in s.fields]) for s in globex.sections] == [
        ("Billing", "cart", ["Pro"])
    ]
    assert [(b.text, b.color) for b in hooli.badges] == [("Trial", Color.ORANGE)]
    assert (hooli.fields, hooli.links, hooli.sections) == ((), (), ())


def test_links_other_than_http_and_mailto_are_dropped() -> None:
    card = {
        "links": [
            {"label": "Site", "url": "{{ app.site }}"},
            {"label": "Mail", "url": "mailto:{{ app.email }}"},
            {"label": "Admin", "url": "https://admin.example/{{ app.id }}"},
            {"label": "Spaced", "url": "https://admin.example/{{ app.name }}"},
            {"label": "Empty", "url": "{{ app.nothing }}"},
        ]
    }
    record = {
        "site": "javascript:alert(document.cookie)",
        "email": "owner@acme.example",
        "id": 7,
        "name": "Acme HR",
    }
    sidebar, problems = build(card, {"app": [record]})
    assert [(link.label, link.url) for link in sidebar.cards[0].links] == [
        ("Mail", "mailto:owner@acme.example"),
        ("Admin", "https://admin.example/7"),
    ]
    assert len(failures(problems)) == 2
    assert any("javascript:" in p for p in failures(problems))
    assert left_out(problems) == ["link 'Empty' left out: app.nothing is empty"]


def test_markdown_template_escapes_every_placeholder() -> None:
    payload = "[click](javascript:alert(1)) ![x](https://evil.example/x.png) _em_ <b>b</b> `c`"
    card = {
        "fields": [{"label": "Who", "type": "markdown", "template": "**{{ app.name }}**"}],
    }
    sidebar, problems = build(card, {"app": [{"name": payload + "\nsecond line"}]})
    assert problems == []
    (field,) = sidebar.cards[0].fields
    assert field.type is FieldType.MARKDOWN
    html = MarkdownIt("commonmark").render(str(field.value))
    tree = parse_html(html)
    assert [e.tag for e in tree.iter()] == ["p", "strong"]
    assert tree.find_all("strong")[0].text() == payload + " second line"


def test_markdown_template_keeps_the_authors_formatting() -> None:
    template = (
        "{% for m in app.modules.split(',') %}{{ ', ' if not loop.first }}*{{ m }}*{% endfor %}"
    )
    card = {"fields": [{"label": "Modules", "type": "markdown", "template": template}]}
    sidebar, _ = build(card, {"app": [{"modules": "payroll,time_off"}]})
    assert sidebar.cards[0].fields[0].value == "*payroll*\\, *time\\_off*"  # spaces kept
    tree = parse_html(MarkdownIt("commonmark").render(str(sidebar.cards[0].fields[0].value)))
    assert [em.text() for em in tree.find_all("em")] == ["payroll", "time_off"]


def test_each_makes_one_card_per_row_with_other_sources_alongside() -> None:
    card = {
        "each": "app",
        "title": "{{ app.company }}",
        "subtitle": "{{ billing.plan }} · {{ records.app | length }} accounts",
        "fields": [{"label": "Email", "value": "email"}],
    }
    records = {
        "billing": [{"plan": "Pro"}],
        "app": [{"company": "Initech"}, {"company": "Initrode"}],
    }
    sidebar, _ = build(card, records, emails=("pat@initech.example", "pat@initrode.example"))
    assert [(c.title, c.subtitle) for c in sidebar.cards] == [
        ("Initech", "Pro · 2 accounts"),
        ("Initrode", "Pro · 2 accounts"),
    ]
    assert all(
        shown(Sidebar(cards=(c,))) == {"Email": "pat@initech.example"} for c in sidebar.cards
    )
    assert sidebar.emails == ("pat@initech.example", "pat@initrode.example")


def test_without_each_the_first_source_makes_the_cards_and_their_number_is_capped() -> None:
    card = {"title": "{{ app.company }}"}
    rows = [{"company": f"Company {n}"} for n in range(MAX_CARDS + 5)]
    sidebar, _ = build(card, {"app": rows, "billing": [{"x": 1}]})
    assert [c.title for c in sidebar.cards] == [f"Company {n}" for n in range(MAX_CARDS)]


def test_an_empty_title_falls_back_to_the_address() -> None:
    sidebar, _ = build({"title": "{{ app.company }}"}, {"app": [{"company": None}]})
    assert sidebar.cards[0].title == "owner@acme.example"


# ── Missing values ────────────────────────────────────────────────────────────────────────────

NULLS = {"company": "Acme HR", "seats": 42, "seat_limit": None, "name": None, "mail": None}


def test_a_value_built_from_a_missing_one_is_left_out_not_none() -> None:
    card = {
        "fields": [
            {"label": "Seats", "value": "app.seats ~ ' / ' ~ app.seat_limit"},
            {"label": "Limit", "value": "app.seat_limit | default(0)"},
            {"label": "Name", "value": "app.name or 'n/a'"},
            {"label": "Seats of", "template": "{{ app.seats }} of {{ app.seat_limit }}"},
            {"label": "Got", "value": "app.get('seat_limit') ~ ' seats'"},
            {"label": "Per seat", "type": "number", "value": "app.seats / app.seat_limit"},
        ],
    }
    sidebar, problems = build(card, {"app": [NULLS]})
    assert shown(sidebar) == {"Limit": "0", "Name": "n/a"}
    assert failures(problems) == []
    assert problems == [
        "field 'Seats' left out: app.seat_limit is empty",
        "field 'Seats of' left out: app.seat_limit is empty",
        "field 'Got' left out: app.get() is empty",
        "field 'Per seat' left out: app.seat_limit is empty",
    ]


def test_links_badges_sections_and_titles_that_show_a_missing_value_are_left_out() -> None:
    card = {
        "title": "{{ app.company }} ({{ app.name }})",
        "subtitle": "{{ app.name }}",
        "badges": [{"text": "{{ app.name }} seats"}, {"text": "Seats {{ app.seats }}"}],
        "links": [
            {"label": "Search", "url": "https://s.example/?q={{ app.name | urlencode }}"},
            {"label": "Mail", "url": "mailto:{{ app.mail }}"},
            {"label": "Admin", "url": "https://admin.example/{{ app.seats }}"},
        ],
        "sections": [
            {"title": "{{ app.name }}", "fields": [{"label": "A", "value": "app.seats"}]},
            {"title": "Seats", "fields": [{"label": "B", "value": "app.seats"}]},
        ],
    }
    sidebar, problems = build(card, {"app": [NULLS]})
    (only,) = sidebar.cards
    assert (only.title, only.subtitle) == ("owner@acme.example", None)
    assert [badge.text for badge in only.badges] == ["Seats 42"]
    assert [(link.label, link.url) for link in only.links] == [
        ("Admin", "https://admin.example/42")
    ]
    assert [section.title for section in only.sections] == ["Seats"]
    assert failures(problems) == []
    assert problems == [
        "title left out: app.name is empty",
        "subtitle left out: app.name is empty",
        "badge '{{ app.name }} seats' left out: app.name is empty",
        "link 'Search' left out: app.name is empty",
        "link 'Mail' left out: app.mail is empty",
        "section '{{ app.name }}' left out: app.name is empty",
    ]


def test_conditions_may_test_missing_values_but_not_compute_with_them() -> None:
    card = {
        "badges": [
            {"text": "Named", "when": "app.name"},
            {"text": "Unnamed", "when": "not app.name"},
            {"text": "No limit", "when": "app.seat_limit is none"},
            {"text": "Over", "when": "app.seats > app.seat_limit"},
        ]
    }
    sidebar, problems = build(card, {"app": [NULLS]})
    assert [badge.text for badge in sidebar.cards[0].badges] == ["Unnamed", "No limit"]
    assert problems == ["badge 'Over' left out: app.seat_limit is empty"]
    assert failures(problems) == []


# ── Customer text as agents read it ──────────────────────────────────────────────────────────


def test_control_and_bidi_characters_never_reach_the_card() -> None:
    card = {
        "title": "{{ app.company }}",
        "badges": [{"text": "{{ app.plan }}"}],
        "fields": [
            {"label": "Notes", "value": "app.notes"},
            {"label": "Plan", "type": "markdown", "template": "**{{ app.plan }}**"},
        ],
        "links": [{"label": "{{ app.company }}", "url": "https://a.example/"}],
    }
    record = {
        "company": "Acme\x00 \u202eHR\u202c\u2066x\u2069\u200f",
        "plan": "Pro\x1b[31m\x07\u0085plus",
        "notes": "line one\r\nline two\u2028three\tfour\x00\x9b",
    }
    sidebar, problems = build(card, {"app": [record]})
    assert problems == []
    (only,) = sidebar.cards
    assert only.title == "Acme HRx"
    assert [badge.text for badge in only.badges] == ["Pro[31m plus"]
    assert [link.label for link in only.links] == ["Acme HRx"]
    notes, plan = only.fields
    assert notes.value == "line one\nline two\nthree four"  # line breaks kept in values
    assert plan.value == "**Pro\\[31m plus**"


def test_long_values_are_cut_to_max_value_length() -> None:
    card = {
        "max_value_length": 40,
        "title": "{{ app.long }}",
        "fields": [
            {"label": "Long", "value": "app.long"},
            {"label": "Site", "type": "url", "value": "'https://a.example/' ~ app.path"},
            {"label": "Code", "type": "markdown", "template": "`x` {{ app.slashes }}"},
        ],
    }
    record = {"long": "word " * 20_000, "slashes": "\\" * 500, "path": "a" * 3000}
    sidebar, problems = build(card, {"app": [record]})
    (only,) = sidebar.cards
    assert only.title == "word " * 7 + "word…"
    assert len(only.title) <= 40
    long, code = only.fields
    assert long.value == only.title
    assert len(str(code.value)) <= 160 and str(code.value).endswith("\\\\…")  # whole escapes
    assert problems == ["field 'Site' left out: its value is longer than 2,048 characters"]
    assert failures(problems) == []


@pytest.mark.parametrize(
    ("type_", "raw", "expected"),
    [
        ("number", "42", "42"),
        ("number", " 1,234.50 ", "1,234.5"),
        ("currency", "1,234.50", "$1,234.50"),
        ("currency", "42", "$42.00"),
        ("text", "1,234.50", "1,234.50"),
        ("text", "42", "42"),
    ],
)
def test_numbers_stored_as_text(type_: str, raw: str, expected: str) -> None:
    card = {"fields": [{"label": "N", "type": type_, "value": "app.n"}]}
    sidebar, problems = build(card, {"app": [{"n": raw}]})
    assert problems == []
    (field,) = sidebar.cards[0].fields
    assert isinstance(field.value, str) == (type_ == "text")
    assert display(field) == expected


def test_an_answer_too_large_drops_trailing_pieces_with_a_note() -> None:
    card = {
        "each": "app",
        "title": "{{ app.company }}",
        "fields": [{"label": f"F{n}", "value": "app.text"} for n in range(30)],
    }
    rows = [{"company": f"Company {n}", "text": "<&>" * 200} for n in range(MAX_CARDS)]
    sidebar, problems = build(card, {"app": rows})
    assert problems == []
    assert sidebar.notes == ("… more not shown",)
    assert 1 <= len(sidebar.cards) < MAX_CARDS
    kept = [field.label for c in sidebar.cards for field in c.fields]
    assert kept == [f"F{n}" for n in range(30)] * (len(kept) // 30) + [
        f"F{n}" for n in range(len(kept) % 30)
    ]
    card["fields"] = card["fields"][:5]
    small, _ = build(card, {"app": [row | {"text": "<&>" * 20} for row in rows]})
    assert small.notes == () and [len(c.fields) for c in small.cards] == [5] * MAX_CARDS


def test_nobody_found_gives_no_cards_and_failed_sources_give_notes() -> None:
    sidebar, problems = build(
        {"fields": [{"label": "A", "value": "app.a"}]},
        {"app": []},
        failed={"billing": "timed out"},
    )
    assert sidebar.cards == ()
    assert sidebar.notes == ("Billing source unavailable",)
    assert not sidebar.found
    assert problems == []


def test_a_failed_source_does_not_hide_what_the_others_found() -> None:
    card = {"each": "app", "title": "{{ app.company }}"}
    sidebar, _ = build(card, {"app": [{"company": "Acme HR"}]}, failed={"billing": "HTTP 500"})
    assert [c.title for c in sidebar.cards] == ["Acme HR"]
    assert sidebar.notes == ("Billing source unavailable",)


def test_customer_data_is_never_evaluated_as_a_template() -> None:
    sidebar, problems = build(
        {"title": "{{ app.company }}", "fields": [{"label": "N", "template": "{{ app.name }}"}]},
        {"app": [{"company": "{{ 7 * 191 }}", "name": "{% raw %}x"}]},
    )
    assert problems == []
    assert sidebar.cards[0].title == "{{ 7 * 191 }}"
    assert shown(sidebar) == {"N": "{% raw %}x"}


# ── Config errors ─────────────────────────────────────────────────────────────────────────────

CONFIG_HEAD = """
[sources.app]
kind = "sql"
url = "sqlite:///app.db"
query = "select * from users where lower(email) in :emails"
"""


def config_problems(tmp_path: Path, card: str) -> list[str]:
    path = tmp_path / "deskside.toml"
    path.write_text(CONFIG_HEAD + card, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return caught.value.problems


def test_a_template_written_as_a_value_gets_a_helpful_error(tmp_path: Path) -> None:
    card = '\n[[card.fields]]\nlabel = "Plan"\nvalue = "{{ app.plan }}"\n'
    (problem,) = config_problems(tmp_path, card)
    assert "deskside.toml:9" in problem
    assert "card.fields[0].value" in problem
    assert "write `app.plan`, not `{{ app.plan }}`" in problem


def test_the_helpful_error_names_the_expression_that_was_written(tmp_path: Path) -> None:
    card = '\n[[card.badges]]\ntext = "Big"\nwhen = "{{ billing.total > 100 }}"\n'
    (problem,) = config_problems(tmp_path, card)
    assert "write `billing.total > 100`" in problem


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        ('[[card.fields]]\nlabel = "A"\n', "exactly one of `value`"),
        ('[[card.fields]]\nlabel = "A"\nvalue = "x"\ntemplate = "y"\n', "exactly one of `value`"),
        ('[[card.fields]]\nlabel = "A"\ntype = "markdown"\nvalue = "x"\n', "markdown field"),
        ('[[card.fields]]\nlabel = "A"\nvalue = "app.plan =="\n', "invalid expression"),
        ('[card]\ntitle = "{{ app.company "\n', "invalid template"),
        ('[[card.fields]]\nlabel = "A"\nvalue = "x"\ntype = "money"\n', "card.fields[0].type"),
        ('[[card.fields]]\nlabel = "A"\nvalu = "x"\n', "did you mean `value`"),
        ('[card]\neach = "billing"\n', "names no source"),
        ('[card]\ncurrency = "usd"\n', "card.currency"),
    ],
)
def test_other_card_mistakes_are_reported(tmp_path: Path, card: str, expected: str) -> None:
    problems = config_problems(tmp_path, "\n" + card)
    assert any(expected in p for p in problems), problems


def test_a_scope_evaluates_like_a_fresh_context() -> None:
    """One card's expressions share a render context; each sees the same as on its own."""
    from deskside.expressions import Expression, MarkdownTemplate, Scope, TextTemplate

    variables = {"app": {"plan": "Pro", "seats": 3, "modules": "a,b"}, "email": "x@y.io"}
    scope = Scope(variables)
    pieces = [
        Expression("app.seats * 2"),
        Expression("app.missing"),
        TextTemplate("{{ app.plan }}"),
        TextTemplate("{% set plan = 'Gold' %}{{ plan }} for {{ email }}"),
        TextTemplate("{{ plan }}-{{ app.plan }}"),  # the {% set %} above stays in its template
        MarkdownTemplate("{% for m in app.modules.split(',') %}*{{ m }}* {% endfor %}"),
    ]
    for piece in pieces:
        alone = (
            piece.evaluate(variables) if isinstance(piece, Expression) else piece.render(variables)
        )
        shared = piece.evaluate(scope) if isinstance(piece, Expression) else piece.render(scope)
        assert shared == alone, piece
    assert TextTemplate("{{ plan }}-{{ app.plan }}").render(scope) == "-Pro"


# ── The sandbox around compiled expressions ───────────────────────────────────────────────────

ESCAPES = [
    "app.__class__",
    "app.__class__.__mro__[1].__subclasses__()",
    "app.items.__self__",
    "app.update({'plan': 'Free'})",
    "app.pop('plan')",
    "app.setdefault('x', 1)",
    "app.modules.split(',').append(1)",
    "'{0.__class__}'.format(app)",
    "'{x.__class__.__mro__}'.format_map({'x': app})",
    "'%s' % app.__class__",
    "range(10 ** 9) | list",
    "lipsum.__globals__",
    "cycler.__init__.__globals__",
    "joiner.__init__.__globals__['os']",
    "namespace.__init__.__globals__",
    "self.__init__.__globals__",
    "self._TemplateReference__context",
    "now.__class__.__base__.__subclasses__()",
    "(app | attr('__class__'))",
    "app.mro",
    "records.app[0].__class__",
    "(app.items() | list)[0].__class__",
    "app.plan.__class__.__base__",
    "app.get.__self__.clear()",
]


def _outcome(compute: Any) -> tuple[str, str]:
    """What evaluating gives: a value's type and text, or an exception's type and message."""
    from jinja2 import Undefined

    try:
        value = compute()
    except Exception as exc:
        return type(exc).__name__, str(exc)
    if isinstance(value, Undefined):
        return "undefined", type(value).__name__
    return type(value).__name__, repr(value)


@pytest.mark.parametrize("source", ESCAPES)
def test_compiled_expressions_refuse_what_the_sandbox_refuses(source: str) -> None:
    """An expression compiled once runs through the same sandbox as Jinja's own
    ``compile_expression``: the same refusal (or the same harmless value), nothing unsafe."""
    from deskside.expressions import _ENV, Expression, Scope

    record = normalise_record({"plan": "Pro", "modules": "a,b"})
    variables = {"app": record, "now": NOW, "records": {"app": [record]}}
    public = _ENV.compile_expression(source, undefined_to_none=False)
    expected = _outcome(lambda: public(**variables))
    compiled = Expression(source)
    assert _outcome(lambda: compiled._function(Scope(variables).context)) == expected
    value = _outcome(lambda: compiled.evaluate(variables))
    assert value[0] in {"SecurityError", "UndefinedError", "OverflowError", "NoneType", "str"}, (
        value
    )
    assert record == {"plan": "Pro", "modules": "a,b"}  # nothing was changed


def test_compiled_expressions_keep_jinjas_errors_and_values() -> None:
    """Errors, undefined values and results are those of Jinja's own compiled expression."""
    from deskside.expressions import _ENV, Expression, Scope

    variables = {"app": {"seats": 3, "plan": None, "tags": ["a", "b"]}, "now": NOW}
    for source in [
        "app.seats * 2",
        "app.plan",
        "app.plan + 1",
        "app.seats / 0",
        "app.tags | join(', ')",
        "app.tags[5]",
        "[1, 2][app.seats]",
        "app.seats if app.plan",
        "app.nothing.deeper",
        "undefined_name ~ 'x'",
        "(app.seats > 2) and 'many' or 'few'",
        "{'a': app.seats}['a']",
        "app.tags | map('upper') | list",
        "namespace(x=1).x",
    ]:
        public = _ENV.compile_expression(source, undefined_to_none=False)
        compiled = Expression(source)
        expected = _outcome(lambda p=public: p(**variables))
        assert _outcome(lambda c=compiled: c._function(Scope(variables).context)) == expected
