"""Reports: each bug or feature topic as something to act on — what customers say, how many of
them, since when, on which plans and for how much revenue — with a link to every conversation.

A report is read from the store (topics, their members, the customers' own words) and, when a
:class:`CustomerFacts` is given, from the sidebar's sources. It leaves as a GitHub issue
(:class:`GitHubIssues`: a second export updates the same issue), Markdown, CSV or JSON.
Customer text is never rewritten: the summary quotes one of their sentences as written.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np
from pydantic import BaseModel, computed_field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.expressions import Expression, Scope
from deskside.insights import audit
from deskside.insights.analysis.customer_text import conversation_text
from deskside.insights.models import (
    Conversation,
    Customer,
    ReportExport,
    Thread,
    Topic,
    TopicMember,
    utcnow,
)
from deskside.insights.store import Store, insert_for
from deskside.layout import expression_context
from deskside.lookup import Lookup, normalise_emails
from deskside.render.markdown import escape_markdown

if TYPE_CHECKING:
    from deskside.config import Settings
    from deskside.service import SidebarService

__all__ = [
    "CSV_COLUMNS",
    "GITHUB_BODY_LIMIT",
    "REPORT_KINDS",
    "CustomerFacts",
    "ExportResult",
    "Facts",
    "GitHubError",
    "GitHubIssues",
    "Report",
    "ReportConversation",
    "ReportKind",
    "build_reports",
    "conversation_url",
    "to_csv",
    "to_json",
    "to_markdown",
]

log = logging.getLogger("deskside.insights.reports")

ReportKind = Literal["bug", "feature"]
REPORT_KINDS: tuple[ReportKind, ...] = ("bug", "feature")

GITHUB_BODY_LIMIT = 60_000
"""Characters of an issue body sent to GitHub (its limit is 65,536); the conversation list is
cut short, with a count of what was left out, to fit."""

_MIN_QUOTE_WORDS = 4
_MAX_QUOTE_CHARS = 220
_MAX_SUMMARY_DOCUMENTS = 2000
"""The newest conversations of a topic that its summary is chosen from."""
_MAX_SENTENCES_PER_CONVERSATION = 20
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|\n+")
_PRIVATE_LOOKING = re.compile(r"\S@\S|https?://|www\.", re.IGNORECASE)
"""Sentences with an address or a link are never quoted: a report may travel further than the
helpdesk (a public issue tracker)."""
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_SPREADSHEET_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def conversation_url(conversation_id: int, number: int | None) -> str:
    """The conversation in Help Scout's web app."""
    if number is None:
        return f"https://secure.helpscout.net/conversation/{conversation_id}/"
    return f"https://secure.helpscout.net/conversation/{conversation_id}/{number}/"


class ReportConversation(BaseModel):
    """One conversation of a report, with its link back to Help Scout."""

    id: int
    number: int | None
    subject: str
    customer: str | None
    """The customer's address, else their name; ``None`` when Help Scout named nobody."""
    created_at: datetime | None
    url: str


class Report(BaseModel):
    """A bug or feature topic, summed up for whoever fixes or builds it."""

    topic_id: int
    kind: ReportKind
    title: str
    """The topic's name."""
    summary: str
    """The quoted customer sentence (when there is one) and the counts, as plain text."""
    quote: str | None
    """The customer's sentence the summary quotes, exactly as written (maybe shortened, "…")."""
    first_seen: datetime
    """When the topic's first conversation began."""
    last_seen: datetime
    """The latest a customer wrote about it: a conversation begun or a customer reply."""
    customers: int
    """Distinct customers: by address, else by Help Scout customer id, else each conversation."""
    plans: dict[str, int]
    """Plan → number of customers on it, for customers whose plan the sources know; most first."""
    revenue_cents: int | None
    """The known monthly revenue of those customers, summed per customer (two people of one
    account each bring its revenue); ``None`` when none is known."""
    currency: str | None = None
    """The currency of ``revenue_cents`` (the card's ``currency``) when facts were looked up."""
    customers_with_facts: int
    """How many of the customers the sources knew a plan or revenue for."""
    facts_available: bool
    """Whether plans and revenue were looked up at all (``[insights.reports]`` configured)."""
    trending: bool
    trend_note: str | None
    conversations: list[ReportConversation]
    """Every conversation of the topic, newest first."""

    @computed_field  # type: ignore[prop-decorator]
    @property
    def conversation_count(self) -> int:
        """How many conversations the topic has."""
        return len(self.conversations)


