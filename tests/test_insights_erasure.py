"""Erasure on request, retention and disconnecting with the data, through the real commands,
the real app and its web UI, on SQLite and PostgreSQL.

"Nothing about them is left" is checked by reading every column of every table of the store
for the address (any case) and the customer's id. Webhooks are signed by the independent signer
in ``helpers``; Help Scout and GitHub are the fakes on 127.0.0.1; the sidebar's cache is a real
Redis where a test says so.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from typer.testing import CliRunner

from deskside.cli import app as cli_app
from deskside.config import Settings, load_settings
from deskside.insights.analysis.engine import Analysis
from deskside.insights.helpscout.client import HelpScoutAPI
from deskside.insights.ingest.backfill import import_conversations
from deskside.insights.models import (
    Base,
    Classification,
    Conversation,
    Customer,
    ErasureAudit,
    Event,
    LabelledExample,
    Mailbox,
    ReportExport,
    Thread,
    Topic,
    TopicMember,
)
from deskside.insights.privacy.erasure import forget
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, database_url
from deskside.lookup import Lookup
from fake_github import FakeGitHub
from fake_helpscout import FakeHelpScout, generate_dataset
from helpers import demo_settings, helpscout_signature, parse_html, serve
from test_web import ADMIN, PASSWORD, browser, csrf_of, log_in, seed_conversations

pytestmark = pytest.mark.anyio

SECRET = "erasure-webhook-secret"
TOKEN = "erasure-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GITHUB_TOKEN = "ghp-erasure-test-token"
ALICE = "Alice.Erasable@Example.com"
"""The person to erase, as Help Scout spells her address (any case must go)."""
ALICE_ID = 987_654_321
BOB = "bob.stays@example.com"
BOB_ID = 123_454_321
ALICE_WORDS = "My flamingo-shaped invoice vanished after the upgrade yesterday."
BOB_WORDS = "The invoice export crashes with error 500 since the upgrade yesterday."
QUERY = "select name from users where lower(email) in :emails"
runner = CliRunner()


@pytest.fixture
def ui_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> Settings:
    """The demo config with the web UI on (its insights store in the data directory)."""
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    return demo_settings(monkeypatch, tmp_path, database, replace={"[server]\n": ADMIN})


# ── What the store holds ─────────────────────────────────────────────────────────────────────


async def mentions(store: Store, address: str, *numbers: int) -> list[str]:
    """``table.column`` of every stored value that names ``address`` (any case) or one of
    ``numbers`` (as a whole number), read from every table of the store."""
    whole = [re.compile(rf"(?<!\d){number}(?!\d)") for number in numbers]
    found = []
    async with store.read() as session:
        for table in Base.metadata.sorted_tables:
            for row in (await session.execute(select(table))).all():
                for column, value in zip(table.columns, row, strict=True):
                    if value is None:
                        continue
                    if isinstance(value, bytes):
                        text = value.decode("utf-8", "replace")
                    elif isinstance(value, dict | list):
                        text = json.dumps(value)
                    else:
                        text = str(value)
                    if address.lower() in text.lower() or any(p.search(text) for p in whole):
                        found.append(f"{table.name}.{column.name}")
    return sorted(set(found))


async def count(store: Store, model: Any, *where: Any) -> int:
    async with store.read() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def settled(store: Store, seconds: float = 60) -> None:
    """Wait until the server's worker has handled every stored delivery."""
    deadline = asyncio.get_running_loop().time() + seconds
    while await count(store, Event, Event.status == "pending"):
        assert asyncio.get_running_loop().time() < deadline, "deliveries still pending"
        await asyncio.sleep(0.05)


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Store]:
    store = await Store(database_url(url)).open()
    try:
        yield store
    finally:
        await store.aclose()


# ── Help Scout's deliveries ──────────────────────────────────────────────────────────────────


