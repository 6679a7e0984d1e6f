"""Bug and feature topics become reports (counts, dates, links, a quoted customer sentence, plans
and revenue from the sidebar's sources), leave as Markdown, CSV and JSON, and as a GitHub issue
that a second export updates instead of duplicating; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from markdown_it import MarkdownIt
from sqlalchemy import select
from typer.testing import CliRunner

from deskside.cli import sidebar_answer
from deskside.config import Settings, load_settings
from deskside.insights.models import (
    Classification,
    Conversation,
    Customer,
    ReportExport,
    Thread,
    Topic,
    TopicMember,
)
from deskside.insights.reports import cli as reports_cli
from deskside.insights.reports.facts import CustomerFacts, Facts
from deskside.insights.reports.formats import to_csv, to_json, to_markdown
from deskside.insights.reports.github import GitHubError, GitHubIssues
from deskside.insights.reports.report import Report, ReportConversation, build_reports
from deskside.insights.settings import ReportsSettings
from deskside.insights.store import Store, database_url
from fake_github import FakeGitHub
from fake_http import unused_port
from helpers import assert_harmless_html, demo_settings

pytestmark = pytest.mark.anyio

TOKEN = "ghp-secret-token-1234567890"
BUG, FEATURE, QUESTION, MERGED = 11, 12, 13, 14
EXPORT_CRASH = "The CSV export crashes with error 500 when I pick a date range."
AGENT_ONLY = "Our engineers are deploying a fix for everyone tonight."
BROKEN_QUERY = "select plan, mrr_cents from no_such_table where email in :emails"
DEMO_QUERY = (
    "select c.plan, c.mrr_cents from users u join companies c on c.id = u.company_id "
    "where lower(u.email) in :emails"
)


def at(day: int, hour: int = 9) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


def url(conversation_id: int, number: int) -> str:
    return f"https://secure.helpscout.net/conversation/{conversation_id}/{number}/"


async def seed(store: Store) -> None:
    """A bug topic (3 customers, 4 conversations), a feature topic (2 conversations, one with
    no customer at all), a question topic and a bug topic merged into the first."""
    customers = [
        Customer(id=501, email="owner@acme.example", first_name="Olivia"),
        Customer(id=502, email="lapsed@globex.example"),
        Customer(id=503, email="Stranger@Nowhere.example", first_name="Sam", last_name="Str"),
        Customer(id=504, email="trial@hooli.example"),
    ]
    # (id, number, customer id, email on the conversation, subject, day, label)
    conversations = [
        (1, 1001, 501, "owner@acme.example", "Export broken", 1, "bug"),
        (2, 1002, 501, "OWNER@acme.example", "Export again", 3, "bug"),
        (3, 1003, 502, "lapsed@globex.example", "CSV export fails", 2, "bug"),
        (4, 1004, 503, None, "Export error", 5, "bug"),  # the address only on the customer
        (5, 1005, 504, "trial@hooli.example", "Dark mode", 4, "feature"),
        (6, 1006, None, None, "Dark theme please", 6, "feature"),
        (7, 1007, 501, "owner@acme.example", "Where are invoices?", 2, "question"),
        (8, 1008, 502, "lapsed@globex.example", "Export 500", 7, "bug"),
    ]
    says = {
        1: f"Hi team,\n\n{EXPORT_CRASH} It worked last week.\n\nThanks,\nOlivia",
        2: "Again today: the CSV export crashes with error 500 for any date range.",
        3: "Our monthly CSV export fails with an error 500 page. Please fix the export.",
        4: "Exporting to CSV gives error 500 whenever a date range is chosen.",
        5: "It would be great to have a dark mode for the dashboard at night.",
        6: "Please add a dark theme to the dashboard, my eyes hurt.",
        7: "Where can I download my invoices for last year?",
        8: "The CSV export crashes with error 500 again today.",
    }
    topics = [
        Topic(id=BUG, label="bug", name="CSV export error 500", named_by_person=True),
        Topic(id=FEATURE, label="feature", name="Dark mode", named_by_person=True),
        Topic(id=QUESTION, label="question", name="Invoices", named_by_person=True),
        Topic(id=MERGED, label="bug", name="Export 500", merged_into=BUG),
    ]
    topic_of = {1: BUG, 2: BUG, 3: BUG, 4: BUG, 5: FEATURE, 6: FEATURE, 7: QUESTION, 8: MERGED}
    async with store.session() as session:
        session.add_all(customers)
        session.add_all(topics)
        await session.flush()
        for cid, number, customer, email, subject, day, _ in conversations:
            session.add(
                Conversation(
                    id=cid,
                    number=number,
                    customer_id=customer,
                    customer_email=email,
                    subject=subject,
                    created_at=at(day),
                    modified_at=at(day, 10),
                )
            )
        await session.flush()
        threads = [
            Thread(
                id=100 + cid,
                conversation_id=cid,
                type="customer",
                author="customer",
                text=text,
                created_at=at(conversations[cid - 1][5]),
            )
            for cid, text in says.items()
        ]
        threads += [
            Thread(
                id=201,
                conversation_id=1,
                type="message",
                author="agent",
                text=AGENT_ONLY * 3,
                created_at=at(1, 11),
            ),
            # the customer of conversation 3 writes again, later than any conversation began
            Thread(
                id=202,
                conversation_id=3,
                type="customer",
                author="customer",
                text="Still failing with error 500 on the CSV export.",
                created_at=at(9, 8),
            ),
        ]
        session.add_all(threads)
        session.add_all(
            Classification(conversation_id=cid, label=label, confidence=0.9, by="model")
            for cid, *_, label in conversations
        )
        session.add_all(
            TopicMember(conversation_id=cid, topic_id=topic) for cid, topic in topic_of.items()
        )


@pytest.fixture
async def store(insights_url: str) -> AsyncIterator[Store]:
    opened = await Store(database_url(insights_url)).open()
    try:
        await seed(opened)
        yield opened
    finally:
        await opened.aclose()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(token=TOKEN, repository="acme/app") as fake:
        yield fake


def facts_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> Settings:
    """The demo config on the demo customer database, with plan and revenue expressions."""
    settings = demo_settings(monkeypatch, tmp_path, database)
    reports = ReportsSettings(plan="app.plan", revenue_cents="app.mrr_cents")
    insights = settings.insights.model_copy(update={"reports": reports})
    return settings.model_copy(update={"insights": insights})


# ── Building reports ───────────────────────────────────────────────────────────────────────────


async def test_bug_and_feature_topics_become_reports_with_counts_dates_and_links(
    store: Store,
) -> None:
    reports = await build_reports(store)

    assert [r.topic_id for r in reports] == [BUG, FEATURE]  # no question, no merged topic
    bug, feature = reports
    assert (bug.kind, bug.title) == ("bug", "CSV export error 500")
    assert bug.customers == 3  # owner twice (any case), lapsed, and the stranger via the customer
    assert bug.conversation_count == 4
    assert bug.first_seen == at(1)
    assert bug.last_seen == at(9, 8)  # the latest customer reply, not the latest conversation
    assert [c.url for c in bug.conversations] == [
        url(4, 1004),
        url(2, 1002),
        url(3, 1003),
        url(1, 1001),
    ]
    assert bug.conversations[0].customer == "stranger@nowhere.example"
    assert bug.conversations[0].subject == "Export error"
    assert bug.conversations[0].created_at == at(5)

    # the summary quotes the customers' own words (never the agent's), then the counts
    assert bug.quote is not None
    customer_words = " ".join(
        [
            "Export broken",
            EXPORT_CRASH,
            "Again today: the CSV export crashes with error 500",
            "Our monthly CSV export fails",
            "Exporting to CSV gives error 500",
            "Still failing",
        ]
    )
    assert bug.quote in customer_words or bug.quote.rstrip("…") in customer_words
    assert "error 500" in bug.quote
    assert "engineers" not in bug.summary
    assert bug.summary == f"“{bug.quote}” — 3 customers across 4 conversations since 2026-11-01."

    # no customer facts asked for: none claimed
    assert (bug.plans, bug.revenue_cents, bug.customers_with_facts) == ({}, None, 0)
    assert not bug.facts_available
    assert not bug.trending and bug.trend_note is None

    assert feature.customers == 2  # a conversation without any customer counts as its own
    assert feature.conversation_count == 2
    assert "dark" in (feature.quote or "").lower()
    assert feature.summary.endswith("2 customers across 2 conversations since 2026-11-04.")


async def test_trending_topics_come_first_and_only_chosen_topics_are_built(store: Store) -> None:
    reports = await build_reports(store, trending={FEATURE: "4 this week, 1 a week before"})
    assert [r.topic_id for r in reports] == [FEATURE, BUG]
    assert reports[0].trending and reports[0].trend_note == "4 this week, 1 a week before"
    assert not reports[1].trending

    only = await build_reports(store, topic_ids=[FEATURE, QUESTION, MERGED])
    assert [r.topic_id for r in only] == [FEATURE]
    features = await build_reports(store, kinds=["feature"])
    assert [r.topic_id for r in features] == [FEATURE]


async def test_plans_and_revenue_come_from_the_sidebar_sources(
    store: Store, database: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = facts_settings(monkeypatch, tmp_path, database)
    async with sidebar_answer(settings) as answer, CustomerFacts(settings, answer) as facts:
        found = await facts.lookup(
            ["owner@acme.example", " Lapsed@Globex.example", "nobody@nowhere.example"]
        )
        assert found == {
            "owner@acme.example": Facts(plan="Pro", revenue_cents=24900),
            "lapsed@globex.example": Facts(plan="Starter", revenue_cents=0),
        }
        reports = await build_reports(store, facts=facts)

    bug, feature = reports
    # owner (Pro, $249) and lapsed (Starter, $0) are demo customers; the stranger is not
    assert bug.plans == {"Pro": 1, "Starter": 1}
    assert bug.revenue_cents == 24900
    assert bug.customers_with_facts == 2
    assert bug.facts_available and bug.currency == "USD"
    # trial@hooli.example is on a Pro trial paying nothing; the other customer is nobody
    assert (feature.plans, feature.revenue_cents, feature.customers_with_facts) == (
        {"Pro": 1},
        0,
        1,
    )


async def test_a_failing_source_or_no_expressions_leave_customers_unknown(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(
        f"""