# ── Customer facts from the sidebar's sources ──────────────────────────────────────────────────


@dataclass(frozen=True)
class Facts:
    """What the sources know about one customer."""

    plan: str | None = None
    revenue_cents: int | None = None


class CustomerFacts:
    """Plans and monthly revenue of customers, looked up as the sidebar looks them up.

    Each address goes through a :class:`~deskside.service.SidebarService` built from
    ``settings`` (the same sources, cache and deadline as the sidebar), and
    ``[insights.reports] plan`` / ``revenue_cents`` are evaluated in the context card
    expressions see (``app.plan``). At most ``concurrency`` lookups run at once. A lookup that
    fails or overruns the deadline, or finds nothing, leaves that customer unknown. Invalid
    expressions raise :class:`ValueError` here. Close with :meth:`aclose` (or ``async with``).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        concurrency: int = 8,
        service: SidebarService | None = None,
    ) -> None:
        reports = settings.insights.reports
        self.settings = settings
        self.plan = _expression("plan", reports.plan)
        self.revenue_cents = _expression("revenue_cents", reports.revenue_cents)
        self.currency = settings.card.currency
        self.concurrency = max(1, concurrency)
        self._service = service
        self._owns_service = service is None
        self._failing: set[str] = set()
        """Expressions that failed (and were logged) once; a config mistake logs once."""
        # The resolver answers by its deadline; this only guards against a source that hangs.
        self._timeout = settings.server.deadline_ms / 1000 + 1.0

    @property
    def configured(self) -> bool:
        """Whether there is anything to look up (``plan`` or ``revenue_cents`` is set)."""
        return self.plan is not None or self.revenue_cents is not None

    async def lookup(self, emails: Iterable[str]) -> dict[str, Facts]:
        """Facts by lower-cased address, for the addresses the sources knew something about."""
        wanted = sorted({email.strip().lower() for email in emails if email and email.strip()})
        if not self.configured or not wanted:
            return {}
        service = self._sidebar_service()
        gate = asyncio.Semaphore(self.concurrency)

        async def one(email: str) -> tuple[str, Facts | None]:
            async with gate:
                return email, await self._facts_of(service, email)

        found = await asyncio.gather(*(one(email) for email in wanted))
        return {email: facts for email, facts in found if facts is not None}

    async def aclose(self) -> None:
        if self._service is not None and self._owns_service:
            await self._service.aclose()
            self._service = None

    async def __aenter__(self) -> CustomerFacts:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _sidebar_service(self) -> SidebarService:
        if self._service is None:
            from deskside.service import SidebarService

            self._service = SidebarService(self.settings)
        return self._service

    async def _facts_of(self, service: SidebarService, email: str) -> Facts | None:
        fold = self.settings.lookup.fold_plus_addressing
        emails = normalise_emails([email], fold_plus=fold)
        if not emails:
            return None
        lookup = Lookup(emails=emails, context={"desk": "reports"})
        try:
            profile = await asyncio.wait_for(service.resolver.resolve(lookup), self._timeout)
        except Exception as exc:  # any failure: this customer stays unknown
            log.info("customer facts: lookup failed (%s)", type(exc).__name__)
            return None
        if not profile.found:
            return None
        scope = Scope(expression_context(profile))
        plan = _as_plan(self._evaluate(self.plan, scope))
        revenue = _as_cents(self._evaluate(self.revenue_cents, scope))
        if plan is None and revenue is None:
            return None
        return Facts(plan=plan, revenue_cents=revenue)

    def _evaluate(self, expression: Expression | None, scope: Scope) -> Any:
        if expression is None:
            return None
        try:
            return expression.evaluate(scope)
        except Exception as exc:  # a config expression that fails for this customer
            if expression.source not in self._failing:
                self._failing.add(expression.source)
                log.warning("[insights.reports] %s failed: %s", expression.source, exc)
            return None


def _expression(name: str, source: str | None) -> Expression | None:
    if source is None or not source.strip():
        return None
    try:
        return Expression(source)
    except ValueError as exc:
        raise ValueError(f"[insights.reports] {name}: {exc}") from None


def _as_plan(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _as_cents(value: Any) -> int | None:
    """Whole cents from a number (or numeric text); anything else is unknown."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite():
        return None
    return int(amount.to_integral_value())


