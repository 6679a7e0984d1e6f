"""Erasure on request (GDPR art. 17): everything the store holds about a person removed for
good, written to the audit (never what was removed).

:func:`forget` removes the customers with an address, their conversations with every thread,
label, topic membership and agent's correction, their messages in other conversations, the
webhook deliveries that carried any of it, and their cached sidebar answers; any other text that
quotes the address keeps the rest with ``[erased]`` in its place. Reports built afterwards no
longer list them, and :func:`rewrite_erased_exports` rewrites the GitHub issues exported
before on the next export. Tombstones (:mod:`.erased`) keep them out of what
webhooks and imports bring later.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import CursorResult, Executable, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from deskside.insights.models import (
    Classification,
    Conversation,
    Customer,
    ErasedExport,
    ErasureAudit,
    Event,
    LabelledExample,
    ReportExport,
    Thread,
    Topic,
    TopicMember,
    utcnow,
)
from deskside.insights.privacy.erased import ERASED, Names, bury, erasing, named_in
from deskside.insights.store import Store, insert_for

if TYPE_CHECKING:
    from deskside.cache import Cache
    from deskside.insights.reports.github import ExportResult, GitHubIssues
    from deskside.insights.reports.report import Report

__all__ = [
    "Removed",
    "affected_rows",
    "forget",
    "record_removal",
    "remove_conversations",
    "rewrite_erased_exports",
    "rewrite_erased_exports_quietly",
]

log = logging.getLogger("deskside.insights.erasure")

_BATCH = 500


@dataclass
class Removed:
    """Rows removed (or rewritten) by one erasure or purge, by what they were: a table's
    name, ``redacted`` (texts that quoted the address), ``topics_renamed``,
    ``exports_to_rewrite`` or ``cached_answers``."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, what: str, rows: int) -> None:
        if rows:
            self.counts[what] = self.counts.get(what, 0) + rows

    @property
    def total(self) -> int:
        return sum(self.counts.values())


async def forget(
    store: Store, emails: Sequence[str], *, by: str, cache: Cache | None = None
) -> Removed:
    """Erase everything stored about ``emails`` as the module says, drop their answers from
    ``cache``, write their tombstones, and write the audit as ``by``. An address that nothing
    names still gets its tombstone: what arrives about it later is not stored."""
    addresses = sorted({email.strip().lower() for email in emails if email.strip()})
    if not addresses:
        raise ValueError("no address to forget")
    removed = Removed()
    if cache is not None:
        for address in addresses:
            removed.add("cached_answers", await cache.forget(address))
    async with store.session() as session:
        await erasing(session)
        people = select(Customer.id).where(func.lower(Customer.email).in_(addresses))
        theirs = select(Conversation.id).where(
            or_(
                Conversation.customer_id.in_(people),
                func.lower(Conversation.customer_email).in_(addresses),
            )
        )
        erased = Names(
            frozenset(addresses),
            frozenset(await session.scalars(people)),
            frozenset(await session.scalars(theirs)),
        )
        subjects = await session.scalars(
            select(Conversation.subject).where(Conversation.id.in_(theirs))
        )
        named = {_topic_name(subject) for subject in subjects}
        members = select(TopicMember.topic_id).where(TopicMember.conversation_id.in_(theirs))
        topic_ids = set(await session.scalars(members))
        await remove_conversations(session, theirs, removed)
        written = delete(Thread).where(func.lower(Thread.author_email).in_(addresses))
        removed.add("threads", await affected_rows(session, written))
        people_gone = delete(Customer).where(
            Customer.id.in_(erased.customers) | func.lower(Customer.email).in_(addresses)
        )
        removed.add("customers", await affected_rows(session, people_gone))
        for column in (Thread.text, Conversation.subject, LabelledExample.text, Topic.name):
            removed.add("redacted", await _redact(session, column, addresses))
        removed.add("topics_renamed", await _rename_topics(session, topic_ids, named))
        removed.add("exports_to_rewrite", await _stale_exports(session, topic_ids))
        await bury(session, erased)
    removed.add("events", await _remove_deliveries(store, erased))
    plural = "address" if len(addresses) == 1 else "addresses"
    await record_removal(store, by, "forget", f"{len(addresses)} {plural}", removed)
    return removed