[sources.app]
kind = "sql"
url = "sqlite:///{tmp_path / "missing.db"}"
query = {json.dumps(BROKEN_QUERY)}

[insights.reports]
plan = "app.plan"
revenue_cents = "app.mrr_cents"
""",
        encoding="utf-8",
    )
    settings = load_settings(path)
    async with sidebar_answer(settings) as answer, CustomerFacts(settings, answer) as facts:
        assert await facts.lookup(["owner@acme.example"]) == {}
        bug = (await build_reports(store, facts=facts))[0]
    assert bug.facts_available
    assert (bug.plans, bug.revenue_cents, bug.customers_with_facts) == ({}, None, 0)

    plain = settings.model_copy(
        update={"insights": settings.insights.model_copy(update={"reports": ReportsSettings()})}
    )
    async with sidebar_answer(plain) as answer, CustomerFacts(plain, answer) as nothing:
        assert not nothing.configured
        assert await nothing.lookup(["owner@acme.example"]) == {}
        assert not (await build_reports(store, facts=nothing))[0].facts_available

    bad = settings.model_copy(
        update={
            "insights": settings.insights.model_copy(
                update={"reports": ReportsSettings(plan="app.plan ==")}
            )
        }
    )
    with pytest.raises(ValueError, match=r"\[insights.reports\] plan"):
        async with sidebar_answer(bad) as answer:
            CustomerFacts(bad, answer)


# ── Markdown, CSV, JSON ────────────────────────────────────────────────────────────────────────


def hostile_report() -> Report:
    hostile = "[click](javascript:alert(1)) <script>alert(1)</script> ![x](https://e.example/x)"
    return Report(
        topic_id=99,
        kind="bug",
        title=hostile,
        summary=f"“{hostile}” — 1 customer across 1 conversation since 2026-11-01.",
        quote=hostile,
        first_seen=at(1),
        last_seen=at(2),
        customers=1,
        plans={"<img src=x onerror=alert(1)>": 1},
        revenue_cents=4900,
        currency="USD",
        customers_with_facts=1,
        facts_available=True,
        trending=True,
        trend_note="@everyone <b>look</b>",
        conversations=[
            ReportConversation(
                id=7,
                number=70,
                subject=hostile,
                customer="<img src=x onerror=alert(1)>@evil.example",
                created_at=at(1),
                url=url(7, 70),
            )
        ],
    )


def test_markdown_shows_customer_text_as_written_and_never_as_markup() -> None:
    body = to_markdown(hostile_report())
    # rendered by a CommonMark renderer that lets raw HTML through (the worst case)
    html = MarkdownIt("commonmark", {"html": True}).enable("table").render(body)
    tree = assert_harmless_html(html)
    links = [e.attrs.get("href") for e in tree.iter() if e.tag == "a"]
    assert links == [url(7, 70)]  # the only link is ours
    shown = tree.text()
    assert "[click](javascript:alert(1)) <script>alert(1)</script>" in shown  # as written
    assert "@everyone <b>look</b>" in shown
    assert "USD 49.00 a month" in body
    assert "| First seen | 2026-11-01 09:00 UTC |" in body

    without = to_markdown(hostile_report(), include_customers=False)
    assert "evil" not in without


def test_markdown_lists_every_conversation_unless_told_to_fit() -> None:
    report = hostile_report().model_copy(
        update={
            "conversations": [
                ReportConversation(
                    id=n,
                    number=n,
                    subject=f"Subject {n}",
                    customer=None,
                    created_at=None,
                    url=url(n, n),
                )
                for n in range(1, 301)
            ]
        }
    )
    assert all(url(n, n) in to_markdown(report) for n in range(1, 301))
    short = to_markdown(report, max_chars=4000)
    assert len(short) <= 4000
    assert url(1, 1) in short and url(300, 300) not in short
    assert "more conversations" in short


async def test_csv_and_json_round_trip(store: Store) -> None:
    reports = await build_reports(store, trending={BUG: "up"})
    decoded = [Report.model_validate(item) for item in json.loads(to_json(reports))]
    assert decoded == reports
    assert json.loads(to_json(reports))[0]["conversation_count"] == 4

    rows = list(csv.DictReader(io.StringIO(to_csv(reports))))
    assert len(rows) == 2
    for row, report in zip(rows, reports, strict=True):
        assert int(row["topic_id"]) == report.topic_id
        assert row["kind"] == report.kind
        assert row["title"] == report.title
        assert row["summary"] == report.summary
        assert int(row["customers"]) == report.customers
        assert int(row["conversations"]) == report.conversation_count
        assert json.loads(row["plans"]) == report.plans
        assert datetime.fromisoformat(row["first_seen"]) == report.first_seen
        assert datetime.fromisoformat(row["last_seen"]) == report.last_seen
        assert (row["trending"] == "true") == report.trending
        assert row["conversation_urls"].split() == [c.url for c in report.conversations]


def test_csv_cells_never_run_as_spreadsheet_formulas() -> None:
    report = hostile_report().model_copy(update={"title": '=HYPERLINK("https://e.example")'})
    row = next(csv.DictReader(io.StringIO(to_csv([report]))))
    assert row["title"] == '\'=HYPERLINK("https://e.example")'
    assert row["trend_note"] == "'@everyone <b>look</b>"


# ── GitHub Issues ──────────────────────────────────────────────────────────────────────────────


async def stored_export(store: Store, topic_id: int) -> ReportExport | None:
    async with store.read() as session:
        return await session.scalar(select(ReportExport).where(ReportExport.topic_id == topic_id))


async def test_a_second_export_updates_the_same_issue(store: Store, github: FakeGitHub) -> None:
    bug = (await build_reports(store))[0]
    async with GitHubIssues("acme/app", TOKEN, github.api_url) as issues:
        first = await issues.export(store, bug)
        again = bug.model_copy(update={"summary": "Now 5 customers.", "title": "CSV export 500"})
        second = await issues.export(store, again)

    assert first.created and not second.created
    assert first.number == second.number == 1
    assert first.url == second.url == "https://github.example/acme/app/issues/1"
    assert [r.method for r in github.requests()] == ["POST", "PATCH"]
    post, patch = github.requests()
    assert post.path == "/repos/acme/app/issues"
    assert patch.path == "/repos/acme/app/issues/1"
    assert post.headers["authorization"] == f"Bearer {TOKEN}"
    assert post.headers["accept"] == "application/vnd.github+json"
    assert post.headers["x-github-api-version"] == "2022-11-28"
    assert post.json()["labels"] == ["bug"]
    assert set(patch.json()) == {"title", "body"}  # labels and state are left to people
    assert len(github.issues) == 1
    assert github.issues[1]["title"] == "CSV export 500"
    assert "Now 5 customers" in github.issues[1]["body"]
    assert url(1, 1001) in github.issues[1]["body"]
    assert "owner@acme.example" not in github.issues[1]["body"]  # addresses stay in Help Scout

    row = await stored_export(store, BUG)
    assert row is not None
    assert (row.target, row.external_id, row.url) == ("github:acme/app", "1", first.url)


@pytest.mark.parametrize("gone", [410, 404])
async def test_a_deleted_issue_is_opened_again(store: Store, github: FakeGitHub, gone: int) -> None:
    bug = (await build_reports(store))[0]
    async with GitHubIssues("acme/app", TOKEN, github.api_url) as issues:
        first = await issues.export(store, bug)
        github.delete(first.number, status=gone)
        second = await issues.export(store, bug)
        third = await issues.export(store, bug)

    assert second.created and second.number == 2
    assert not third.created and third.number == 2
    assert [r.method for r in github.requests()] == ["POST", "PATCH", "POST", "PATCH"]
    row = await stored_export(store, BUG)
    assert row is not None and row.external_id == "2"


async def test_github_errors_are_clear_and_never_show_the_token(
    store: Store, github: FakeGitHub
) -> None:
    bug = (await build_reports(store))[0]
    async with GitHubIssues("acme/app", "wrong-" + TOKEN, github.api_url) as issues:
        with pytest.raises(GitHubError) as refused:
            await issues.export(store, bug)
    assert "401" in str(refused.value) and "github_token" in str(refused.value)
    assert TOKEN not in str(refused.value)

    async with GitHubIssues("acme/app", TOKEN, github.api_url) as issues:
        github.refuse_next(403, {"message": f"Resource not accessible ({TOKEN})"})
        with pytest.raises(GitHubError, match="403") as forbidden:
            await issues.export(store, bug)
        github.refuse_next(
            422, {"message": "Validation Failed", "errors": [{"field": "labels", "code": "x"}]}
        )
        with pytest.raises(GitHubError, match=r"422.*Validation Failed") as invalid:
            await issues.export(store, bug)
    for error in (forbidden.value, invalid.value):
        assert TOKEN not in str(error)
    assert await stored_export(store, BUG) is None  # nothing exported, nothing remembered

    async with GitHubIssues("other/repo", TOKEN, github.api_url) as issues:
        with pytest.raises(GitHubError, match="no repository other/repo"):
            await issues.export(store, bug)

    dead = f"http://127.0.0.1:{unused_port()}"
    async with GitHubIssues("acme/app", TOKEN, dead, timeout_seconds=2) as issues:
        with pytest.raises(GitHubError, match="cannot reach GitHub") as unreachable:
            await issues.export(store, bug)
    assert TOKEN not in str(unreachable.value)

    with pytest.raises(ValueError, match="owner/name"):
        GitHubIssues("not a repository", TOKEN)


# ── deskside reports ───────────────────────────────────────────────────────────────────────────


@pytest.fixture
def cli_store(tmp_path: Path) -> str:
    """A seeded SQLite store for the command (which runs its own event loop)."""
    import asyncio

    url = f"sqlite:///{tmp_path / 'insights.db'}"

    async def build() -> None:
        opened = await Store(database_url(url)).open()
        try:
            await seed(opened)
        finally:
            await opened.aclose()

    asyncio.run(build())
    return url


def command() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """deskside (the reports command only)."""

    reports_cli.register(app, sidebar_answer)
    return app


def write_config(tmp_path: Path, database: str, api_url: str) -> Path:
    path = tmp_path / "deskside.toml"
    path.write_text(
        f"""
