"""``deskside reports``: bug and feature topics as reports, in the terminal or as Markdown, CSV or
JSON, and exported to GitHub Issues.

Add it to an app with :func:`register`. Each run first brings the labels, topics and trends
up to date (:class:`~deskside.insights.analysis.engine.Analysis`) unless a running server does that
for the same store, then reads them from the store. The insights stack (scikit-learn, NumPy)
is imported when the command runs, not with the CLI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from deskside.console import ConfigOption, err, fail, out
from deskside.errors import ConfigError
from deskside.insights import DEFAULT_WORKSPACE
from deskside.insights.cli import DatabaseOption, WorkspaceOption, insights_context, run_with_store

if TYPE_CHECKING:
    from deskside.config import Settings
    from deskside.insights.reports.facts import OpenSidebar
    from deskside.insights.reports.github import ExportResult, GitHubIssues
    from deskside.insights.reports.report import Report
    from deskside.insights.settings import InsightsSettings
    from deskside.insights.store import Store

__all__ = ["register", "reports"]

_DEFAULT_CONFIG = Path("deskside.toml")
_open_sidebar: OpenSidebar | None = None
"""How ``reports`` reaches the sidebar's sources for plans and revenue (see :func:`register`)."""


@dataclass
class _Outcome:
    reports: list[Report]
    exported: list[tuple[Report, ExportResult]]
    export_error: str | None = None


def reports(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    trending_only: Annotated[
        bool, typer.Option("--trending", help="Only topics that are trending.")
    ] = False,
    output_format: Annotated[
        Literal["table", "markdown", "csv", "json"],
        typer.Option("--format", help="How to print the reports."),
    ] = "table",
    export: Annotated[
        Literal["github"] | None,
        typer.Option(
            "--export",
            help="Also open (or update) a GitHub issue per report listed: "
            "\\[insights.reports] github_repository and github_token (else $GITHUB_TOKEN).",
            show_default=False,
        ),
    ] = None,
    topic: Annotated[
        list[int] | None,
        typer.Option("--topic", help="Only this topic id; repeatable.", show_default=False),
    ] = None,
) -> None:
    """Bug and feature topics as reports: customers, conversations, plans and revenue, when
    first and last seen; trending ones first.

    A workspace's \\[insights.workspaces.NAME.reports] replaces \\[insights.reports].
    """
    from deskside.insights.analysis.engine import ANALYSIS_LEASE, Analysis
    from deskside.insights.privacy.erasure import rewrite_erased_exports
    from deskside.insights.reports.github import GitHubError
    from deskside.insights.store import release_lease

    settings, store = insights_context(config, database, workspace)
    github = _github(settings) if export == "github" else None
    full = _facts_settings(config, settings)

    async def work(store: Store) -> _Outcome:
        analysis = Analysis(store, settings)
        holder = f"deskside reports:{os.getpid()}"
        try:
            await analysis.update_unless_elsewhere(holder)
        finally:
            await release_lease(store, ANALYSIS_LEASE, holder)
        trending = await analysis.trends()
        found = await _build(store, full, trending, topic or None)
        if trending_only:
            found = [report for report in found if report.trending]
        outcome = _Outcome(reports=found, exported=[])
        if github is None:
            return outcome
        async with github:
            for report in found:
                try:
                    outcome.exported.append((report, await github.export(store, report)))
                except GitHubError as exc:
                    outcome.export_error = str(exc)
                    break
            exported = {report.topic_id for report, _ in outcome.exported}
            try:  # issues that named someone erased since, whichever topics were listed
                outcome.exported += await rewrite_erased_exports(store, github, exported=exported)
            except GitHubError as exc:
                outcome.export_error = outcome.export_error or str(exc)
        return outcome

    outcome = run_with_store(store, work)
    _print(outcome.reports, output_format)
    _explain_empty(outcome.reports, trending_only, topic)
    # Export lines go where they cannot spoil a document printed on stdout.
    console = out if output_format == "table" else err
    for report, result in outcome.exported:
        verb = "created" if result.created else "updated"
        console.print(
            Text(f"{verb} #{result.number} {result.url}  (topic {report.topic_id}: {report.title})")
        )
    if outcome.export_error is not None:
        fail(outcome.export_error)


def _github(settings: InsightsSettings) -> GitHubIssues:
    from deskside.insights.reports.github import GitHubIssues

    reports = settings.reports
    if not reports.github_repository:
        fail('--export github: set [insights.reports] github_repository = "owner/name"')
    token = (
        reports.github_token.get_secret_value()
        if reports.github_token is not None
        else os.environ.get("GITHUB_TOKEN", "")
    )
    if not token.strip():
        fail('--export github: set [insights.reports] github_token = "env:GITHUB_TOKEN"')
    try:
        return GitHubIssues(reports.github_repository, token, reports.github_api_url)
    except ValueError as exc:
        fail(f"--export github: {exc}")