# ── Building reports ───────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class _Member:
    conversation: Conversation
    email: str | None
    customer_key: str
    customer_label: str | None
    text: str
    """What the customer wrote (subject first): :func:`conversation_text`."""
    last_written: datetime


async def build_reports(
    store: Store,
    *,
    facts: CustomerFacts | None = None,
    trending: Mapping[int, str] | None = None,
    kinds: Collection[ReportKind] = REPORT_KINDS,
    topic_ids: Collection[int] | None = None,
) -> list[Report]:
    """A report per topic labelled one of ``kinds`` that has conversations, except topics
    merged into another; only ``topic_ids`` when given.

    ``trending`` maps the ids of trending topics to a note saying why. Plans and revenue come
    from ``facts`` (none without it). Trending topics come first, then those with the most
    customers, then the most recently seen.
    """
    trending = trending or {}
    async with store.read() as session:
        topics, members = await _load(session, kinds, topic_ids)
    available = facts is not None and facts.configured
    known: dict[str, Facts] = {}
    if facts is not None and available:
        known = await facts.lookup(m.email for group in members.values() for m in group if m.email)
    currency = facts.currency if facts is not None and available else None
    reports = [
        _report(topic, members[topic.id], known, available, currency, trending.get(topic.id))
        for topic in topics
        if members.get(topic.id)
    ]
    reports.sort(key=lambda r: (not r.trending, -r.customers, -r.last_seen.timestamp(), r.topic_id))
    return reports


async def _load(
    session: AsyncSession, kinds: Collection[ReportKind], topic_ids: Collection[int] | None
) -> tuple[list[Topic], dict[int, list[_Member]]]:
    wanted = [Topic.merged_into.is_(None), Topic.label.in_(list(kinds))]
    if topic_ids is not None:
        wanted.append(Topic.id.in_(list(topic_ids)))
    topics = list((await session.scalars(select(Topic).where(*wanted).order_by(Topic.id))).all())
    member_ids = (
        select(TopicMember.conversation_id)
        .join(Topic, Topic.id == TopicMember.topic_id)
        .where(*wanted)
    )
    rows = (
        await session.execute(
            select(TopicMember.topic_id, Conversation)
            .join(Conversation, Conversation.id == TopicMember.conversation_id)
            .join(Topic, Topic.id == TopicMember.topic_id)
            .where(*wanted)
        )
    ).all()
    customer_ids = select(Conversation.customer_id).where(Conversation.id.in_(member_ids))
    customers = {
        customer.id: customer
        for customer in (
            await session.scalars(select(Customer).where(Customer.id.in_(customer_ids)))
        ).all()
    }
    threads: dict[int, list[Thread]] = defaultdict(list)
    for thread in (
        await session.scalars(
            select(Thread).where(
                Thread.author == "customer", Thread.conversation_id.in_(member_ids)
            )
        )
    ).all():
        threads[thread.conversation_id].append(thread)
    members: dict[int, list[_Member]] = defaultdict(list)
    for topic_id, conversation in rows:
        customer = customers.get(conversation.customer_id) if conversation.customer_id else None
        written = sorted(threads.get(conversation.id, []), key=_thread_order)
        members[topic_id].append(_member(conversation, customer, written))
    for group in members.values():
        group.sort(key=lambda m: (_began(m.conversation), m.conversation.id))
    return topics, members


