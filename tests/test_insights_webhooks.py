"""Help Scout webhooks in: verified on the raw bytes, stored before the 2xx, applied exactly once.

Every test runs the real app (or the real ``deskside worker`` process) on a real SQLite file and
a real PostgreSQL database; signatures come from the independent signer in ``helpers``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text, update
from typer.testing import CliRunner

from deskside.cli import app as cli_app
from deskside.config import Settings, load_settings
from deskside.insights.analysis.queries import list_conversations
from deskside.insights.crypto import Cipher
from deskside.insights.helpscout.inbox import Inbox
from deskside.insights.ingest.worker import Worker
from deskside.insights.models import Connection, Conversation, Customer, Event, Thread, utcnow
from deskside.insights.store import Store, database_url
from helpers import helpscout_signature, serve

pytestmark = pytest.mark.anyio

SECRET = "webhook-test-secret"
PATH = "/webhooks/helpscout"


def conversation(
    conversation_id: int,
    *,
    subject: str = "Export to CSV fails",
    customer_id: int = 501,
    updated: str = "2026-11-20T09:30:00Z",
    threads: int = 2,
) -> dict[str, Any]:
    """A Mailbox API 2.0 conversation as a V2 webhook body carries it."""
    email = f"customer{customer_id}@example.com"
    return {
        "id": conversation_id,
        "number": conversation_id + 100,
        "subject": subject,
        "status": "active",
        "state": "published",
        "type": "email",
        "mailboxId": 7,
        "createdAt": "2026-11-20T09:00:00Z",
        "userUpdatedAt": updated,
        "primaryCustomer": {"id": customer_id, "email": email, "first": "Cora"},
        "tags": [{"id": 1, "tag": "export"}],
        "_embedded": {
            "threads": [
                {
                    "id": conversation_id * 10 + n,
                    "type": "customer" if n % 2 == 0 else "message",
                    "body": f"<p>Message {n} &amp; more<br>second line</p>",
                    "createdBy": (
                        {"id": customer_id, "type": "customer", "email": email}
                        if n % 2 == 0
                        else {"id": 3, "type": "user", "email": "agent@yourapp.example"}
                    ),
                    "createdAt": "2026-11-20T09:00:00Z",
                }
                for n in range(threads)
            ]
        },
    }


def body_of(document: Any) -> bytes:
    return document if isinstance(document, bytes) else json.dumps(document).encode()


async def deliver(
    client: httpx.AsyncClient, event: str, document: Any, *, secret: str = SECRET
) -> httpx.Response:
    """Send a webhook exactly as Help Scout does: raw JSON, signature and event in headers."""
    body = body_of(document)
    headers = {
        "Content-Type": "application/json",
        "X-HelpScout-Event": event,
        "X-HelpScout-Signature": helpscout_signature(secret, body),
    }
    return await client.post(PATH, content=body, headers=headers)


def insights_settings(
    tmp_path: Path, database: str, store_url: str, extra: str = "", *, admin_token: str = ""
) -> Settings:
    path = tmp_path / "deskside.toml"
    query = "select name from users where lower(email) in :emails"
    path.write_text(
        f"""
[sources.app]
kind = "sql"
url = "{database}"
query = "{query}"

[insights]
database = "{store_url}"
{extra}

