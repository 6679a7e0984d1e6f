"""Reports as text: GitHub-flavoured Markdown (:func:`to_markdown`, everything customers or the
sources wrote escaped), CSV (:func:`to_csv`, formula-looking cells made inert) and JSON
(:func:`to_json`, read back with ``Report.model_validate``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable

from deskside.insights.reports.report import Report, ReportConversation, counted
from deskside.render.markdown import escape_markdown

__all__ = [
    "CSV_COLUMNS",
    "to_csv",
    "to_json",
    "to_markdown",
]

_SPREADSHEET_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _money(cents: int, currency: str | None) -> str:
    amount = f"{cents / 100:,.2f}"
    return f"{currency} {amount}" if currency else amount


def _plans_text(report: Report) -> str:
    if not report.facts_available:
        return "not looked up (set [insights.reports] plan and revenue_cents)"
    if not report.plans:
        return f"unknown ({report.customers_with_facts} of {report.customers} customers known)"
    listed = ", ".join(f"{plan}: {count}" for plan, count in report.plans.items())
    return f"{listed} ({report.customers_with_facts} of {report.customers} customers known)"


def to_markdown(
    report: Report, *, include_customers: bool = True, max_chars: int | None = None
) -> str:
    """``report`` as the body of an issue (GitHub-flavoured Markdown, no title).

    Everything that customers or the sources wrote is escaped, so it shows as written and can
    never become a link, an image, a mention or HTML. ``include_customers=False`` leaves out
    customers' addresses and names. With ``max_chars`` the conversation list is cut short (with
    a count of the rest) so the body fits.
    """
    seen = f"{report.first_seen:%Y-%m-%d %H:%M} UTC"
    last = f"{report.last_seen:%Y-%m-%d %H:%M} UTC"
    revenue = (
        _money(report.revenue_cents, report.currency) + " a month"
        if report.revenue_cents is not None
        else ("unknown" if report.facts_available else "not looked up")
    )
    head = [f"<!-- deskside report: topic {report.topic_id} -->"]
    if report.trending:
        head += ["", f"**Trending**: {escape_markdown(report.trend_note or 'yes')}"]
    counts = report.summary
    if report.quote:
        counts = counts.removeprefix(f"“{report.quote}” — ")
        head += ["", f"> “{escape_markdown(report.quote)}”"]
    head += [
        "",
        escape_markdown(counts),
        "",
        "| | |",
        "| --- | --- |",
        f"| Kind | {report.kind} |",
        f"| Customers | {report.customers} |",
        f"| Conversations | {report.conversation_count} |",
        f"| Plans | {escape_markdown(_plans_text(report))} |",
        f"| Monthly revenue | {revenue} |",
        f"| First seen | {seen} |",
        f"| Last seen | {last} |",
        "",
        f"### Conversations ({report.conversation_count})",
        "",
    ]
    tail = [
        "",
        "_Written by `deskside reports`: the next export replaces this text._",
    ]
    lines = [_conversation_line(c, include_customers) for c in report.conversations]
    if max_chars is not None:
        budget = max_chars - len("\n".join(head + tail)) - 80  # room for the "… more" line
        kept: list[str] = []
        for line in lines:
            budget -= len(line) + 1
            if budget < 0:
                break
            kept.append(line)
        if len(kept) < len(lines):
            left = len(lines) - len(kept)
            kept.append(f"- … and {counted(left, 'more conversation')} (`--format csv` lists all)")
        lines = kept
    return "\n".join(head + lines + tail) + "\n"


def _conversation_line(conversation: ReportConversation, include_customers: bool) -> str:
    number = f"#{conversation.number}" if conversation.number is not None else "conversation"
    subject = escape_markdown(conversation.subject.strip()) or "(no subject)"
    details = []
    if include_customers and conversation.customer:
        details.append(escape_markdown(conversation.customer))
    if conversation.created_at is not None:
        details.append(f"{conversation.created_at:%Y-%m-%d}")
    suffix = f" — {', '.join(details)}" if details else ""
    return f"- [{number} {subject}]({conversation.url}){suffix}"


CSV_COLUMNS = (
    "topic_id",
    "kind",
    "title",
    "summary",
    "customers",
    "conversations",
    "plans",
    "revenue_cents",
    "currency",
    "customers_with_facts",
    "first_seen",
    "last_seen",
    "trending",
    "trend_note",
    "conversation_urls",
)
"""The columns of :func:`to_csv`, in order."""


def to_csv(reports: Iterable[Report]) -> str:
    """One row per report (:data:`CSV_COLUMNS`): ``plans`` as a JSON object, dates in ISO 8601,
    ``conversation_urls`` separated by spaces. Text that a spreadsheet would run as a formula
    (starting with ``=``, ``+``, ``-`` or ``@``) gets a leading ``'``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for report in reports:
        writer.writerow(
            [
                report.topic_id,
                report.kind,
                _inert(report.title),
                _inert(report.summary),
                report.customers,
                report.conversation_count,
                json.dumps(report.plans, ensure_ascii=False),
                "" if report.revenue_cents is None else report.revenue_cents,
                report.currency or "",
                report.customers_with_facts,
                report.first_seen.isoformat(),
                report.last_seen.isoformat(),
                "true" if report.trending else "false",
                _inert(report.trend_note or ""),
                " ".join(c.url for c in report.conversations),
            ]
        )
    return buffer.getvalue()


def _inert(text: str) -> str:
    return "'" + text if text.startswith(_SPREADSHEET_FORMULA_START) else text


def to_json(reports: Iterable[Report]) -> str:
    """A JSON array of the reports (``Report.model_validate`` reads each back)."""
    return json.dumps(
        [report.model_dump(mode="json") for report in reports], ensure_ascii=False, indent=2
    )