async def affected_rows(session: AsyncSession, statement: Executable) -> int:
    """Run a bulk ``delete`` or ``update``; how many rows it touched."""
    result = await session.execute(statement, execution_options={"synchronize_session": False})
    return int(cast(CursorResult[Any], result).rowcount or 0)


async def remove_conversations(session: AsyncSession, ids: Any, removed: Removed) -> None:
    """Remove the conversations ``ids`` (a list or a subquery) with their threads, labels,
    topic memberships and agents' corrections, counting into ``removed``."""
    for model, column in (
        (Thread, Thread.conversation_id),
        (Classification, Classification.conversation_id),
        (TopicMember, TopicMember.conversation_id),
        (LabelledExample, LabelledExample.conversation_id),
    ):
        rows = await affected_rows(session, delete(model).where(column.in_(ids)))
        removed.add(model.__tablename__, rows)
    rows = await affected_rows(session, delete(Conversation).where(Conversation.id.in_(ids)))
    removed.add("conversations", rows)


async def _redact(
    session: AsyncSession, column: InstrumentedAttribute[str], addresses: Sequence[str]
) -> int:
    """Put :data:`ERASED` in place of ``addresses`` (any case) wherever ``column`` quotes them;
    how many rows changed."""
    model = column.class_
    (key,) = model.__mapper__.primary_key
    quoting = or_(*(func.lower(column).contains(a, autoescape=True) for a in addresses))
    pattern = re.compile("|".join(re.escape(a) for a in addresses), re.IGNORECASE)
    changed = 0
    for row_id, text in (await session.execute(select(key, column).where(quoting))).all():
        redacted = pattern.sub(ERASED, text)
        if redacted != text:
            values = {column.key: redacted}
            await affected_rows(session, update(model).where(key == row_id).values(values))
            changed += 1
    return changed


def _topic_name(subject: str) -> str:
    """A subject as it names a topic of its own (see the analysis): one line, 60 characters."""
    text = " ".join(subject.split())
    return text if len(text) <= 60 else text[:59].rstrip() + "…"


async def _rename_topics(session: AsyncSession, topic_ids: set[int], named: set[str]) -> int:
    """A topic named after an erased conversation's subject takes the subject of its first
    remaining conversation, and one left without conversations a neutral name (its words
    were theirs); a person's names stay."""
    renamed = 0
    for topic in await session.scalars(select(Topic).where(Topic.id.in_(topic_ids))):
        if topic.named_by_person:
            continue
        first = await session.scalar(
            select(Conversation.subject)
            .join(TopicMember, TopicMember.conversation_id == Conversation.id)
            .where(TopicMember.topic_id == topic.id)
            .order_by(Conversation.id)
            .limit(1)
        )
        if first is not None and topic.name not in named:
            continue
        topic.name = _topic_name(first or "") or _neutral_name(topic)
        renamed += 1
    return renamed


def _neutral_name(topic: Topic) -> str:
    """A name that quotes nobody: ``Bug topic 7``."""
    return f"{topic.label.capitalize()} topic {topic.id}"


async def _stale_exports(session: AsyncSession, topic_ids: set[int]) -> int:
    """Remember the exports of ``topic_ids`` for :func:`rewrite_erased_exports`."""
    exports = (
        await session.execute(
            select(ReportExport.topic_id, ReportExport.target).where(
                ReportExport.topic_id.in_(topic_ids)
            )
        )
    ).all()
    if not exports:
        return 0
    statement = insert_for(session)(ErasedExport).on_conflict_do_nothing(
        index_elements=["topic_id", "target"]
    )
    now = utcnow()
    rows = [{"topic_id": topic, "target": target, "erased_at": now} for topic, target in exports]
    await session.execute(statement, rows)
    return len(exports)