def conversation(
    conversation_id: int,
    customer: tuple[int, str],
    subject: str,
    messages: list[tuple[str, str]],
    *,
    updated: str = "2026-11-20T09:30:00Z",
    first_thread: int = 0,
) -> dict[str, Any]:
    """A conversation as a V2 webhook carries it; ``messages``: (author's address, text), the
    customer's own or an agent's (``…@yourapp.example``), the first with the thread id
    ``conversation_id * 10 + first_thread``."""
    customer_id, email = customer

    def author(address: str) -> dict[str, Any]:
        if address.endswith("@yourapp.example"):
            return {"id": 3, "type": "user", "email": address}
        known = {ALICE.lower(): ALICE_ID, BOB: BOB_ID}
        return {"id": known.get(address.lower(), customer_id), "type": "customer", "email": address}

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
        "_embedded": {
            "threads": [
                {
                    "id": conversation_id * 10 + first_thread + n,
                    "type": "message" if address.endswith("@yourapp.example") else "customer",
                    "body": f"<p>{text}</p>",
                    "createdBy": author(address),
                    "createdAt": "2026-11-20T09:00:00Z",
                }
                for n, (address, text) in enumerate(messages)
            ]
        },
    }


async def deliver(client: httpx.AsyncClient, event: str, document: Any) -> None:
    """POST ``document`` as Help Scout delivers ``event``, signed as it signs."""
    body = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/json",
        "X-HelpScout-Event": event,
        "X-HelpScout-Signature": helpscout_signature(SECRET, body),
    }
    response = await client.post("/webhooks/helpscout", content=body, headers=headers)
    assert response.status_code == 200, response.text


ALICE_FIRST = conversation(5001, (ALICE_ID, ALICE), "Flamingo invoice gone", [(ALICE, ALICE_WORDS)])
ALICE_SECOND = conversation(
    5002,
    (ALICE_ID, ALICE),
    "Invoice export broken",
    [(ALICE, BOB_WORDS.replace("The", "Our")), ("ann@yourapp.example", "Looking into it.")],
)
BOB_QUOTING_ALICE = conversation(
    5003,
    (BOB_ID, BOB),
    "Export crash",
    [
        (BOB, f"{BOB_WORDS} My colleague {ALICE} saw it too."),
        (ALICE, "Same here, it still fails for me."),  # she wrote in his conversation (cc)
        ("ann@yourapp.example", f"Thanks, I have written to {ALICE.upper()} as well."),
    ],
)
ALICE_CUSTOMER = {
    "id": ALICE_ID,
    "firstName": "Alice",
    "lastName": "Erasable",
    "_embedded": {"emails": [{"value": ALICE}]},
}


def write_config(
    tmp_path: Path, database: str, store_url: str, *, cache: str = "memory", extra: str = ""
) -> Path:
    """A config with a SQL source on the demo database, the admin token and insights."""
    path = tmp_path / "deskside.toml"
    path.write_text(
        f"""
cache = "{cache}"

[sources.app]
kind = "sql"
url = "{database}"
query = "{QUERY}"

[admin]
token = "{TOKEN}"

[insights]
database = "{store_url}"

[insights.helpscout]
webhook_secret = "{SECRET}"
{extra}
""",
        encoding="utf-8",
    )
    return path


def cached_keys(url: str) -> list[str]:
    """The keys in the Redis database at ``url``."""
    client = redis.Redis.from_url(url)
    try:
        return [key.decode("utf-8", "replace") for key in client.keys("*")]
    finally:
        client.close()


def invoke(*args: str) -> Any:
    """``deskside ARGS`` in this process (its own event loop: run from a thread in a test)."""
    return runner.invoke(cli_app, list(args), env={"COLUMNS": "160"})


# ── forget ───────────────────────────────────────────────────────────────────────────────────


