"""Pulling Help Scout into the store: the mailbox list, and the backfill of conversations.

The backfill pages through ``GET /v2/conversations`` (every status, oldest change first, threads
embedded) and commits each page's conversations together with its :class:`ImportCursor` in
one transaction: however it stops (a crash, Ctrl-C, Help Scout failing), the store holds
whole pages and the cursor names the next one, so running it again continues right there.
Every write is an upsert by Help Scout's ids, so nothing is ever stored twice, and a
conversation deleted since (its tombstone) is stored again only if Help Scout changed it after
the deletion (see :mod:`deskside.insights.ingest.changes`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from deskside.insights.helpscout.client import ConversationPage, HelpScoutAPI
from deskside.insights.helpscout.connection import NotConnected, iso_utc
from deskside.insights.ingest.changes import save_conversations
from deskside.insights.ingest.normalise import ConversationRecord, conversation_record
from deskside.insights.models import ImportCursor, Mailbox, utcnow
from deskside.insights.store import Store, finish_before_cancel

__all__ = [
    "ImportProgress",
    "ImportResult",
    "cursor_key",
    "import_conversations",
    "parse_since",
    "selected_mailboxes",
    "sync_mailboxes",
]


@dataclass(frozen=True)
class ImportProgress:
    """Where an import stands after a committed page."""

    imported: int
    """Conversations stored by this pass so far, including before a resume."""
    total: int | None
    """Help Scout's count of matching conversations (``page.totalElements``)."""
    page: int
    pages: int | None
    resumed_at: int
    """``imported`` when this run started (0 for a new pass)."""


