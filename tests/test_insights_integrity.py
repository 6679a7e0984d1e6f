"""Insights data that stays deleted and never loses or leaks a conversation, on SQLite and
PostgreSQL: late retries and merges cannot bring back what Help Scout deleted, an older copy of
a customer never overwrites a newer one, text PostgreSQL cannot store is cleaned rather than
retried, nothing a customer wrote reaches a log line or a stored error, a delivery that can
never be applied is parked at once, the analysis finishes while deletions arrive, and the
SQLite store is private to its user.

Deliveries go through the real app, signed by the independent signer in ``helpers``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import stat
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from deskside.cli import app as cli_app
from deskside.errors import SourceError
from deskside.insights.analysis.engine import Analysis
from deskside.insights.analysis.topics import Item, TopicModel
from deskside.insights.helpscout.inbox import Inbox
from deskside.insights.ingest.changes import delete_conversations, save_conversations
from deskside.insights.ingest.normalise import conversation_record
from deskside.insights.ingest.worker import Worker
from deskside.insights.models import (
    Classification,
    Conversation,
    ConversationTombstone,
    Customer,
    Event,
    Thread,
    TopicMember,
    utcnow,
)
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, database_url
from deskside.lookup import Lookup
from deskside.server import create_app
from deskside.sources.sql import SqlSource, SqlSourceConfig
from helpers import serve
from services import PrivatePostgres
from test_insights_webhooks import (
    body_of,
    conversation,
    count,
    deliver,
    insights_settings,
    opened,
    refuse_subjects,
    settled,
)

pytestmark = pytest.mark.anyio

VICTIM = "victim61008@privacy.example"


def at(minute: int) -> str:
    """10:``minute`` on the day the conversations below happen (Help Scout's format)."""
    return f"2026-11-20T10:{minute:02d}:00Z"


def soon() -> str:
    """A minute from now: a change Help Scout makes after anything deskside has seen."""
    return (utcnow() + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_everything(caplog: pytest.LogCaptureFixture) -> None:
    """deskside's lines at every level, and SQLAlchemy's statements (the server's logging
    set-up keeps aiosqlite's debug lines, which quote parameters, out at any level)."""
    caplog.set_level(logging.DEBUG, logger="deskside")
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")


async def subjects(store: Store) -> dict[int, str]:
    async with store.read() as session:
        return dict((await session.execute(select(Conversation.id, Conversation.subject))).all())


# -- what Help Scout deleted stays deleted --------------------------------------------------


async def test_a_late_retry_never_brings_a_deleted_conversation_back(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    settings = insights_settings(tmp_path, database, insights_url)
    async with serve(settings) as client, opened(insights_url) as store:
        await deliver(client, "convo.created", conversation(6001, updated=at(0), threads=1))
        await deliver(client, "convo.deleted", {"id": 6001})
        await settled(store)
        # Help Scout retries a reply it sent at 10:05, before the deletion
        retry = conversation(6001, updated=at(5), threads=3)
        assert (await deliver(client, "convo.customer.reply.created", retry)).status_code == 200
        await settled(store)
        assert await count(store, Conversation) == 0
        assert await count(store, Thread) == 0
        assert await count(store, Event, Event.status == "done") == 3

        # Help Scout restores it (a change after the deletion): it is back
        restored = conversation(6001, subject="Restored", updated=soon(), threads=3)
        await deliver(client, "convo.status", restored)
        await settled(store)
        assert await subjects(store) == {6001: "Restored"}
        assert await count(store, Thread) == 3
    listed = await asyncio.to_thread(  # the command runs its own event loop
        CliRunner().invoke, cli_app, ["conversations", "--database", insights_url, "--json"]
    )
    assert [row["id"] for row in json.loads(listed.output)] == [6001]


async def test_a_copy_whose_state_is_deleted_deletes_the_conversation(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    async with (
        serve(insights_settings(tmp_path, database, insights_url)) as client,
        opened(insights_url) as store,
    ):
        await deliver(client, "convo.created", conversation(6051, updated=at(0)))
        await settled(store)
        await deliver(
            client, "convo.status", conversation(6051, updated=at(9)) | {"state": "deleted"}
        )
        await deliver(client, "convo.assigned", conversation(6051, updated=at(5)))
        await settled(store)
        assert await count(store, Conversation) == 0
        assert await count(store, ConversationTombstone, ConversationTombstone.id == 6051) == 1


async def test_a_deleted_customer_and_their_conversations_stay_deleted(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    async with (
        serve(insights_settings(tmp_path, database, insights_url)) as client,
        opened(insights_url) as store,
    ):
        await deliver(client, "convo.created", conversation(6101, customer_id=701, updated=at(0)))
        await deliver(client, "convo.created", conversation(6102, customer_id=702, updated=at(0)))
        await deliver(client, "customer.deleted", {"id": 701})
        await settled(store)
        late_customer = {"id": 701, "firstName": "Late", "updatedAt": at(30)}
        await deliver(client, "customer.updated", late_customer)
        await deliver(client, "convo.tags", conversation(6101, customer_id=701, updated=at(40)))
        # a conversation of theirs deskside never saw, sent before the deletion
        await deliver(client, "convo.created", conversation(6103, customer_id=701, updated=at(1)))
        await settled(store)
        assert sorted(await subjects(store)) == [6102]
        assert await count(store, Customer, Customer.id == 701) == 0


async def test_a_merge_removes_the_conversation_merged_away_for_good(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    """Help Scout's webhook documents the body of ``convo.merged`` only as a conversation: it
    is read as the survivor, and the merged-away one is found from the threads that moved
    into it, or from a ``merged`` line item naming it (the legacy thread object's
    ``actionSourceId``)."""
    moved_away = conversation(6201, subject="Merged away", updated=at(0), threads=2)
    survivor = conversation(6202, subject="Survivor", updated=at(20), threads=1)
    named_away = conversation(6203, subject="Named by a line item", updated=at(0), threads=1)
    merged = conversation(6202, subject="Survivor", updated=at(30), threads=1)
    merged["_embedded"]["threads"] += moved_away["_embedded"]["threads"]
    merged["_embedded"]["threads"].append(
        {"id": 62029, "type": "lineitem", "actionType": "merged", "actionSourceId": 6203}
    )
    async with (
        serve(insights_settings(tmp_path, database, insights_url)) as client,
        opened(insights_url) as store,
    ):
        for document in (moved_away, survivor, named_away):
            await deliver(client, "convo.created", document)
        await settled(store)
        await deliver(client, "convo.merged", merged)
        await settled(store)
        await deliver(client, "convo.customer.reply.created", moved_away)  # a late retry
        await deliver(client, "convo.agent.reply.created", named_away)
        await settled(store)
        assert await subjects(store) == {6202: "Survivor"}
        async with store.read() as session:
            owners = set((await session.scalars(select(Thread.conversation_id))).all())
        assert owners == {6202}
        assert await count(store, Thread) == 4  # its own, the two moved, the line item


async def test_an_older_copy_of_a_customer_never_overwrites_a_newer_one(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    """A customer event carries ``updatedAt``; the copy a conversation embeds counts as of the
    conversation's ``userUpdatedAt``."""
    newer = {
        "id": 801,
        "firstName": "Olivia-NEW",
        "lastName": "Stone",
        "updatedAt": at(20),
        "_embedded": {"emails": [{"value": "olivia@example.com"}]},
    }
    late = conversation(6301, customer_id=801, updated=at(0))
    late["primaryCustomer"] |= {"first": "Olivia-OLD"}
    later = conversation(6302, customer_id=801, updated=at(40))
    later["primaryCustomer"] |= {"first": "Olivia-LATER"}

    async def first_name(store: Store) -> str | None:
        async with store.read() as session:
            return await session.scalar(select(Customer.first_name).where(Customer.id == 801))

    async with (
        serve(insights_settings(tmp_path, database, insights_url)) as client,
        opened(insights_url) as store,
    ):
        await deliver(client, "customer.updated", newer)
        await settled(store)
        await deliver(client, "convo.created", late)
        await settled(store)
        assert await first_name(store) == "Olivia-NEW"
        await deliver(
            client, "customer.updated", newer | {"firstName": "Olivia-OLDER", "updatedAt": at(10)}
        )
        await settled(store)
        assert await first_name(store) == "Olivia-NEW"
        await deliver(client, "convo.created", later)
        await settled(store)
        assert await first_name(store) == "Olivia-LATER"


STREAM = 90


async def test_a_killed_worker_and_a_database_restart_leave_exactly_the_final_state(
    tmp_path: Path, database: str, private_postgres: PrivatePostgres
) -> None:
    """Creations, replies, duplicates, deletions and late replies to what was deleted, each
    retried until acknowledged as Help Scout does, while the worker process is killed (-9)
    and PostgreSQL restarts: exactly the conversations that were not deleted remain."""
    url = private_postgres.url
    app = create_app(insights_settings(tmp_path, database, url, "worker = false"))
    ids = [70_500 + n for n in range(STREAM)]
    deleted = set(ids[::3])
    refused: list[str] = []

    def deliveries(cid: int) -> list[tuple[str, Any]]:
        created = ("convo.created", conversation(cid, updated=at(0), threads=1))
        reply = ("convo.customer.reply.created", conversation(cid, updated=at(5), threads=3))
        if cid in deleted:  # the reply first reaches deskside after the deletion
            return [created, created, ("convo.deleted", {"id": cid}), reply]
        return [created, reply, reply]

    async def deliver_in_order(client: httpx.AsyncClient, cid: int) -> None:
        for event, document in deliveries(cid):
            for _ in range(600):
                try:
                    response = await deliver(client, event, document)
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 200:
                    break
                assert response is None or response.status_code != 410
                refused.append(event)
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{event} for {cid} was never accepted")

    async def restart_database() -> None:
        await asyncio.to_thread(private_postgres.stop)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(private_postgres.start)

    command = [sys.executable, "-m", "deskside", "worker", "--database", url]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="https://deskside.test", timeout=30
        ) as client,
        opened(url) as store,
    ):
        senders: list[asyncio.Task[None]] = []

        async def send(part: list[int]) -> None:
            for cid in part:
                senders.append(asyncio.create_task(deliver_in_order(client, cid)))
                await asyncio.sleep(0.01)

        first = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.DEVNULL)
        await send(ids[: STREAM // 3])
        deadline = time.monotonic() + 60
        while not await count(store, Event, Event.status == "done"):
            assert first.returncode is None and time.monotonic() < deadline
            await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        restart = asyncio.create_task(restart_database())
        await send(ids[STREAM // 3 :])
        await restart
        second = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.DEVNULL)
        try:
            await asyncio.gather(*senders)
            assert refused, "the restart must have refused some deliveries"
            await settled(store, seconds=120)
        finally:
            second.terminate()
            await second.wait()
        survivors = sorted(set(ids) - deleted)
        async with store.read() as session:
            assert (
                list(await session.scalars(select(Conversation.id).order_by(Conversation.id)))
                == survivors
            )
            owners = list(await session.scalars(select(Thread.conversation_id)))
            tombstones = set(await session.scalars(select(ConversationTombstone.id)))
        assert sorted(owners) == sorted(survivors * 3)
        assert tombstones == deleted
        distinct = sum(len({(e, json.dumps(d)) for e, d in deliveries(cid)}) for cid in ids)
        assert await count(store, Event) == distinct
        assert await count(store, Event, Event.status == "done") == distinct


# -- nothing lost, nothing leaked ----------------------------------------------------------


async def test_a_nul_character_is_dropped_not_retried(
    tmp_path: Path, database: str, insights_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    document = conversation(61008, subject="A\u0000NUL in subject")
    document["primaryCustomer"] = {"id": 61008, "email": VICTIM, "first": "Vi\u0000ctim"}
    document["_embedded"]["threads"][0]["body"] = "<p>Hello\u0000 there</p>"
    document["tags"] = [{"tag": "nul\u0000tag"}, "lone \ud800 surrogate"]
    log_everything(caplog)
    async with (
        serve(insights_settings(tmp_path, database, insights_url)) as client,
        opened(insights_url) as store,
    ):
        assert (await deliver(client, "convo.created", document)).status_code == 200
        await settled(store)
        async with store.read() as session:
            stored = await session.get(Conversation, 61008)
            customer = await session.get(Customer, 61008)
            texts = (await session.scalars(select(Thread.text).order_by(Thread.id))).all()
            event = (await session.scalars(select(Event))).one()
    assert stored is not None and customer is not None
    assert (stored.subject, stored.tags) == ("ANUL in subject", ["nultag", "lone ? surrogate"])
    assert (customer.first_name, texts[0]) == ("Victim", "Hello there")
    assert (event.status, event.attempts, event.last_error) == ("done", 1, None)
    assert VICTIM not in caplog.text


async def test_a_refused_write_keeps_the_customer_out_of_logs_and_errors(
    tmp_path: Path, database: str, insights_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The database refuses the row (a trigger here; a full disk or a constraint in life):
    the worker retries, and neither its log lines nor the error kept with the event (shown by
    ``deskside events``) quote the SQL parameters."""
    async with opened(insights_url) as store:
        await refuse_subjects(store, "Refuse")
    document = conversation(61009, subject="Refuse this secret subject")
    document["primaryCustomer"] = {"id": 61009, "email": VICTIM, "first": "Victoria"}
    log_everything(caplog)
    settings = insights_settings(tmp_path, database, insights_url, "worker_attempts = 1")
    async with serve(settings) as client, opened(insights_url) as store:
        assert (await deliver(client, "convo.created", document)).status_code == 200
        await settled(store)
        async with store.read() as session:
            event = (await session.scalars(select(Event))).one()
    assert event.status == "parked"
    assert event.last_error is not None and "in INSERT INTO conversations" in event.last_error
    shown = await asyncio.to_thread(
        CliRunner().invoke, cli_app, ["events", "--database", insights_url, "--json"]
    )
    assert shown.exit_code == 0, shown.output
    for text in (caplog.text, event.last_error, shown.output):
        for secret in (VICTIM, "secret subject", "Victoria"):
            assert secret not in text
    assert "parked" in caplog.text


async def test_the_sidebar_sql_source_never_logs_the_addresses_it_binds(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL quotes the value it could not cast; a statement log or the driver's error
    message would quote the bound parameters."""
    log_everything(caplog)
    query = "select cast(cast(:email as text) as integer) as n"
    source = SqlSource(
        "app", SqlSourceConfig.model_validate({"kind": "sql", "url": postgres_url, "query": query})
    )
    try:
        with pytest.raises(SourceError) as refused:
            await source.fetch(Lookup((VICTIM,)))
    finally:
        await source.aclose()
    assert "invalid input syntax for type integer" in str(refused.value)
    assert VICTIM not in caplog.text and VICTIM not in str(refused.value)


# -- deliveries that can never be applied ---------------------------------------------------


def _nested(depth: int) -> dict[str, Any]:
    document: dict[str, Any] = {"id": 5}
    for _ in range(depth):
        document = {"id": 5, "inner": document}
    return document


NEVER = {
    "an id of 2**63": ("convo.created", conversation(2**63)),
    "a negative id": ("convo.created", conversation(-5)),
    "id 0": ("convo.status", conversation(0)),
    "an id of 20 digits": ("convo.created", conversation(1) | {"id": "12345678901234567890"}),
    "a deletion of 2**64": ("convo.deleted", {"id": 2**64}),
    "a customer without an id": ("customer.updated", {"firstName": "Nobody"}),
    "50,000 levels deep": ("convo.created", b"[" * 50_000 + b"]" * 50_000),
    "40 levels deep": ("convo.created", _nested(40)),
    "a number of 5,000 digits": ("convo.created", b'{"id": ' + b"9" * 5000 + b"}"),
    "not an object": ("convo.created", [1, 2]),
}


@pytest.mark.parametrize("case", list(NEVER))
async def test_a_delivery_that_can_never_be_applied_is_parked_at_once(
    tmp_path: Path, database: str, insights_url: str, case: str
) -> None:
    event, document = NEVER[case]
    async with (
        serve(insights_settings(tmp_path, database, insights_url)) as client,
        opened(insights_url) as store,
    ):
        response = await deliver(client, event, document)
        assert (response.status_code, response.json()) == (200, {"status": "parked"})
        await Worker(store).run_once()
        async with store.read() as session:
            stored = (await session.scalars(select(Event))).one()
        assert (stored.status, stored.attempts) == ("parked", 0)
        assert stored.last_error and "UnprocessableEvent" not in stored.last_error
        assert await count(store, Conversation) == 0


async def test_the_worker_parks_at_once_what_was_stored_before_the_check(
    insights_url: str,
) -> None:
    async with opened(insights_url) as store:
        inbox = Inbox(store)
        await inbox.accept("convo.created", body_of(conversation(2**63)))
        await inbox.accept("convo.created", body_of(_nested(40)))
        await inbox.aclose()
        await Worker(store).run_once()
        async with store.read() as session:
            events = (await session.scalars(select(Event))).all()
    assert [(e.status, e.attempts) for e in events] == [("parked", 1), ("parked", 1)]
    assert all((e.last_error or "").startswith("UnprocessableEvent: the ") for e in events)


async def test_odd_values_are_stored_as_far_as_they_fit(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    document = conversation(6401, threads=2) | {
        "number": 2**70,
        "mailboxId": -1,
        "status": "s" * 50,
        "userUpdatedAt": "0001-01-01T00:00:00+01:00",
    }
    document["_embedded"]["threads"][1]["id"] = 2**64
    document["primaryCustomer"] = {"id": "123", "first": "N" * 300, "email": "A@B.example"}
    async with (
        serve(insights_settings(tmp_path, database, insights_url)) as client,
        opened(insights_url) as store,
    ):
        await deliver(client, "convo.created", document)
        await settled(store)
        async with store.read() as session:
            stored = await session.get(Conversation, 6401)
            customer = await session.get(Customer, 123)
        assert stored is not None and customer is not None
        assert (stored.number, stored.mailbox_id, stored.status) == (None, None, "s" * 20)
        assert (customer.first_name, customer.email) == ("N" * 200, "a@b.example")
        assert await count(store, Thread) == 1
        assert await count(store, Event, Event.status == "done") == 1


# -- the analysis and deletions ---------------------------------------------------------------


async def test_the_analysis_finishes_while_deletions_arrive(insights_url: str) -> None:
    words = ["export", "invoice", "login", "refund", "crash", "dark mode", "api key", "upload"]
    documents = []
    for n in range(400):
        document = conversation(70_000 + n, customer_id=900 + n % 50, threads=1)
        document["_embedded"]["threads"][0]["body"] = (
            f"<p>The {words[n % 8]} does not work since {n % 13} days, please help</p>"
        )
        documents.append(document)
    async with opened(insights_url) as store:
        async with store.session() as session:
            await save_conversations(session, [conversation_record(d) for d in documents])
        analysis = Analysis(store, InsightsSettings())
        await analysis.train()
        deleted_during: list[int] = []
        passing = asyncio.create_task(analysis.update())

        async def delete_steadily() -> None:
            for document in documents[::3]:
                if passing.done():
                    return
                async with store.session() as session:
                    await delete_conversations(session, [document["id"]], deleted_at=utcnow())
                deleted_during.append(document["id"])
                await asyncio.sleep(0.002)

        await asyncio.gather(passing, delete_steadily())
        assert deleted_during, "deletions must land during the pass"
        await analysis.update()  # and the next pass too
        async with store.read() as session:
            labelled = set((await session.scalars(select(Classification.conversation_id))).all())
            grouped = set((await session.scalars(select(TopicMember.conversation_id))).all())
            left = set((await session.scalars(select(Conversation.id))).all())
    assert left == {d["id"] for d in documents} - set(deleted_during)
    assert labelled == grouped == left


# -- a private store --------------------------------------------------------------------------


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.usefixtures("umask_022")
async def test_the_sqlite_store_is_private_to_its_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "fresh" / "data"
    monkeypatch.setenv("DESKSIDE_DATA_DIR", str(data))
    store = await Store(database_url(None)).open()
    try:
        async with store.session() as session:
            await save_conversations(session, [conversation_record(conversation(6501))])
        files = [data / "insights.db", data / "insights.db-wal", data / "insights.db-shm"]
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}
    finally:
        await store.aclose()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert modes == {"insights.db": 0o600, "insights.db-wal": 0o600, "insights.db-shm": 0o600}

    older = tmp_path / "older.db"  # made by an earlier version, readable by everyone
    older.touch(mode=0o644)
    older.chmod(0o644)
    store = await Store(database_url(f"sqlite:///{older}")).open()
    await store.aclose()
    assert stat.S_IMODE(older.stat().st_mode) == 0o600


def test_times_and_ids_outside_the_calendar_or_64_bits_are_dropped() -> None:
    record = conversation_record(
        conversation(1) | {"createdAt": "9999-12-31T23:59:59-01:00", "userUpdatedAt": "not a time"}
    )
    assert (record.conversation["created_at"], record.conversation["modified_at"]) == (None, None)


def test_a_topic_model_forgets_deleted_conversations() -> None:
    moment = datetime(2026, 11, 20, tzinfo=UTC)
    items = [
        Item(n, f"customer{n}", moment + timedelta(hours=n), "the export to csv is empty", "bug")
        for n in range(1, 7)
    ]
    model = TopicModel()
    model.fit(items)
    [topic] = model.topics()
    model.forget([2, 4, 99])
    assert sorted(model.memberships()) == [1, 3, 5, 6]
    assert model.topics()[0].conversation_ids == (1, 3, 5, 6)
    assert model.topics()[0].customers == topic.customers - 2