def _thread_order(thread: Thread) -> tuple[datetime, int]:
    return thread.created_at or datetime.min.replace(tzinfo=UTC), thread.id


def _began(conversation: Conversation) -> datetime:
    """When the conversation began (when Help Scout did not say: when it changed, or arrived)."""
    return conversation.created_at or conversation.modified_at or conversation.stored_at


def _member(
    conversation: Conversation, customer: Customer | None, threads: list[Thread]
) -> _Member:
    raw_email = conversation.customer_email or (customer.email if customer else None)
    email = raw_email.strip().lower() if raw_email and raw_email.strip() else None
    if email:
        key = f"email:{email}"
    elif conversation.customer_id is not None:
        key = f"customer:{conversation.customer_id}"
    else:
        key = f"conversation:{conversation.id}"
    name = " ".join(p for p in (customer.first_name, customer.last_name) if p) if customer else ""
    moments = [_began(conversation), *(t.created_at for t in threads if t.created_at)]
    return _Member(
        conversation=conversation,
        email=email,
        customer_key=key,
        customer_label=email or name or None,
        text=conversation_text(threads, conversation.subject),
        last_written=max(moments),
    )


def _report(
    topic: Topic,
    members: list[_Member],
    known: Mapping[str, Facts],
    facts_available: bool,
    currency: str | None,
    trend_note: str | None,
) -> Report:
    email_of: dict[str, str | None] = {}
    for member in members:
        email_of.setdefault(member.customer_key, member.email)
    customer_facts = [known[email] for email in email_of.values() if email and email in known]
    plans = Counter(f.plan for f in customer_facts if f.plan is not None)
    revenues = [f.revenue_cents for f in customer_facts if f.revenue_cents is not None]
    first_seen = min(_began(m.conversation) for m in members)
    quote = _representative_sentence([m.text for m in members[-_MAX_SUMMARY_DOCUMENTS:]])
    counts = (
        f"{_count(len(email_of), 'customer')} across {_count(len(members), 'conversation')} "
        f"since {first_seen:%Y-%m-%d}."
    )
    newest_first = sorted(
        members, key=lambda m: (_began(m.conversation), m.conversation.id), reverse=True
    )
    return Report(
        topic_id=topic.id,
        kind="feature" if topic.label == "feature" else "bug",
        title=topic.name,
        summary=f"“{quote}” — {counts}" if quote else counts,
        quote=quote,
        first_seen=first_seen,
        last_seen=max(m.last_written for m in members),
        customers=len(email_of),
        plans=dict(sorted(plans.items(), key=lambda item: (-item[1], item[0]))),
        revenue_cents=sum(revenues) if revenues else None,
        currency=currency,
        customers_with_facts=len(customer_facts),
        facts_available=facts_available,
        trending=trend_note is not None,
        trend_note=trend_note,
        conversations=[
            ReportConversation(
                id=m.conversation.id,
                number=m.conversation.number,
                subject=m.conversation.subject or "",
                customer=m.customer_label,
                created_at=m.conversation.created_at,
                url=conversation_url(m.conversation.id, m.conversation.number),
            )
            for m in newest_first
        ],
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _representative_sentence(documents: Sequence[str]) -> str | None:
    """The sentence of ``documents`` (one per conversation) most like the other conversations:
    the highest mean TF-IDF cosine to the other documents (to its own when there is one).

    Sentences shorter than a few words, and any with an address or a link, are never chosen.
    Ties go to the earlier sentence. ``None`` when no sentence qualifies.
    """
    candidates: list[tuple[int, str]] = []
    for index, document in enumerate(documents):
        for sentence in _sentences(document)[:_MAX_SENTENCES_PER_CONVERSATION]:
            candidates.append((index, sentence))
    if not candidates:
        return None
    from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]

    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    try:
        document_vectors = vectorizer.fit_transform(documents)
    except ValueError:  # nothing but stop words: no sentence says more than another
        return _shortened(candidates[0][1])
    sentence_vectors = vectorizer.transform([sentence for _, sentence in candidates])
    owners = np.array([index for index, _ in candidates])
    with_own = np.asarray(sentence_vectors.multiply(document_vectors[owners]).sum(axis=1)).ravel()
    if len(documents) == 1:
        scores = with_own
    else:
        total = np.asarray(document_vectors.sum(axis=0)).ravel()
        scores = (sentence_vectors @ total - with_own) / (len(documents) - 1)
    return _shortened(candidates[int(np.argmax(scores))][1])