@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_conversations` did."""

    key: str
    imported: int
    """Conversations stored by this run."""
    pass_imported: int
    """Conversations stored by the whole pass (this run and the interrupted ones before)."""
    total: int | None
    resumed: bool
    already_done: bool
    """The pass had finished before; nothing was fetched (``again=True`` starts a new one)."""
    skipped: int = 0
    """Conversations Help Scout sent without a usable id (not stored)."""
    deleted: int = 0
    """Conversations deleted (webhook) that Help Scout still listed unchanged since: not
    stored again."""


Progress = Callable[[ImportProgress], None]


def cursor_key(since: datetime, mailbox_ids: Sequence[int]) -> str:
    """The cursor of a pass: its mailboxes (``all``, or the sorted ids) and its
    ``modifiedSince``; a long selection is shortened to its SHA-256."""
    mailboxes = ",".join(str(mailbox) for mailbox in sorted(set(mailbox_ids))) or "all"
    if len(mailboxes) > 120:
        mailboxes = "sha256:" + hashlib.sha256(mailboxes.encode()).hexdigest()
    return f"helpscout:{mailboxes}:{iso_utc(since)}"


async def selected_mailboxes(store: Store) -> list[int]:
    """The ids of the selected mailboxes (empty: none selected, which means all)."""
    async with store.read() as session:
        rows = await session.scalars(
            select(Mailbox.id).where(Mailbox.selected.is_(True)).order_by(Mailbox.id)
        )
        return list(rows)


async def sync_mailboxes(store: Store, api: HelpScoutAPI) -> list[Mailbox]:
    """Store Help Scout's mailboxes (keeping which are selected; dropping ones that are gone)
    and return them by name."""
    documents = await api.mailboxes()
    found = {
        mailbox_id: document
        for document in documents
        if isinstance(mailbox_id := document.get("id"), int)
    }
    async with store.session() as session:
        stored = {mailbox.id: mailbox for mailbox in await session.scalars(select(Mailbox))}
        for mailbox_id, document in found.items():
            name = str(document.get("name") or f"Mailbox {mailbox_id}")[:200]
            email = document.get("email") if isinstance(document.get("email"), str) else None
            mailbox = stored.get(mailbox_id)
            if mailbox is None:
                session.add(Mailbox(id=mailbox_id, name=name, email=email, selected=False))
            else:
                mailbox.name, mailbox.email = name, email
        gone = [mailbox_id for mailbox_id in stored if mailbox_id not in found]
        if gone:
            await session.execute(delete(Mailbox).where(Mailbox.id.in_(gone)))
    async with store.read() as session:
        return list(await session.scalars(select(Mailbox).order_by(Mailbox.name, Mailbox.id)))


async def import_conversations(
    store: Store,
    api: HelpScoutAPI,
    since: datetime,
    mailbox_ids: Sequence[int] | None = None,
    progress: Progress | None = None,
    *,
    again: bool = False,
) -> ImportResult:
    """Import every conversation modified since ``since`` in ``mailbox_ids`` (default: the
    selected mailboxes; none selected: all) with all of its threads.

    A pass is identified by :func:`cursor_key` (mailboxes and ``since``):

    - an unfinished pass with the same key resumes at the page after its last committed one;
    - a finished one is not fetched again: the result says ``already_done`` (the webhook keeps
      the store current from there). ``again=True`` starts it over from the first page,
      refreshing every conversation in place (an unfinished pass resumes all the same);
    - a different key (other mailboxes, another ``since``) is a pass of its own.

    ``progress`` is called after each committed page; an exception from it (or from Help
    Scout) stops the import with everything up to that page kept. Raises
    :class:`~deskside.insights.helpscout.client.NotConnected` without a connection.

    Help Scout pages by offset: a conversation that changes during the pass moves to its end
    (and is imported there), which can shift one unchanged conversation back onto a page
    already read. The webhook, or a later ``again`` pass, covers that.
    """
    if mailbox_ids is None:
        mailbox_ids = await selected_mailboxes(store)
    mailbox_ids = sorted(set(mailbox_ids))
    key = cursor_key(since, mailbox_ids)
    if not await api.is_connected():
        raise NotConnected("Help Scout is not connected: run `deskside connect helpscout`")
    async with store.session() as session:
        cursor = await session.get(ImportCursor, key)
        resumed = cursor is not None and not cursor.finished and cursor.next_url is not None
        if cursor is not None and cursor.finished and not again:
            return ImportResult(key, 0, cursor.imported, cursor.total, False, True)
        if cursor is None:
            cursor = ImportCursor(key=key)
            session.add(cursor)
        if not resumed:
            cursor.next_url = api.conversations_url(since, mailbox_ids)
            cursor.imported, cursor.total, cursor.finished = 0, None, False
            cursor.started_at = utcnow()
        url, pass_imported, total = cursor.next_url, cursor.imported, cursor.total
    resumed_at, skipped, deleted = pass_imported, 0, 0
    if url is None:
        return ImportResult(key, 0, pass_imported, total, resumed, False)
    ahead: asyncio.Task[_FetchedPage] | None = asyncio.create_task(_fetch_page(api, url))
    try:
        while ahead is not None:
            # Waited for, not awaited: a cancellation of the import stays the import's own
            # (awaiting would hand it to the fetch, which may finish its page regardless).
            await asyncio.wait([ahead])
            page, records, dropped = ahead.result()
            # the next page travels while this one is written
            ahead = asyncio.create_task(_fetch_page(api, page.next_url)) if page.next_url else None
            skipped += dropped
            pass_imported += len(records)
            total = page.total_elements
            stored = await finish_before_cancel(
                _commit_page(store, key, page, records, pass_imported)
            )
            deleted += len(records) - stored
            if progress is not None:
                progress(
                    ImportProgress(pass_imported, total, page.number, page.total_pages, resumed_at)
                )
    finally:
        if ahead is not None and not ahead.done():
            ahead.cancel()
            with contextlib.suppress(BaseException):
                await ahead
    return ImportResult(
        key, pass_imported - resumed_at, pass_imported, total, resumed, False, skipped, deleted
    )


async def _commit_page(
    store: Store, key: str, page: ConversationPage, records: list[ConversationRecord], imported: int
) -> int:
    """The page's conversations and the cursor past it, in one transaction; how many of the
    conversations were stored (not deleted in deskside)."""
    async with store.session() as session:
        stored = await save_conversations(session, records)
        cursor = await session.get(ImportCursor, key)
        if cursor is None:
            cursor = ImportCursor(key=key)
            session.add(cursor)
        cursor.next_url = page.next_url
        cursor.imported, cursor.total = imported, page.total_elements
        cursor.finished = page.next_url is None
    return stored


_RELATIVE = re.compile(r"^\s*(\d+)\s*([hdw])\s*$")


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``90d``/``12h``/``4w`` back from the start of the current UTC day (hour for ``h``),
    or an ISO date or time (UTC unless it says otherwise). :class:`ValueError` otherwise."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    relative = _RELATIVE.match(text)
    if relative:
        count, unit = int(relative.group(1)), relative.group(2)
        if unit == "h":
            return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=count)
        start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return start_of_day - timedelta(days=count * (7 if unit == "w" else 1))
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("use 90d, 12h, 4w, or a date like 2024-01-31") from None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment > now:
        raise ValueError("that is in the future")
    return moment


_THREAD_FETCHES = 4
"""Conversations of a page whose threads are fetched at the same time."""
_FetchedPage = tuple[ConversationPage, list[ConversationRecord], int]


async def _fetch_page(api: HelpScoutAPI, url: str) -> _FetchedPage:
    """A page, its conversations with all their threads as records, and how many of them
    had no usable id. Normalising (HTML to text) runs in a thread, off the event loop."""
    page = await api.conversation_page(url)
    fetching = asyncio.Semaphore(_THREAD_FETCHES)

    async def complete(document: dict[str, Any]) -> dict[str, Any]:
        async with fetching:
            return await _with_all_threads(api, document)

    documents = await asyncio.gather(*(complete(document) for document in page.conversations))
    records = await asyncio.to_thread(_records, documents)
    return page, records, len(documents) - len(records)


async def _with_all_threads(api: HelpScoutAPI, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with every thread embedded: fetched when the embedded ones are missing,
    fewer than its ``threads`` count, or a chat's (Help Scout embeds chats truncated)."""
    conversation_id = document.get("id")
    if not isinstance(conversation_id, int):
        return document
    embedded = document.get("_embedded")
    embedded = embedded if isinstance(embedded, dict) else {}
    threads = embedded.get("threads")
    count = document.get("threads")
    complete = isinstance(threads, list) and (not isinstance(count, int) or len(threads) >= count)
    if complete and document.get("type") != "chat":
        return document
    return {**document, "_embedded": {**embedded, "threads": await api.threads(conversation_id)}}


def _records(documents: Sequence[dict[str, Any]]) -> list[ConversationRecord]:
    records = []
    for document in documents:
        try:
            records.append(conversation_record(document))
        except ValueError:
            continue
    return records
