"""The insights store: its migrations describe exactly its models, on SQLite and PostgreSQL, and
the Mailbox API's documents become rows without losing or inventing anything."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select

from deskside.insights.ingest.changes import save_conversations
from deskside.insights.ingest.normalise import conversation_record, html_to_text
from deskside.insights.models import Base, Conversation, Customer, Thread
from deskside.insights.store import Store, database_url

pytestmark = pytest.mark.anyio


async def test_the_migrations_build_exactly_the_models(insights_url: str) -> None:
    store = await Store(database_url(insights_url)).open()
    await store.open()  # a second open finds nothing to do
    try:
        async with store.engine.connect() as connection:
            differences = await connection.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
            )
    finally:
        await store.aclose()
    assert differences == []


def _document(**changes: Any) -> dict[str, Any]:
    return {
        "id": 77,
        "number": 12,
        "subject": "Payroll export",
        "status": "closed",
        "mailboxId": "3",
        "createdAt": "2026-01-02T03:04:05Z",
        "primaryCustomer": {"id": 9, "email": " Ann@Example.COM ", "first": "Ann"},
        "tags": [{"id": 1, "tag": "payroll"}, "vip"],
        "_embedded": {
            "threads": [
                {"id": 1, "type": "customer", "body": "<div>Hi<br>there &lt;3</div>"},
                {"id": 2, "type": "message", "createdBy": {"type": "user", "email": "a@x.io"}},
                {"id": 3, "type": "lineitem", "createdBy": {"type": "user"}},
                {"type": "note"},
                "not a thread",
            ]
        },
    } | changes


def test_a_conversation_document_becomes_rows() -> None:
    record = conversation_record(_document())
    assert record.conversation == {
        "id": 77,
        "number": 12,
        "mailbox_id": 3,
        "customer_id": 9,
        "customer_email": "ann@example.com",
        "subject": "Payroll export",
        "status": "closed",
        "state": None,
        "type": None,
        "tags": ["payroll", "vip"],
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "modified_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }
    assert [(t["id"], t["author"], t["text"]) for t in record.threads] == [
        (1, "customer", "Hi\nthere <3"),
        (2, "agent", ""),
        (3, "system", ""),
    ]
    assert record.customer == {
        "id": 9,
        "email": "ann@example.com",
        "first_name": "Ann",
        "last_name": None,
        "modified_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # the conversation's
    }


@pytest.mark.parametrize("bad_id", [None, "x", True, 1.5])
def test_a_conversation_without_an_id_is_refused(bad_id: Any) -> None:
    with pytest.raises(ValueError, match="no id"):
        conversation_record(_document(id=bad_id))


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("", ""),
        ("<!-- only a comment -->", ""),
        ("plain &amp; simple", "plain & simple"),
        ("<p>One</p><p>Two<br>Three</p>", "One\nTwo\nThree"),
        ("<script>alert(1)</script><style>p{}</style>Visible", "Visible"),
        ("<p>a</p>\n\n\n\n<p>b</p>", "a\n\nb"),
        ("<ul><li>first</li><li>second</li></ul>", "first\nsecond"),
    ],
)
def test_message_text_keeps_the_words_and_line_breaks(html: str, text: str) -> None:
    assert html_to_text(html) == text


async def test_saving_twice_and_in_any_order_ends_in_the_same_rows(insights_url: str) -> None:
    old = conversation_record(_document(subject="Old", userUpdatedAt="2026-01-03T00:00:00Z"))
    new = conversation_record(_document(subject="New", userUpdatedAt="2026-01-04T00:00:00Z"))
    renamed = conversation_record(
        _document(id=78, primaryCustomer={"id": 9, "email": None, "last": "Lee"})
    )
    store = await Store(database_url(insights_url)).open()
    try:
        for batch in ([new, old], [old], [new, renamed, renamed]):
            async with store.session() as session:
                await save_conversations(session, batch)
        async with store.read() as session:
            subjects = (await session.scalars(select(Conversation.subject))).all()
            threads = (await session.scalars(select(Thread.id))).all()
            customer = await session.get(Customer, 9)
    finally:
        await store.aclose()
    assert sorted(subjects) == ["New", "Payroll export"]
    assert sorted(threads) == [1, 2, 3]  # conversation 78 repeats 77's thread ids
    assert customer is not None
    # a field the later copy leaves out keeps its value
    assert (customer.email, customer.first_name, customer.last_name) == (
        "ann@example.com",
        "Ann",
        "Lee",
    )