def _sentences(text: str) -> list[str]:
    found = []
    for part in _SENTENCE_BREAK.split(text):
        sentence = " ".join(part.split())
        if len(sentence.split()) >= _MIN_QUOTE_WORDS and not _PRIVATE_LOOKING.search(sentence):
            found.append(sentence)
    return found


def _shortened(sentence: str) -> str:
    if len(sentence) <= _MAX_QUOTE_CHARS:
        return sentence
    cut = sentence[: _MAX_QUOTE_CHARS - 1].rsplit(" ", 1)[0]
    return cut.rstrip(",;:-—") + "…"


# ── Markdown, CSV and JSON ─────────────────────────────────────────────────────────────────────


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
            kept.append(f"- … and {_count(left, 'more conversation')} (`--format csv` lists all)")
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


# ── GitHub Issues ──────────────────────────────────────────────────────────────────────────────


class GitHubError(Exception):
    """GitHub refused or could not be reached; the message never contains the token."""


@dataclass(frozen=True)
class ExportResult:
    number: int
    url: str
    created: bool
    """True when a new issue was opened, False when the topic's issue was updated."""


class GitHubIssues:
    """Reports as issues of ``repository`` (``owner/name``), one issue per topic.

    The first export of a topic opens an issue (labelled ``bug`` or ``feature``) and remembers
    it in the store (``report_exports``, target ``github:owner/name``); later exports update
    its title and body. An issue deleted since is opened anew. Customers' addresses are left
    out of issues unless ``include_customers``. Use ``async with`` or :meth:`aclose`.
    """

    def __init__(
        self,
        repository: str,
        token: str,
        api_url: str = "https://api.github.com",
        *,
        timeout_seconds: float = 20.0,
        include_customers: bool = False,
        by: str = "cli",
    ) -> None:
        """``by``: who exports, as the audit names them."""
        if not _REPOSITORY.match(repository) or ".." in repository:
            raise ValueError(f"{repository!r} is not a GitHub repository: write owner/name")
        if not token.strip():
            raise ValueError("the GitHub token is empty")
        self.repository = repository
        self.api_url = api_url.rstrip("/")
        self.include_customers = include_customers
        self.by = by
        self._token = token
        self._timeout_seconds = timeout_seconds
        self._client = httpx.AsyncClient(
            base_url=self.api_url,
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "deskside-reports",
            },
            follow_redirects=True,
        )

    @property
    def target(self) -> str:
        """How the store names this destination: ``github:owner/name``."""
        return f"github:{self.repository}"

    async def export(self, store: Store, report: Report) -> ExportResult:
        """Open or update the topic's issue; raises :class:`GitHubError`."""
        async with store.read() as session:
            stored = await session.get(ReportExport, (report.topic_id, self.target))
        title = _issue_title(report)
        body = to_markdown(
            report, include_customers=self.include_customers, max_chars=GITHUB_BODY_LIMIT
        )
        issues = f"/repos/{self.repository}/issues"
        if stored is not None and stored.external_id.isdigit():
            number = stored.external_id
            response = await self._send(
                "PATCH", f"{issues}/{number}", {"title": title, "body": body}
            )
            if response.status_code not in (404, 410):
                result = self._result(response, created=False, action=f"update issue #{number}")
                await self._remember(store, report.topic_id, result)
                return result
            log.info(
                "GitHub issue #%s of topic %s is gone; opening a new one", number, report.topic_id
            )
        document = {"title": title, "body": body, "labels": [report.kind]}
        response = await self._send("POST", issues, document)
        result = self._result(response, created=True, action="open an issue")
        await self._remember(store, report.topic_id, result)
        return result

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> GitHubIssues:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, method: str, path: str, document: Mapping[str, Any]) -> httpx.Response:
        try:
            return await self._client.request(method, path, json=document)
        except httpx.TimeoutException:
            raise GitHubError(
                f"GitHub ({self.api_url}) did not answer within {self._timeout_seconds:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise GitHubError(
                self._scrub(f"cannot reach GitHub at {self.api_url}: {type(exc).__name__}: {exc}")
            ) from None

    def _result(self, response: httpx.Response, *, created: bool, action: str) -> ExportResult:
        if not response.is_success:
            raise GitHubError(self._scrub(self._refusal(response, action)))
        try:
            issue = response.json()
            return ExportResult(
                number=int(issue["number"]), url=str(issue["html_url"]), created=created
            )
        except (ValueError, KeyError, TypeError):
            raise GitHubError(
                f"GitHub answered {response.status_code} to {action} in {self.repository} "
                "without an issue in its body"
            ) from None

    def _refusal(self, response: httpx.Response, action: str) -> str:
        status = response.status_code
        said = _github_message(response)
        where = f"{action} in {self.repository}"
        if status == 401:
            return (
                f"GitHub refused the token (401{said}) trying to {where}: check "
                "[insights.reports] github_token (or GITHUB_TOKEN)"
            )
        if status == 403 or status == 429:
            if response.headers.get("x-ratelimit-remaining") == "0" or status == 429:
                return (
                    f"GitHub's rate limit was hit ({status}{said}) trying to {where}: retry later"
                )
            return (
                f"GitHub forbids this ({status}{said}) trying to {where}: the token needs "
                "write access to the repository's issues"
            )
        if status == 404:
            return (
                f"GitHub found no repository {self.repository} that the token can see (404) "
                f"trying to {action}"
            )
        if status == 410:
            return f"GitHub says it is gone (410{said}) trying to {where}: are issues turned off?"
        if status == 422:
            return f"GitHub rejected the issue (422{said}) trying to {where}"
        return f"GitHub answered {status}{said} trying to {where}"

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***")

    async def _remember(self, store: Store, topic_id: int, result: ExportResult) -> None:
        async with store.session() as session:
            statement = insert_for(session)(ReportExport).values(
                topic_id=topic_id,
                target=self.target,
                external_id=str(result.number),
                url=result.url,
                exported_at=utcnow(),
            )
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["topic_id", "target"],
                    set_={
                        "external_id": statement.excluded.external_id,
                        "url": statement.excluded.url,
                        "exported_at": statement.excluded.exported_at,
                    },
                )
            )
            detail = f"topic {topic_id} to {self.target} #{result.number}"
            audit.record(session, self.by, "report_exported", detail)


def _issue_title(report: Report) -> str:
    title = " ".join(report.title.split()) or f"{report.kind.capitalize()} topic {report.topic_id}"
    return title if len(title) <= 250 else title[:249].rstrip() + "…"


def _github_message(response: httpx.Response) -> str:
    """``: <GitHub's message>`` (with its validation errors), shortened; ``""`` when none."""
    try:
        document = response.json()
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    parts = [str(document.get("message") or "")]
    for error in document.get("errors") or []:
        if isinstance(error, dict):
            parts.append(str(error.get("message") or f"{error.get('field')} {error.get('code')}"))
        else:
            parts.append(str(error))
    text = "; ".join(part for part in parts if part).strip()
    return f": {text[:300]}" if text else ""
