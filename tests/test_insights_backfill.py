"""The backfill against the fake Help Scout: 10,000 conversations on SQLite and PostgreSQL,
stopped at a random page and resumed, re-run, refreshed; threads Help Scout did not embed;
mailbox selection."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select

from deskside.insights.helpscout.client import HelpScoutAPI
from deskside.insights.helpscout.connection import HelpScoutAPIError, NotConnected
from deskside.insights.helpscout.inbox import Inbox
from deskside.insights.ingest.backfill import (
    ImportProgress,
    import_conversations,
    selected_mailboxes,
    sync_mailboxes,
)
from deskside.insights.ingest.worker import Worker
from deskside.insights.models import Conversation, Customer, ImportCursor, Mailbox, Thread, utcnow
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, database_url
from fake_helpscout import (
    Dataset,
    FakeHelpScout,
    RecordingSleeper,
    approve,
    generate_dataset,
    shared_dataset,
)
from fake_http import Received, Reply

pytestmark = pytest.mark.anyio
KEY = Fernet.generate_key().decode()
EVERYTHING = timedelta(days=400)


class Stop(Exception):
    """Raised from the progress callback: the import is killed after a committed page."""


@pytest.fixture
def small() -> Iterator[FakeHelpScout]:
    with FakeHelpScout(generate_dataset(260, customers=60, seed=3)) as fake:
        yield fake


@pytest.fixture
async def store(tmp_path: Any) -> AsyncIterator[Store]:
    store = await Store(database_url(f"sqlite:///{tmp_path / 'insights.db'}")).open()
    yield store
    await store.aclose()


async def connected(fake: FakeHelpScout, store: Store, **options: Any) -> HelpScoutAPI:
    settings = InsightsSettings.model_validate(
        {"encryption_key": KEY, "helpscout": fake.settings_document()}
    )
    api = HelpScoutAPI(settings, store, clock=fake.now, **options)
    code, state = approve(await api.authorization_url())
    await api.complete_authorization(code, state)
    return api


async def stored_ids(store: Store) -> tuple[list[int], list[int]]:
    async with store.session() as session:
        conversations = list(await session.scalars(select(Conversation.id)))
        threads = list(await session.scalars(select(Thread.id)))
    return conversations, threads


async def assert_store_matches(
    store: Store, dataset: Dataset, expected: list[dict[str, Any]]
) -> None:
    conversations, threads = await stored_ids(store)
    assert len(conversations) == len(expected)
    assert set(conversations) == {c["id"] for c in expected}
    wanted_threads = dataset.thread_ids(expected)
    assert len(threads) == len(wanted_threads) and set(threads) == wanted_threads
    async with store.session() as session:
        customers = await session.scalar(select(func.count()).select_from(Customer))
        authors = dict(
            (
                await session.execute(select(Thread.author, func.count()).group_by(Thread.author))
            ).all()
        )
    assert customers == len({c["primaryCustomer"]["id"] for c in expected})
    kinds = [t["type"] for c in expected for t in c["_embedded"]["threads"]]
    assert authors.get("customer") == kinds.count("customer")
    assert authors.get("system") == kinds.count("lineitem")


def requested_pages(fake: FakeHelpScout, since: int = 0) -> list[int]:
    requests = fake.api_requests("/v2/conversations")[since:]
    return [int(r.query.get("page", ["1"])[0]) for r in requests if r.path == "/v2/conversations"]


async def test_ten_thousand_conversations_stopped_at_a_random_page_then_resumed(
    insights_url: str,
) -> None:
    dataset = shared_dataset(10_000)
    store = await Store(database_url(insights_url)).open()
    try:
        with FakeHelpScout(dataset) as fake:
            api = await connected(fake, store)
            since = utcnow() - EVERYTHING
            pages = -(-len(dataset.conversations) // 50)
            stop_at = random.randrange(2, pages)
            seen: list[ImportProgress] = []

            def stop(progress: ImportProgress) -> None:
                seen.append(progress)
                if progress.page == stop_at:
                    raise Stop

            with pytest.raises(Stop):
                await import_conversations(store, api, since, progress=stop)
            note = f"stopped after page {stop_at}"
            conversations, _ = await stored_ids(store)
            assert len(conversations) == stop_at * 50, note  # whole pages only
            async with store.session() as session:
                (cursor,) = await session.scalars(select(ImportCursor))
            assert cursor.imported == stop_at * 50 and not cursor.finished, note
            assert cursor.total == 10_000 and cursor.next_url.endswith(f"page={stop_at + 1}")
            assert [p.page for p in seen] == list(range(1, stop_at + 1))

            already = len(fake.api_requests("/v2/conversations"))
            seen.clear()
            result = await import_conversations(store, api, since, progress=seen.append)
            assert result.resumed and result.imported == 10_000 - stop_at * 50, note
            assert result.pass_imported == 10_000 and result.skipped == 0
            assert requested_pages(fake, already) == list(range(stop_at + 1, pages + 1)), note
            assert seen[0].resumed_at == stop_at * 50 and seen[-1].imported == 10_000
            await assert_store_matches(store, dataset, dataset.conversations)

            already = len(fake.api_requests())
            again = await import_conversations(store, api, since)
            assert again.already_done and again.imported == 0
            assert len(fake.api_requests()) == already  # nothing fetched, nothing stored twice
            await assert_store_matches(store, dataset, dataset.conversations)
            await api.aclose()
    finally:
        await store.aclose()


async def test_help_scout_failing_at_a_page_stops_there_and_resumes(
    small: FakeHelpScout, store: Store
) -> None:
    sleeper = RecordingSleeper(small)
    api = await connected(small, store, sleep=sleeper)
    small.page_size = 20
    broken_page = random.randrange(2, 14)

    def down(request: Received) -> Reply | None:
        if request.path == "/v2/conversations" and request.query.get("page") == [str(broken_page)]:
            return Reply.json({"message": "Internal error"}, status=500)
        return None

    small.fault = down
    since = utcnow() - EVERYTHING
    with pytest.raises(HelpScoutAPIError, match="500"):
        await import_conversations(store, api, since)
    assert sleeper.sleeps == [1, 2, 4, 8]  # retried with backoff, then gave up
    conversations, _ = await stored_ids(store)
    assert len(conversations) == (broken_page - 1) * 20

    small.fault = None
    result = await import_conversations(store, api, since)
    assert result.resumed and result.pass_imported == len(small.dataset.conversations)
    await assert_store_matches(store, small.dataset, small.dataset.conversations)
    await api.aclose()


async def test_again_refreshes_every_conversation_in_place(
    small: FakeHelpScout, store: Store
) -> None:
    api = await connected(small, store)
    since = utcnow() - EVERYTHING
    first = await import_conversations(store, api, since)
    assert not first.resumed and first.imported == len(small.dataset.conversations)
    changed = small.dataset.conversations[5]
    changed["subject"] = "Renamed in Help Scout"
    changed["userUpdatedAt"] = (utcnow() + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    done = await import_conversations(store, api, since)
    assert done.already_done and done.imported == 0

    again = await import_conversations(store, api, since, again=True)
    assert not again.already_done and again.imported == len(small.dataset.conversations)
    await assert_store_matches(store, small.dataset, small.dataset.conversations)
    async with store.session() as session:
        stored = await session.get(Conversation, changed["id"])
    assert stored is not None and stored.subject == "Renamed in Help Scout"
    await api.aclose()


async def test_an_import_never_brings_back_what_was_deleted_unless_help_scout_changed_it(
    small: FakeHelpScout, insights_url: str
) -> None:
    store = await Store(database_url(insights_url)).open()
    try:
        api = await connected(small, store)
        since = utcnow() - EVERYTHING
        await import_conversations(store, api, since)
        gone, restored = small.dataset.conversations[3], small.dataset.conversations[8]
        inbox = Inbox(store)  # Help Scout's webhook said both were deleted
        for deleted in (gone, restored):
            await inbox.accept("convo.deleted", json.dumps({"id": deleted["id"]}).encode())
        await inbox.aclose()
        await Worker(store).run_once()

        again = await import_conversations(store, api, since, again=True)
        assert again.deleted == 2
        kept = [c for c in small.dataset.conversations if c not in (gone, restored)]
        await assert_store_matches(store, small.dataset, kept)

        restored["subject"] = "Restored in Help Scout"  # a change after the deletion
        restored["userUpdatedAt"] = (utcnow() + timedelta(seconds=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
        last = await import_conversations(store, api, since, again=True)
        assert last.deleted == 1
        await assert_store_matches(store, small.dataset, [*kept, restored])
        async with store.session() as session:
            stored = await session.get(Conversation, restored["id"])
        assert stored is not None and stored.subject == "Restored in Help Scout"
        await api.aclose()
    finally:
        await store.aclose()


async def test_since_and_the_selected_mailboxes_choose_what_is_imported(
    small: FakeHelpScout, store: Store
) -> None:
    api = await connected(small, store)
    mailboxes = await sync_mailboxes(store, api)
    assert [m.name for m in mailboxes] == ["Billing", "Sales", "Support"]
    assert await selected_mailboxes(store) == []
    billing = mailboxes[0].id
    async with store.session() as session:
        box = await session.get(Mailbox, billing)
        assert box is not None
        box.selected = True
    since = utcnow() - timedelta(days=120)
    result = await import_conversations(store, api, since)
    assert str(billing) in result.key
    expected = small.dataset.matching(since, [billing])
    assert 0 < len(expected) < len(small.dataset.conversations)
    await assert_store_matches(store, small.dataset, expected)
    assert small.api_requests("/v2/conversations")[0].query["mailbox"] == [str(billing)]

    small.dataset.mailboxes.pop()  # "Sales" was deleted in Help Scout
    kept = await sync_mailboxes(store, api)
    assert [(m.name, m.selected) for m in kept] == [("Billing", True), ("Support", False)]
    await api.aclose()


async def test_threads_help_scout_did_not_embed_are_fetched(
    small: FakeHelpScout, store: Store
) -> None:
    small.embed_limit = 2
    api = await connected(small, store)
    await import_conversations(store, api, utcnow() - EVERYTHING, [])
    await assert_store_matches(store, small.dataset, small.dataset.conversations)
    fetched = {int(r.path.split("/")[3]) for r in small.api_requests("/v2/conversations/")}
    needed = {
        c["id"] for c in small.dataset.conversations if c["threads"] > 2 or c["type"] == "chat"
    }
    assert fetched == needed
    await api.aclose()


async def test_importing_without_a_connection_is_refused(
    small: FakeHelpScout, store: Store
) -> None:
    api = await connected(small, store)
    await api.disconnect()
    with pytest.raises(NotConnected, match="deskside connect helpscout"):
        await import_conversations(store, api, utcnow() - EVERYTHING)
    async with store.session() as session:
        assert list(await session.scalars(select(ImportCursor))) == []