async def test_forget_leaves_nothing_that_names_them_and_nothing_comes_back(
    tmp_path: Path, database: str, insights_url: str, redis_url: str
) -> None:
    config = write_config(tmp_path, database, insights_url, cache=redis_url)
    async with serve(load_settings(config)) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        insights, sidebar = app.state.insights, app.state.service
        for document in (ALICE_FIRST, ALICE_SECOND, BOB_QUOTING_ALICE):
            await deliver(client, "convo.created", document)
        await deliver(client, "customer.updated", ALICE_CUSTOMER)
        await settled(insights.store)
        await insights.analysis.update()
        relabel = await client.post(  # her words become an agent's correction
            "/api/insights/conversations/5001/label", json={"label": "feature"}, headers=AUTH
        )
        assert relabel.status_code == 200, relabel.text
        for email in (ALICE.lower(), BOB):  # the sidebar caches its answers about both
            await sidebar.answer(Lookup(emails=(email,), context={"desk": "test"}))
        assert any(ALICE.lower() in key for key in cached_keys(redis_url))
        store = insights.store
        before = await mentions(store, ALICE, ALICE_ID)
        assert {"conversations.customer_email", "conversations.customer_id"} <= set(before)
        assert {"customers.email", "threads.text", "threads.author_email"} <= set(before)
        assert "events.body" in before
        assert await count(store, LabelledExample, LabelledExample.conversation_id == 5001) == 1

        result = await asyncio.to_thread(invoke, "forget", ALICE.upper(), "-c", str(config))
        assert result.exit_code == 0, result.output
        assert "erased alice.erasable@example.com" in result.output
        for shown in ("conversations", "customers", "webhook deliveries", "agents' corrections"):
            assert shown in result.output
        assert "cached sidebar answers" in result.output

        assert await mentions(store, ALICE, ALICE_ID) == []
        assert await count(store, LabelledExample) == 0  # her words, as a correction
        assert not any(ALICE.lower() in key for key in cached_keys(redis_url))
        assert any(BOB in key for key in cached_keys(redis_url))  # only hers went
        async with store.read() as session:
            kept = await session.get(Conversation, 5003)
            texts = list(await session.scalars(select(Thread.text).order_by(Thread.id)))
        assert kept is not None and kept.customer_email == BOB
        assert texts == [
            f"{BOB_WORDS} My colleague [erased] saw it too.",
            "Thanks, I have written to [erased] as well.",
        ]

        # Later, Help Scout writes about her again: a new conversation, her customer record, and
        # Bob quoting her; an import of her conversations is the other way back (see below).
        later = conversation(
            5004,
            (ALICE_ID, ALICE),
            "Still no invoice",
            [(ALICE, ALICE_WORDS)],
            updated="2026-11-22T09:00:00Z",
        )
        await deliver(client, "convo.created", later)
        await deliver(client, "customer.updated", ALICE_CUSTOMER | {"firstName": "Alicia"})
        await deliver(client, "convo.customer.reply.created", ALICE_FIRST)
        reply = conversation(
            5003,
            (BOB_ID, BOB),
            "Export crash",
            [(BOB, f"Ask {ALICE} once more."), (ALICE, "Still broken for me.")],
            updated="2026-11-23T09:00:00Z",
            first_thread=5,
        )
        await deliver(client, "convo.customer.reply.created", reply)
        await settled(store)
        assert await mentions(store, ALICE, ALICE_ID) == []
        assert await count(store, Conversation, Conversation.id.in_([5001, 5002, 5004])) == 0
        async with store.read() as session:
            added = list(await session.scalars(select(Thread.text).where(Thread.id >= 50035)))
        assert added == ["Ask [erased] once more."]  # Bob's reply, without hers
        # what the worker handled about her is not kept either
        assert await count(store, Event, Event.body == b"") == 4
    async with opened(insights_url) as store:
        audit = list(await _audit(store))
    assert [(row.actor, row.action, row.detail) for row in audit] == [
        ("cli", "forget", "1 address")
    ]
    assert audit[0].rows == sum(audit[0].counts.values()) > 0
    assert audit[0].counts["conversations"] == 2 and audit[0].counts["customers"] == 1


async def _audit(store: Store) -> list[ErasureAudit]:
    async with store.read() as session:
        erasures = ErasureAudit.action.in_(("forget", "retention", "disconnect"))  # not logins
        return list(
            await session.scalars(select(ErasureAudit).where(erasures).order_by(ErasureAudit.id))
        )