async def _remove_deliveries(store: Store, erased: Names) -> int:
    """Delete the handled webhook deliveries that name anyone ``erased`` names; a batch at a
    time, each its own transaction, so the webhook inbox is never held up for long. Pending
    ones are left to the worker, which stores what they say of others, and then empties
    them."""
    removed, after = 0, 0
    while True:
        async with store.read() as session:
            batch = (
                await session.execute(
                    select(Event.id, Event.event, Event.body)
                    .where(Event.id > after, Event.status != "pending")
                    .order_by(Event.id)
                    .limit(_BATCH)
                )
            ).all()
        if not batch:
            return removed
        after = batch[-1].id
        doomed = [row.id for row in batch if named_in(row.event, row.body).meets(erased)]
        if doomed:
            async with store.session() as session:
                removed += await affected_rows(session, delete(Event).where(Event.id.in_(doomed)))


async def record_removal(store: Store, by: str, action: str, detail: str, removed: Removed) -> None:
    """Write an audit row: now, ``by`` whom, what (``action``: ``forget``, ``retention`` or
    ``disconnect``; ``detail``, which never names anyone) and the rows by what they were."""
    async with store.session() as session:
        session.add(
            ErasureAudit(
                workspace=store.workspace,
                at=utcnow(),
                actor=by[:100],
                action=action,
                detail=detail[:200],
                rows=removed.total,
                counts=dict(removed.counts),
            )
        )


async def rewrite_erased_exports(
    store: Store, github: GitHubIssues, *, exported: Collection[int] = ()
) -> list[tuple[Report, ExportResult]]:
    """Rewrite the issues of ``github``'s repository that named an erased conversation (but
    those of the topics in ``exported``, just exported): with the topic's report as it is now,
    or, when none of its conversations is left, with a note that says so. Raises what
    :meth:`GitHubIssues.export` raises; the issues not reached are rewritten next time."""
    from deskside.insights.reports.report import build_reports

    async with store.read() as session:
        stale = await session.scalars(
            select(ErasedExport.topic_id).where(ErasedExport.target == github.target)
        )
        topic_ids = sorted(stale)
    rewritten = []
    for topic_id in topic_ids:
        if topic_id not in exported:
            found = await build_reports(store, topic_ids=[topic_id])
            report = found[0] if found else await _emptied_report(store, topic_id)
            if report is not None:
                rewritten.append((report, await github.export(store, report)))
        async with store.session() as session:
            await session.execute(
                delete(ErasedExport).where(
                    ErasedExport.topic_id == topic_id, ErasedExport.target == github.target
                )
            )
    return rewritten


async def rewrite_erased_exports_quietly(
    store: Store, github: GitHubIssues, *, exported: Collection[int] = ()
) -> int:
    """:func:`rewrite_erased_exports` after one topic's export: a failure is logged, and the
    issues not rewritten are rewritten on the next export. How many were."""
    from deskside.insights.reports.github import GitHubError

    try:
        return len(await rewrite_erased_exports(store, github, exported=exported))
    except GitHubError as exc:
        log.warning("issues that named an erased person are not rewritten yet: %s", exc)
        return 0


async def _emptied_report(store: Store, topic_id: int) -> Report | None:
    """What an issue says once every conversation of its topic is erased."""
    from deskside.insights.reports.report import Report

    async with store.read() as session:
        topic = await session.get(Topic, topic_id)
    if topic is None:
        return None
    now = utcnow()
    return Report(
        topic_id=topic_id,
        kind="feature" if topic.label == "feature" else "bug",
        title=topic.name if topic.named_by_person else _neutral_name(topic),
        summary=f"The conversations of this report were erased on request ({now:%Y-%m-%d}).",
        quote=None,
        first_seen=now,
        last_seen=now,
        customers=0,
        plans={},
        revenue_cents=None,
        customers_with_facts=0,
        facts_available=False,
        trending=False,
        trend_note=None,
        conversations=[],
    )