def _facts_settings(config: Path, settings: InsightsSettings) -> Settings | None:
    """The whole config, when ``plan`` or ``revenue_cents`` is configured, valid, and the config
    loads (plans and revenue are then looked up through the sidebar)."""
    if not (settings.reports.plan or settings.reports.revenue_cents) or not config.is_file():
        return None
    if _open_sidebar is None:
        return None
    from deskside.config import load_settings
    from deskside.insights.reports.facts import fact_expressions

    try:
        full = load_settings(config)
    except ConfigError as exc:
        err.print(
            Text(f"Plans and revenue are left out: the config does not load ({exc.problems[0]})")
        )
        return None
    try:
        fact_expressions(full.insights.reports)
    except ValueError as exc:
        fail(str(exc))
    return full


async def _build(
    store: Store, full: Settings | None, trending: dict[int, str], topic_ids: list[int] | None
) -> list[Report]:
    """The reports, with plans and revenue from the sidebar when ``full`` says how."""
    from deskside.insights.reports.facts import CustomerFacts
    from deskside.insights.reports.report import build_reports

    if full is None or _open_sidebar is None:
        return await build_reports(store, trending=trending, topic_ids=topic_ids)
    async with _open_sidebar(full) as answer:
        facts = CustomerFacts(full, answer)
        return await build_reports(store, facts=facts, trending=trending, topic_ids=topic_ids)


def _print(found: list[Report], output_format: str) -> None:
    from deskside.insights.reports.formats import to_csv, to_json, to_markdown
    from deskside.render.markdown import escape_markdown

    if output_format == "json":
        typer.echo(to_json(found))
    elif output_format == "csv":
        typer.echo(to_csv(found), nl=False)
    elif output_format == "markdown":
        documents = [f"## {escape_markdown(r.title)}\n\n{to_markdown(r)}" for r in found]
        typer.echo("\n".join(documents), nl=False)
    elif found:
        out.print(_table(found))


def _table(found: list[Report]) -> Table:
    """Fits 80 columns: a trending topic's id has a ▲ and its note goes under the title."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    table.add_column("topic", justify="right", no_wrap=True)
    table.add_column("title", ratio=1, min_width=14)
    table.add_column("kind", no_wrap=True)
    table.add_column("cust.", justify="right", no_wrap=True)
    table.add_column("conv.", justify="right", no_wrap=True)
    table.add_column("plans", min_width=5, max_width=24)
    table.add_column("MRR", justify="right", no_wrap=True)
    table.add_column("first/last", no_wrap=True)
    for report in found:
        topic = Text(str(report.topic_id))
        title = Text(report.title)
        if report.trending:
            topic = Text.assemble(("▲ ", "bold red"), str(report.topic_id))
            title.append(f"\n{report.trend_note}" if report.trend_note else "", style="dim")
        table.add_row(
            topic,
            title,
            report.kind,
            str(report.customers),
            str(report.conversation_count),
            Text(_plans_cell(report)),
            _revenue_cell(report),
            f"{report.first_seen:%Y-%m-%d}\n{report.last_seen:%Y-%m-%d}",
        )
    return table


def _plans_cell(report: Report) -> str:
    if not report.facts_available:
        return "-"
    return ", ".join(f"{plan} {count}" for plan, count in report.plans.items()) or "unknown"


def _revenue_cell(report: Report) -> str:
    if report.revenue_cents is None:
        return "-" if not report.facts_available else "unknown"
    return f"{report.revenue_cents / 100:,.2f}"


def _explain_empty(found: list[Report], trending_only: bool, topic: list[int] | None) -> None:
    missing = sorted(set(topic or ()) - {report.topic_id for report in found})
    if missing:
        listed = ", ".join(str(topic_id) for topic_id in missing)
        which = "trending bug or feature" if trending_only else "bug or feature"
        err.print(f"No {which} report for topic {listed}.")
    elif not found and trending_only:
        err.print("No bug or feature topic is trending.")
    elif not found:
        err.print(
            "No bug or feature topics yet: conversations are grouped into topics once they "
            "are stored and classified."
        )


def register(app: typer.Typer, open_sidebar: OpenSidebar | None = None) -> None:
    """Add ``reports`` to ``app``; with ``open_sidebar``, reports show plans and revenue from
    the sidebar's sources (``[insights.reports] plan`` / ``revenue_cents``)."""
    global _open_sidebar
    _open_sidebar = open_sidebar
    app.command()(reports)