[insights.helpscout]
webhook_secret = "{SECRET}"
"""
        + (f'[admin]\ntoken = "{admin_token}"\n' if admin_token else ""),
        encoding="utf-8",
    )
    return load_settings(path)


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = await Store(database_url(url)).open()
    try:
        yield store
    finally:
        await store.aclose()


async def count(store: Store, model: Any, *where: Any) -> int:
    async with store.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def refuse_subjects(store: Store, prefix: str) -> None:
    """Make the database refuse (a trigger) to store a conversation whose subject starts with
    ``prefix``: a write that fails in the database, as a full disk or a constraint would."""
    async with store.engine.begin() as connection:
        if store.dialect == "postgresql":
            await connection.execute(
                text(
                    "create function refuse() returns trigger language plpgsql as $$ begin "
                    f"if new.subject like '{prefix}%' then raise exception 'refused'; end if; "
                    "return new; end $$"
                )
            )
            await connection.execute(
                text(
                    "create trigger refuse before insert or update on conversations "
                    "for each row execute function refuse()"
                )
            )
        else:
            await connection.execute(
                text(
                    "create trigger refuse before insert on conversations "
                    f"when new.subject like '{prefix}%' begin select raise(abort, 'refused'); end"
                )
            )


async def settled(store: Store, seconds: float = 20) -> None:
    """Wait until no event is pending (the server's worker runs in the background)."""
    deadline = time.monotonic() + seconds
    while await count(store, Event, Event.status == "pending"):
        assert time.monotonic() < deadline, "events still pending"
        await asyncio.sleep(0.05)


async def test_a_delivery_is_stored_acknowledged_and_becomes_a_conversation(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    async with serve(insights_settings(tmp_path, database, insights_url)) as client:
        ready = (await client.get("/readyz")).json()
        assert (ready["status"], ready["insights"]["state"]) == ("ready", "ok")
        response = await deliver(client, "convo.created", conversation(2001))
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "stored"}
        async with opened(insights_url) as store:
            assert await count(store, Event) == 1  # on disk when the 200 was sent
            await settled(store)
            async with store.session() as session:
                [summary] = await list_conversations(session)
                texts = (await session.scalars(select(Thread.text).order_by(Thread.id))).all()
    assert (summary.id, summary.number, summary.subject) == (2001, 2101, "Export to CSV fails")
    assert (summary.customer, summary.messages, summary.status) == (
        "customer501@example.com",
        2,
        "active",
    )
    assert texts == ["Message 0 & more\nsecond line", "Message 1 & more\nsecond line"]


async def test_the_same_delivery_three_times_is_one_event_and_one_conversation(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    document = conversation(2002, threads=3)
    async with serve(insights_settings(tmp_path, database, insights_url)) as client:
        first = await deliver(client, "convo.customer.reply.created", document)
        # two retries at once, as Help Scout's retry and a slow first answer can overlap
        others = await asyncio.gather(
            *(deliver(client, "convo.customer.reply.created", document) for _ in range(2))
        )
        assert [r.status_code for r in [first, *others]] == [200, 200, 200]
        async with opened(insights_url) as store:
            await settled(store)
            assert await count(store, Event) == 1
            assert await count(store, Conversation) == 1
            assert await count(store, Thread) == 3
            assert await count(store, Event, Event.status == "done", Event.attempts == 1) == 1


async def test_a_burst_of_distinct_deliveries_is_stored_completely(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    async with serve(insights_settings(tmp_path, database, insights_url)) as client:
        responses = await asyncio.gather(
            *(deliver(client, "convo.created", conversation(3000 + n)) for n in range(300))
        )
        assert {r.status_code for r in responses} == {200}
        async with opened(insights_url) as store:
            assert await count(store, Event) == 300
            await settled(store)
            assert await count(store, Conversation) == 300
            assert await count(store, Thread) == 600


async def test_refused_deliveries_are_not_stored_and_never_answered_410(
    tmp_path: Path, database: str
) -> None:
    url = f"sqlite:///{tmp_path / 'insights.db'}"
    body = body_of(conversation(2003))
    signature = helpscout_signature(SECRET, body)
    async with serve(insights_settings(tmp_path, database, url)) as client:
        cases = {
            "wrong secret": await deliver(client, "convo.created", body, secret="other"),
            "no signature": await client.post(
                PATH, content=body, headers={"X-HelpScout-Event": "convo.created"}
            ),
            "body changed": await client.post(
                PATH,
                content=body.replace(b"Export", b"Import"),
                headers={"X-HelpScout-Event": "convo.created", "X-HelpScout-Signature": signature},
            ),
            "url-safe base64": await client.post(
                PATH,
                content=body,
                headers={
                    "X-HelpScout-Event": "convo.created",
                    "X-HelpScout-Signature": signature.replace("+", "-").replace("/", "_")
                    + ("" if ("+" in signature or "/" in signature) else "!"),
                },
            ),
            "no event": await client.post(
                PATH, content=body, headers={"X-HelpScout-Signature": signature}
            ),
            "too large": await deliver(client, "convo.created", b"{" + b" " * 5_000_000 + b"}"),
            "GET": await client.get(PATH),
        }
        test_event = await deliver(client, "helpscout.test", {"id": 1})
    statuses = {name: response.status_code for name, response in cases.items()}
    assert statuses == {
        "wrong secret": 401,
        "no signature": 401,
        "body changed": 401,
        "url-safe base64": 401,
        "no event": 400,
        "too large": 413,
        "GET": 405,
    }
    assert cases["wrong secret"].json() == {"error": "invalid signature"}
    assert test_event.status_code == 200
    async with opened(url) as store:
        assert await count(store, Event) == 0


async def test_the_secret_registered_by_connect_verifies_deliveries_too(
    tmp_path: Path, database: str
) -> None:
    url = f"sqlite:///{tmp_path / 'insights.db'}"
    key = Fernet.generate_key().decode()
    async with opened(url) as store, store.session() as session:
        sealed = Cipher(key).encrypt("registered-by-connect")
        session.add(Connection(provider="helpscout", mode="oauth", webhook_secret=sealed))
    extra = f'encryption_key = "{key}"'
    async with serve(insights_settings(tmp_path, database, url, extra)) as client:
        registered = await deliver(
            client, "convo.created", conversation(2010), secret="registered-by-connect"
        )
        configured = await deliver(client, "convo.created", conversation(2011))
        unknown = await deliver(client, "convo.created", conversation(2012), secret="unknown")
    assert [registered.status_code, configured.status_code, unknown.status_code] == [200, 200, 401]
    assert b"registered-by-connect" not in (tmp_path / "insights.db").read_bytes()


async def test_deleted_events_remove_what_they_name(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    async with serve(insights_settings(tmp_path, database, insights_url)) as client:
        for n, customer in ((1, 601), (2, 601), (3, 602)):
            await deliver(client, "convo.created", conversation(4000 + n, customer_id=customer))
        await deliver(client, "convo.deleted", {"id": 4003})
        await deliver(client, "customer.deleted", {"id": 601})
        async with opened(insights_url) as store:
            await settled(store)
            assert await count(store, Conversation) == 0
            assert await count(store, Thread) == 0
            assert await count(store, Customer, Customer.id == 601) == 0
            assert await count(store, Customer, Customer.id == 602) == 1
            assert await count(store, Event, Event.status == "done") == 5


async def test_a_late_retry_of_an_older_copy_does_not_undo_a_newer_one(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    newer = conversation(2004, subject="Renamed by an agent", updated="2026-11-21T10:00:00Z")
    older = conversation(2004, subject="Original", updated="2026-11-20T10:00:00Z", threads=1)
    async with serve(insights_settings(tmp_path, database, insights_url)) as client:
        await deliver(client, "convo.status", newer)
        async with opened(insights_url) as store:
            await settled(store)
            await deliver(client, "convo.created", older)
            await settled(store)
            async with store.session() as session:
                subject = await session.scalar(select(Conversation.subject))
            assert subject == "Renamed by an agent"
            assert await count(store, Thread) == 2


async def test_a_failing_event_is_retried_then_parked_with_its_error(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    settings = insights_settings(tmp_path, database, insights_url, "worker_attempts = 2")
    broken = conversation(2005, subject="Refused by the database")
    async with opened(insights_url) as store:
        await refuse_subjects(store, "Refused")
    async with serve(settings) as client:
        assert (await deliver(client, "convo.created", broken)).status_code == 200
        assert (await deliver(client, "convo.created", b"not json")).status_code == 200
        assert (await deliver(client, "convo.created", conversation(2006))).status_code == 200
    async with opened(insights_url) as store:
        worker = Worker(store, attempts=2)
        await worker.run_once()
        async with store.session() as session:
            events = {e.body: e for e in (await session.scalars(select(Event))).all()}
        retried, garbage = events[body_of(broken)], events[b"not json"]
        assert (retried.status, retried.attempts) == ("pending", 1)
        assert retried.next_attempt_at > utcnow()  # backs off before the next attempt
        assert "Error" in (retried.last_error or "")
        assert (garbage.status, garbage.attempts) == ("parked", 0)  # parked on arrival
        assert "not JSON" in (garbage.last_error or "")
        assert await count(store, Conversation) == 1  # the good event was not held up

        assert await worker.run_once() == 0  # not due yet
        async with store.session() as session:
            await session.execute(update(Event).values(next_attempt_at=utcnow()))
        await worker.run_once()
        assert await count(store, Event, Event.status == "parked") == 2
        assert await count(store, Event, Event.id == retried.id, Event.status == "parked") == 1

    result = await asyncio.to_thread(  # the command runs its own event loop
        CliRunner().invoke, cli_app, ["events", "--database", insights_url, "--retry"]
    )
    assert result.exit_code == 0, result.output
    assert "2 parked event(s) queued again" in result.output
    async with opened(insights_url) as store:
        assert await count(store, Event, Event.status == "pending") == 2


async def test_two_workers_share_the_queue_without_overlap(fresh_postgres_url: str) -> None:
    async with opened(fresh_postgres_url) as store:
        inbox = Inbox(store)
        for n in range(600):
            await inbox.accept("convo.created", body_of(conversation(20_000 + n)))
        await inbox.aclose()
        workers = [Worker(store, batch_size=25) for _ in range(3)]

        async def drain(worker: Worker) -> int:
            handled = 0
            while processed := await worker.run_once():
                handled += processed
            return handled

        shares = await asyncio.gather(*(drain(worker) for worker in workers))
        assert sum(shares) == 600
        assert all(share > 0 for share in shares)  # SKIP LOCKED let them work side by side
        assert await count(store, Event, Event.status == "done", Event.attempts == 1) == 600


def test_conversations_command_lists_what_webhooks_stored(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    async def fill() -> None:
        async with serve(insights_settings(tmp_path, database, insights_url)) as client:
            await deliver(client, "convo.created", conversation(2007, subject="Billing question"))
            async with opened(insights_url) as store:
                await settled(store)

    asyncio.run(fill())
    runner = CliRunner()
    result = runner.invoke(cli_app, ["conversations", "--database", insights_url, "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row | {"created_at": None, "modified_at": None} == {
        "id": 2007,
        "number": 2107,
        "subject": "Billing question",
        "customer": "customer501@example.com",
        "messages": 2,
        "status": "active",
        "created_at": None,
        "modified_at": None,
    }
    table = runner.invoke(
        cli_app, ["conversations", "--database", insights_url], env={"COLUMNS": "200"}
    )
    assert table.exit_code == 0, table.output
    assert "Billing question" in table.output


def test_the_default_database_is_in_the_data_directory(tmp_path: Path) -> None:
    assert os.environ["DESKSIDE_DATA_DIR"] in database_url(None)
    assert database_url(None).startswith("sqlite+aiosqlite:///")