[sources.app]
kind = "sql"
url = "{database}"
query = {json.dumps(DEMO_QUERY)}

[insights.reports]
plan = "app.plan"
revenue_cents = "app.mrr_cents"
github_repository = "acme/app"
github_token = "env:TEST_GITHUB_TOKEN"
github_api_url = "{api_url}"
""",
        encoding="utf-8",
    )
    return path


def test_the_command_lists_prints_and_exports_reports(
    cli_store: str,
    database: str,
    github: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_GITHUB_TOKEN", TOKEN)
    config = str(write_config(tmp_path, database, github.api_url))
    runner = CliRunner()
    base = ["reports", "--config", config, "--database", cli_store]

    result = runner.invoke(command(), base, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "CSV export error 500" in result.output and "Dark mode" in result.output
    assert "Invoices" not in result.output
    assert "Pro 1, Starter 1" in result.output and "249.00" in result.output

    result = runner.invoke(command(), [*base, "--format", "json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [r["topic_id"] for r in listed] == [BUG, FEATURE]
    assert listed[0]["revenue_cents"] == 24900

    for output_format in ("csv", "markdown"):
        result = runner.invoke(command(), [*base, "--format", output_format])
        assert result.exit_code == 0, result.output
        assert url(1, 1001) in result.stdout

    result = runner.invoke(command(), [*base, "--export", "github"])
    assert result.exit_code == 0, result.output
    assert "created #1 https://github.example/acme/app/issues/1" in result.output
    assert "created #2" in result.output

    result = runner.invoke(command(), [*base, "--export", "github", "--topic", str(BUG)])
    assert result.exit_code == 0, result.output
    assert "updated #1 https://github.example/acme/app/issues/1" in result.output
    assert [r.method for r in github.requests()] == ["POST", "POST", "PATCH"]
    assert TOKEN not in result.output


async def add_dark_mode_spike(url: str) -> None:
    """Five new customers ask for a dark mode in the last three days (agents labelled them)."""
    now = datetime.now(UTC)
    wishes = [
        "Could you add a dark mode to the dashboard?",
        "A dark theme for the dashboard would be lovely, especially at night.",
        "Please add dark mode, the white dashboard hurts my eyes.",
        "Dark mode for the dashboard, please!",
        "Is a dark mode for the dashboard planned? We'd love one.",
    ]
    store = await Store(database_url(url)).open()
    try:
        async with store.session() as session:
            for n, text in enumerate(wishes):
                cid = 900 + n
                when = now - timedelta(days=3) + timedelta(hours=12 * n)
                session.add(
                    Conversation(
                        id=cid,
                        number=cid,
                        customer_email=f"fan{n}@example.com",
                        subject="Dark mode",
                        created_at=when,
                        modified_at=when,
                    )
                )
                await session.flush()
                session.add(
                    Thread(
                        id=9000 + n,
                        conversation_id=cid,
                        type="customer",
                        author="customer",
                        text=text,
                        created_at=when,
                    )
                )
                session.add(
                    Classification(conversation_id=cid, label="feature", confidence=1.0, by="agent")
                )
    finally:
        await store.aclose()


def test_the_command_shows_trending_topics_and_fails_cleanly(
    cli_store: str,
    database: str,
    github: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = CliRunner()
    missing = str(tmp_path / "none.toml")
    base = ["reports", "--config", missing, "--database", cli_store]

    result = runner.invoke(command(), [*base, "--trending", "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []

    asyncio.run(add_dark_mode_spike(cli_store))  # five customers ask within three days
    result = runner.invoke(command(), [*base, "--trending", "--format", "json"])
    assert result.exit_code == 0, result.output
    (only,) = json.loads(result.stdout)
    assert only["topic_id"] == FEATURE and only["trending"] is True
    assert "5" in only["trend_note"]
    assert only["facts_available"] is False  # no config: no plans or revenue

    result = runner.invoke(command(), [*base, "--export", "github"])
    assert result.exit_code == 2
    assert "[insights.reports] github_repository" in result.output

    monkeypatch.setenv("TEST_GITHUB_TOKEN", "wrong")
    config = str(write_config(tmp_path, database, github.api_url))
    result = runner.invoke(
        command(), ["reports", "--config", config, "--database", cli_store, "--export", "github"]
    )
    assert result.exit_code == 2
    assert "401" in result.output and "[insights.reports] github_token" in result.output