async def test_an_import_stores_nothing_of_someone_erased(insights_url: str) -> None:
    dataset = generate_dataset(40, customers=8, seed=11)
    person = dataset.conversations[0]["primaryCustomer"]
    theirs = {c["id"] for c in dataset.conversations if c["primaryCustomer"]["id"] == person["id"]}
    key = Fernet.generate_key().decode()
    with FakeHelpScout(dataset) as helpscout:
        settings = InsightsSettings.model_validate(
            {
                "encryption_key": key,
                "helpscout": helpscout.settings_document(mode="client_credentials"),
            }
        )
        async with opened(insights_url) as store:
            # Erased before anything was stored: the tombstone alone keeps them out.
            erased = await forget(store, [person["email"]], by="cli")
            assert erased.total == 0
            async with HelpScoutAPI(settings, store) as api:
                await api.connect_client_credentials()
                since = datetime.now(UTC) - timedelta(days=400)
                await import_conversations(store, api, since)
            async with store.read() as session:
                stored = set(await session.scalars(select(Conversation.id)))
            assert stored == {c["id"] for c in dataset.conversations} - theirs
            assert await mentions(store, person["email"], person["id"]) == []


async def test_the_api_erases_and_the_audit_names_the_token(tmp_path: Path, database: str) -> None:
    url = f"sqlite:///{tmp_path / 'insights.db'}"
    config = write_config(tmp_path, database, url)
    async with serve(load_settings(config)) as client:
        app = client._transport.app  # type: ignore[attr-defined]
        for document in (ALICE_FIRST, BOB_QUOTING_ALICE):
            await deliver(client, "convo.created", document)
        await settled(app.state.insights.store)
        await app.state.service.answer(Lookup(emails=(ALICE.lower(),), context={"desk": "test"}))
        refused = await client.post("/api/insights/forget", json={"emails": [ALICE]})
        assert refused.status_code == 401
        wrong = await client.post("/api/insights/forget", json={"emails": ["no"]}, headers=AUTH)
        assert (wrong.status_code, wrong.json()) == (
            400,
            {"error": "emails[0] is not an email address"},
        )
        done = await client.post("/api/insights/forget", json={"emails": [ALICE]}, headers=AUTH)
        assert done.status_code == 200, done.text
        answer = done.json()
        assert answer["addresses"] == 1 and answer["rows"] == sum(answer["removed"].values())
        assert answer["removed"]["conversations"] == 1
        assert answer["removed"]["cached_answers"] == 1  # this server's own cache
        assert await mentions(app.state.insights.store, ALICE, ALICE_ID) == []
        [row] = await _audit(app.state.insights.store)
    assert row.actor == "api:token-" + hashlib.sha256(TOKEN.encode()).hexdigest()[:8]


async def test_the_web_ui_erases_after_a_confirmation(ui_settings: Settings) -> None:
    async with browser(ui_settings) as client:
        await log_in(client)
        await seed_conversations(client, ui_settings)
        store = client._transport.app.state.insights.store  # type: ignore[attr-defined]
        page = await client.get("/ui/connection")
        assert 'action="/ui/connection/forget"' in page.text
        token = csrf_of(page.text)
        person = "customer701@example.com"  # who wrote conversation 1
        asked = await client.post(
            "/ui/connection/forget", data={"csrf_token": token, "email": person.upper()}
        )
        assert asked.status_code == 200  # a confirmation first; nothing is erased yet
        assert f"Erase {person} for good?" in parse_html(asked.text).text()
        assert await count(store, Conversation, Conversation.id == 1) == 1
        confirmed = await client.post(
            "/ui/connection/forget",
            data={"csrf_token": csrf_of(asked.text), "email": person, "confirmed": "1"},
        )
        assert confirmed.status_code == 303
        assert confirmed.headers["location"].startswith("/ui/connection?done=forget&rows=")
        shown = parse_html((await client.get(confirmed.headers["location"])).text).text()
        assert "Erased for good" in shown and person not in confirmed.headers["location"]
        assert await count(store, Conversation, Conversation.id == 1) == 0
        assert await count(store, Conversation) == 2
        assert await mentions(store, person) == []
        bad = await client.post("/ui/connection/forget", data={"csrf_token": token, "email": "x"})
        assert bad.status_code == 400
        rows = await _audit(store)
    assert [(row.actor, row.action) for row in rows] == [("ui:admin", "forget")]


