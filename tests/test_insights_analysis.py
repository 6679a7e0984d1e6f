"""Stored conversations get classified from their customers' words, an agent's relabel sticks
and teaches the classifier, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from deskside.insights.analysis.engine import Analysis, UnknownConversation
from deskside.insights.ingest.changes import save_conversations
from deskside.insights.ingest.normalise import conversation_record
from deskside.insights.models import Classification, LabelledExample, Topic, TopicMember
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, database_url

pytestmark = pytest.mark.anyio

_ids = itertools.count(1)


def conversation(
    conversation_id: int, customer_says: str, *, agent_says: str = "", updated: str = "2026-11-01"
) -> dict[str, Any]:
    """A conversation whose customer wrote ``customer_says`` and an agent replied."""
    threads = [
        {
            "id": next(_ids),
            "type": "customer",
            "body": f"<p>{customer_says}</p>",
            "createdBy": {"type": "customer", "email": "c@example.com"},
            "createdAt": f"{updated}T09:00:00Z",
        }
    ]
    if agent_says:
        threads.append(
            {
                "id": next(_ids),
                "type": "message",
                "body": f"<p>{agent_says}</p>",
                "createdBy": {"type": "user", "email": "agent@example.com"},
                "createdAt": f"{updated}T10:00:00Z",
            }
        )
    return {
        "id": conversation_id,
        "number": conversation_id,
        "subject": "Help",
        "createdAt": f"{updated}T09:00:00Z",
        "userUpdatedAt": f"{updated}T10:00:00Z",
        "primaryCustomer": {"id": 1, "email": "c@example.com"},
        "_embedded": {"threads": threads},
    }


@pytest.fixture
async def store(insights_url: str) -> AsyncIterator[Store]:
    opened = await Store(database_url(insights_url)).open()
    try:
        yield opened
    finally:
        await opened.aclose()


async def save(store: Store, *documents: dict[str, Any]) -> None:
    async with store.session() as session:
        await save_conversations(session, [conversation_record(d) for d in documents])


async def labels(store: Store) -> dict[int, tuple[str, str]]:
    async with store.read() as session:
        rows = (await session.scalars(select(Classification))).all()
    return {row.conversation_id: (row.label, row.by) for row in rows}


async def test_every_conversation_is_classified_once_and_again_when_it_changes(
    store: Store,
) -> None:
    await save(
        store,
        conversation(1, "The app crashes every time I upload a photo. Error 500."),
        conversation(
            2,
            "It would be great if you could add a dark mode to the dashboard.",
            agent_says="Thanks! Meanwhile the app crashes are fixed.",  # not the customer's
        ),
        conversation(3, "Hi, a quick note about the export."),
    )
    analysis = Analysis(store, InsightsSettings())
    assert await analysis.classify_pending() == 3
    found = await labels(store)
    assert found == {1: ("bug", "model"), 2: ("feature", "model"), 3: ("other", "model")}
    async with store.read() as session:
        confidences = (await session.scalars(select(Classification.confidence))).all()
    assert all(0.0 < c <= 1.0 for c in confidences)
    assert await analysis.classify_pending() == 0  # nothing changed

    # the customer writes again: the conversation is looked at again, as a whole
    follow_up = "The export crashes with error 500 every time, the page goes blank."
    await save(store, conversation(3, follow_up, updated="2026-11-02"))
    assert await analysis.classify_pending() == 1
    assert (await labels(store))[3] == ("bug", "model")


async def test_a_relabel_sticks_and_changes_later_predictions(store: Store) -> None:
    asked = "Where can I find the invoice settings?"
    await save(store, conversation(10, asked))
    analysis = Analysis(store, InsightsSettings())
    await analysis.classify_pending()
    assert (await labels(store))[10] == ("question", "model")

    similar = [
        "Where can I find the webhook settings?",
        "Where can I find the tax settings page?",
        "where do I find the branding settings",
    ]
    await save(store, *(conversation(20 + n, text) for n, text in enumerate(similar)))
    await analysis.classify_pending()
    for n in range(3):
        assert await analysis.relabel(20 + n, "documentation", by="cli") == "docs"

    async with store.read() as session:
        examples = (await session.scalars(select(LabelledExample))).all()
    assert sorted(e.text for e in examples) == sorted(f"Help\n\n{text}" for text in similar)
    assert {e.source for e in examples} == {"correction"}

    # a new conversation like those is now labelled docs; the agents' labels stay as they are
    await save(store, conversation(30, "Where can I find the invoice settings page?"))
    await save(
        store, conversation(21, "Where can I find the tax settings page?", updated="2026-11-05")
    )
    await analysis.classify_pending()
    found = await labels(store)
    assert found[30] == ("docs", "model")
    assert found[21] == ("docs", "agent")

    # another process (a fresh Analysis) learns the same from the store: the first
    # conversation, asked again, is now labelled docs there too
    fresh = Analysis(store, InsightsSettings())
    await fresh.train()
    assert fresh.classifier.predict_one(f"Help\n\n{asked}").label == "docs"


async def test_relabelling_refuses_unknown_labels_and_conversations(store: Store) -> None:
    await save(store, conversation(40, "The page is blank."))
    analysis = Analysis(store, InsightsSettings())
    with pytest.raises(ValueError, match="unknown label"):
        await analysis.relabel(40, "urgent", by="cli")
    with pytest.raises(UnknownConversation):
        await analysis.relabel(41, "bug", by="cli")


async def test_reports_of_one_problem_meet_in_a_topic_however_they_arrive(store: Store) -> None:
    """The first grouping saw each problem once (too few conversations to tell which words
    matter); as more arrive, the topics are worked out again and the reports meet."""
    problems = [
        "The app crashes every time I upload a photo. Error 500.",
        "The CSV export is broken since Monday, it stops after 500 rows.",
        "Feature request: please add a Slack integration for time-off requests.",
        "How do I change my password?",
    ]
    analysis = Analysis(store, InsightsSettings())
    await save(store, *(conversation(n, text) for n, text in enumerate(problems, 1)))
    await analysis.update()
    for batch in range(2):  # each problem reported twice more, a few at a time
        for n, text in enumerate(problems, 1):
            await save(store, conversation(10 * (batch + 1) + n, text))
            if n % 2 == 0:
                await analysis.update()
    async with store.read() as session:
        members = (
            await session.execute(select(TopicMember.conversation_id, TopicMember.topic_id))
        ).all()
        names = dict((await session.execute(select(Topic.id, Topic.name))).all())
    topic_of = dict(members)
    for n in range(1, 5):
        assert topic_of[n] == topic_of[10 + n] == topic_of[20 + n], problems[n - 1]
    assert len(set(topic_of.values())) == 4
    assert "change password" in names[topic_of[4]]


async def test_a_conversation_unlike_any_other_is_named_by_its_subject(store: Store) -> None:
    """Its words are in no other conversation, so the topic has no distinctive terms to be
    named by: it is named by the subject the customer wrote."""
    repeated = "The CSV export is broken since Monday, it stops after 500 rows."
    lone = conversation(9, "Wo finde ich meine Rechnungen vom letzten Jahr?")
    lone["subject"] = "  Rechnungen   vom letzten Jahr "
    analysis = Analysis(store, InsightsSettings())
    await save(store, conversation(1, repeated), conversation(2, repeated), lone)
    await analysis.update()
    async with store.read() as session:
        members = dict(
            (await session.execute(select(TopicMember.conversation_id, TopicMember.topic_id))).all()
        )
        names = dict((await session.execute(select(Topic.id, Topic.name))).all())
    assert names[members[9]] == "Rechnungen vom letzten Jahr"
    assert "500 rows" in names[members[1]]  # named by its words, not by its subject ("Help")
