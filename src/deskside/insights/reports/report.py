"""A report per bug or feature topic: what customers say, how many of them, since when, on which
plans and for how much revenue, with a link to every conversation (:class:`Report`,
:func:`build_reports`).

A report is read from the store (topics, their members, the customers' own words) and, when a
:class:`~deskside.insights.reports.facts.CustomerFacts` is given, from the sidebar's sources.
Customer text is never rewritten: the summary quotes one of their sentences as written. How
reports leave: :mod:`.formats` (Markdown, CSV, JSON) and :mod:`.github` (issues).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import numpy as np
from pydantic import BaseModel, computed_field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights.analysis.customer_text import conversation_text
from deskside.insights.models import (
    Conversation,
    Customer,
    Thread,
    Topic,
    TopicMember,
)
from deskside.insights.reports.facts import CustomerFacts, Facts
from deskside.insights.store import Store

__all__ = [
    "REPORT_KINDS",
    "Report",
    "ReportConversation",
    "ReportKind",
    "build_reports",
    "conversation_url",
    "counted",
]

ReportKind = Literal["bug", "feature"]
REPORT_KINDS: tuple[ReportKind, ...] = ("bug", "feature")


_MIN_QUOTE_WORDS = 4
_MAX_QUOTE_CHARS = 220
_MAX_SUMMARY_DOCUMENTS = 2000
"""The newest conversations of a topic that its summary is chosen from."""
_MAX_SENTENCES_PER_CONVERSATION = 20
_SENTENCE_BREAK = re.compile(r"(?<=[.!?…])\s+|\n+")
_PRIVATE_LOOKING = re.compile(r"\S@\S|https?://|www\.", re.IGNORECASE)
"""Sentences with an address or a link are never quoted: a report may travel further than the
helpdesk (a public issue tracker)."""


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
        f"{counted(len(email_of), 'customer')} across {counted(len(members), 'conversation')} "
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


def counted(number: int, noun: str) -> str:
    """``1 customer``, ``3 customers``."""
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