# ── The next GitHub export ───────────────────────────────────────────────────────────────────

BUG, DARK = 21, 22


async def seed_reports(store: Store) -> None:
    """A bug topic of Alice's and Bob's conversations (a person named it), and a feature topic
    named after the subject of Alice's only conversation in it."""
    day = datetime(2026, 11, 20, 9, tzinfo=UTC)
    async with store.session() as session:
        session.add_all(
            [
                Customer(id=ALICE_ID, email=ALICE.lower(), first_name="Alice"),
                Customer(id=BOB_ID, email=BOB, first_name="Bob"),
                Topic(id=BUG, label="bug", name="Invoice export crash", named_by_person=True),
                Topic(id=DARK, label="feature", name="Flamingo dark mode for Alice"),
            ]
        )
        rows = [
            (1, ALICE_ID, "Invoice export broken for Alice", ALICE_WORDS, "bug", BUG),
            (2, BOB_ID, "Invoice export crash", BOB_WORDS, "bug", BUG),
            (
                3,
                ALICE_ID,
                "Flamingo dark mode for Alice",
                "A flamingo-pink dark mode please, the dashboard hurts my eyes at night.",
                "feature",
                DARK,
            ),
        ]
        for cid, customer, subject, _, _, _ in rows:
            email = ALICE.lower() if customer == ALICE_ID else BOB
            session.add(
                Conversation(
                    id=cid,
                    number=7000 + cid,
                    customer_id=customer,
                    customer_email=email,
                    subject=subject,
                    created_at=day + timedelta(hours=cid),
                    modified_at=day + timedelta(hours=cid),
                )
            )
        await session.flush()
        for cid, _, _, text, label, topic in rows:
            session.add(
                Thread(
                    id=100 + cid, conversation_id=cid, type="customer", author="customer", text=text
                )
            )
            session.add(
                Classification(conversation_id=cid, label=label, confidence=1.0, by="agent")
            )
            session.add(TopicMember(conversation_id=cid, topic_id=topic, pinned=True))


def issue_text(github: FakeGitHub, number: int) -> str:
    issue = github.issues[number]
    return f"{issue['title']}\n{issue['body']}"


async def test_the_next_github_export_no_longer_names_them(
    tmp_path: Path, database: str, insights_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with opened(insights_url) as store:
        await seed_reports(store)
    monkeypatch.setenv("TEST_GITHUB_TOKEN", GITHUB_TOKEN)
    with FakeGitHub(token=GITHUB_TOKEN, repository="acme/app") as github:
        reports = (
            '[insights.reports]\ngithub_repository = "acme/app"\n'
            f'github_token = "env:TEST_GITHUB_TOKEN"\ngithub_api_url = "{github.api_url}"\n'
        )
        config = str(write_config(tmp_path, database, insights_url, extra=reports))
        export = ["reports", "-c", config, "--export", "github"]
        result = await asyncio.to_thread(invoke, *export)
        assert result.exit_code == 0, result.output
        bug, dark = (
            int(re.search(rf"#(\d+) \S+ +\(topic {topic}:", result.output)[1])  # type: ignore[index]
            for topic in (BUG, DARK)
        )
        theirs = ["/conversation/1/7001/", "/conversation/3/7003/", "Alice", "flamingo"]
        assert any(word.lower() in issue_text(github, bug).lower() for word in theirs)
        assert "Flamingo dark mode for Alice" in issue_text(github, dark)

        result = await asyncio.to_thread(invoke, "forget", ALICE, "-c", config)
        assert result.exit_code == 0, result.output
        assert "exported reports (rewritten on the next export)" in result.output
        result = await asyncio.to_thread(invoke, *export)
        assert result.exit_code == 0, result.output
        assert f"updated #{bug}" in result.output and f"updated #{dark}" in result.output
        for number in (bug, dark):
            text = issue_text(github, number).lower()
            assert not [word for word in theirs if word.lower() in text], text
        assert "/conversation/2/7002/" in issue_text(github, bug)  # Bob's stays
        assert "erased on request" in issue_text(github, dark)
        assert github.issues[dark]["title"] == f"Feature topic {DARK}"

        patches = len(github.requests("PATCH"))
        result = await asyncio.to_thread(invoke, *export)  # rewritten once, then as usual
        assert result.exit_code == 0, result.output
        assert len(github.requests("PATCH")) == patches + 1  # the bug topic's report alone
    async with opened(insights_url) as store:
        assert await mentions(store, ALICE, ALICE_ID) == []
        assert await count(store, ReportExport) == 2


# ── Disconnecting ────────────────────────────────────────────────────────────────────────────


@pytest.fixture
def helpscout() -> Iterator[FakeHelpScout]:
    with FakeHelpScout(generate_dataset(60, customers=15, seed=5)) as fake:
        yield fake


def helpscout_config(path: Path, fake: FakeHelpScout) -> Path:
    table = fake.settings_document(mode="client_credentials")
    lines = ["[insights]", f'database = "sqlite:///{path.parent / "insights.db"}"']
    lines.append(f'encryption_key = "{Fernet.generate_key().decode()}"')
    lines.append("[insights.helpscout]")
    lines += [f"{name} = {json.dumps(value)}" for name, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def connect_and_import(config: Path) -> None:
    webhook = "https://deskside.example/webhooks/helpscout"
    result = invoke("connect", "helpscout", "-c", str(config), "--webhook-url", webhook)
    assert result.exit_code == 0, result.output
    result = invoke("import", "-c", str(config), "--since", "400d", "--again")
    assert result.exit_code == 0, result.output


IMPORTED = (Conversation, Thread, Customer, Mailbox, Classification, TopicMember, Topic)


def stored(config: Path) -> dict[str, int]:
    async def counts() -> dict[str, int]:
        async with opened(f"sqlite:///{config.parent / 'insights.db'}") as store:
            return {model.__tablename__: await count(store, model) for model in IMPORTED}

    return asyncio.run(counts())


def test_disconnect_keeps_the_data_unless_told_to_delete_it(
    helpscout: FakeHelpScout, tmp_path: Path
) -> None:
    config = helpscout_config(tmp_path / "deskside.toml", helpscout)
    connect_and_import(config)
    assert len(helpscout.webhooks) == 1
    before = stored(config)
    assert before["conversations"] == len(helpscout.dataset.conversations)

    result = invoke("disconnect", "helpscout", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert "The imported conversations stay" in result.output
    assert helpscout.webhooks == {}
    assert stored(config) == before

    connect_and_import(config)
    assert len(helpscout.webhooks) == 1
    result = invoke("disconnect", "helpscout", "-c", str(config), "--delete-data")
    assert result.exit_code == 0, result.output
    assert "deleted the imported data" in result.output
    assert helpscout.webhooks == {}
    assert set(stored(config).values()) == {0}

    result = invoke("erasures", "-c", str(config), "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert (row["actor"], row["action"]) == ("cli", "disconnect")
    assert row["counts"]["conversations"] == before["conversations"]


async def test_the_web_ui_deletes_the_data_only_when_asked_and_confirmed(
    ui_settings: Settings,
) -> None:
    async with browser(ui_settings) as client:
        await log_in(client)
        await seed_conversations(client, ui_settings)
        store = client._transport.app.state.insights.store  # type: ignore[attr-defined]
        token = csrf_of((await client.get("/ui/connection")).text)
        kept = await client.post("/ui/connection/disconnect", data={"csrf_token": token})
        assert kept.headers["location"] == "/ui/connection?done=disconnect"
        page = parse_html((await client.get(kept.headers["location"])).text).text()
        assert "The imported conversations stay." in page
        assert await count(store, Conversation) == 3

        asked = await client.post(
            "/ui/connection/disconnect", data={"csrf_token": token, "delete_data": "1"}
        )
        assert asked.status_code == 200
        assert "This cannot be undone" in parse_html(asked.text).text()
        assert await count(store, Conversation) == 3
        confirmed = await client.post(
            "/ui/connection/disconnect",
            data={"csrf_token": token, "delete_data": "1", "confirmed": "1"},
        )
        assert confirmed.headers["location"] == "/ui/connection?done=disconnect-data"
        assert await count(store, Conversation) == 0
        assert await count(store, Thread) == 0 and await count(store, Event) == 0
        [row] = await _audit(store)
    assert (row.actor, row.action) == ("ui:admin", "disconnect")


# ── Retention ────────────────────────────────────────────────────────────────────────────────


async def test_keep_days_purges_old_conversations_only_once_a_day(insights_url: str) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=100), now - timedelta(days=5)
    async with opened(insights_url) as store:
        async with store.session() as session:
            session.add_all(
                [
                    Customer(id=1, email="gone@example.com", updated_at=old, modified_at=old),
                    Customer(id=2, email="stays@example.com", updated_at=old, modified_at=old),
                    Topic(id=1, label="bug", name="Crash"),
                ]
            )
            # conversation 1 began long ago and changed last long ago; 2 began long ago but a
            # customer wrote last week; 3 is recent
            for cid, customer, created, modified in (
                (1, 1, old, old),
                (2, 2, old, recent),
                (3, 2, recent, recent),
            ):
                session.add(
                    Conversation(
                        id=cid, customer_id=customer, created_at=created, modified_at=modified
                    )
                )
            await session.flush()
            for cid in (1, 2, 3):
                session.add(
                    Thread(
                        id=cid, conversation_id=cid, type="customer", author="customer", text="x"
                    )
                )
                session.add(
                    Classification(conversation_id=cid, label="bug", confidence=0.9, by="model")
                )
                session.add(TopicMember(conversation_id=cid, topic_id=1))
            session.add(LabelledExample(text="x", label="bug", conversation_id=1))
            for n, (received, status) in enumerate(
                ((old, "done"), (old, "parked"), (old, "pending"), (recent, "done"))
            ):
                session.add(
                    Event(
                        event="convo.created",
                        dedupe_key=str(n),
                        body=b"{}",
                        received_at=received,
                        status=status,
                    )
                )
        settings = InsightsSettings(keep_days=30)
        analysis = Analysis(store, settings)
        assert await analysis.update_unless_elsewhere("retention-test")
        async with store.read() as session:
            assert set(await session.scalars(select(Conversation.id))) == {2, 3}
            assert set(await session.scalars(select(Thread.conversation_id))) == {2, 3}
            assert set(await session.scalars(select(Classification.conversation_id))) == {2, 3}
            assert set(await session.scalars(select(Customer.id))) == {2}
            assert await count(store, LabelledExample) == 0
            statuses = sorted(await session.scalars(select(Event.status)))
        assert statuses == ["done", "pending"]  # the recent one, and the one not handled yet
        [row] = await _audit(store)
        assert (row.actor, row.action, row.detail) == (
            "retention",
            "retention",
            "older than 30 days",
        )
        assert row.counts == {
            "threads": 1,
            "classifications": 1,
            "topic_members": 1,
            "labelled_examples": 1,
            "conversations": 1,
            "customers": 1,
            "events": 2,
        }
        # The next passes, by this process or another, wait for the day to pass.
        assert await Analysis(store, settings).update_unless_elsewhere("retention-test")
        assert await analysis.update_unless_elsewhere("retention-test")
        assert len(await _audit(store)) == 1
