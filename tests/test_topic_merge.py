"""Merging topics in the web UI: the form names its target (none is preselected) and keeps the
name typed, a confirmation page shows both topics before anything changes, and an Undo within
10 minutes puts both topics back with their conversations and names (on SQLite and
PostgreSQL). And a topic a person renamed keeps that name when new conversations make the
grouping start over. The API merges and undoes the same way."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from deskside.config import Settings
from deskside.insights import audit
from deskside.insights.analysis import merges
from deskside.insights.analysis.queries import TopicSummary
from deskside.insights.models import Conversation, ErasureAudit, Topic, TopicMember, utcnow
from deskside.insights.store import Store, database_url
from deskside.web import dashboard
from deskside.web.roles import Role
from helpers import demo_settings, parse_html
from test_people import person_client, running
from test_web import ADMIN, PASSWORD, browser, csrf_of, log_in, seed_conversations

pytestmark = pytest.mark.anyio

PHOTO_CRASH = "The app crashes every time I upload a photo, error 500."


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> Settings:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    return demo_settings(monkeypatch, tmp_path, database, replace={"[server]\n": ADMIN})


async def bug_topics(client: object) -> list[TopicSummary]:
    insights = client._transport.app.state.insights  # type: ignore[attr-defined]
    return await dashboard.topics(insights.store, await insights.trends(), label="bug")


async def members(client: object, topic_id: int) -> set[int]:
    insights = client._transport.app.state.insights  # type: ignore[attr-defined]
    return {c.id for c in await dashboard.conversations(insights.store, topic=topic_id)}


async def two_bug_topics(client: object, settings: Settings) -> list[TopicSummary]:
    """Seed the conversations (two photo crashes) so that there are two bug topics; them."""
    await seed_conversations(client, settings, {4: PHOTO_CRASH})  # type: ignore[arg-type]
    insights = client._transport.app.state.insights  # type: ignore[attr-defined]
    first, *others = await bug_topics(client)
    if not others:  # grouped together: split the second photo crash off
        await insights.analysis.split_topic(first.id, [4], "Second crash", by="cli")
    return sorted(await bug_topics(client), key=lambda t: t.id)


async def move_back(client: object, merge_id: int) -> None:
    """Make the merge ``merge_id`` 11 minutes old."""
    insights = client._transport.app.state.insights  # type: ignore[attr-defined]
    async with insights.store.session() as session:
        await session.execute(
            update(ErasureAudit)
            .where(ErasureAudit.id == merge_id)
            .values(at=utcnow() - timedelta(minutes=11))
        )


async def test_a_merge_is_confirmed_then_undone(settings: Settings) -> None:
    async with browser(settings) as client:
        await log_in(client)
        first, second = await two_bug_topics(client, settings)
        before = {t.id: (t.name, await members(client, t.id)) for t in (first, second)}

        page = await client.get(f"/ui/topics/{second.id}")
        token = csrf_of(page.text)
        [choice] = [
            s for s in parse_html(page.text).find_all("select") if s.attrs["id"] == "merge-into"
        ]
        options = choice.find_all("option")
        assert options[0].attrs["value"] == ""  # no topic is preselected
        assert [o.attrs["value"] for o in options[1:]] == [str(first.id)]
        assert 'name="name"' in str(page.text.split('id="merge-form"', 1)[1].split("</form>")[0])

        asked = await client.post(
            f"/ui/topics/{second.id}/merge",
            data={"csrf_token": token, "into": str(first.id), "name": "  Photo   crashes "},
        )
        assert asked.status_code == 200
        shown = parse_html(asked.text).text()
        assert first.name in shown and second.name in shown and "Photo crashes" in shown
        assert sorted(t.id for t in await bug_topics(client)) == [first.id, second.id]

        confirm = csrf_of(asked.text)
        merged = await client.post(
            f"/ui/topics/{second.id}/merge",
            data={
                "csrf_token": confirm,
                "into": str(first.id),
                "name": "Photo crashes",
                "confirmed": "1",
            },
        )
        assert merged.status_code == 303
        location = merged.headers["location"]
        assert location.startswith(f"/ui/topics/{first.id}?done=merge&undo=")
        [topic] = await bug_topics(client)
        assert (topic.id, topic.name, topic.conversations) == (first.id, "Photo crashes", 2)

        merged_page = await client.get(location)
        assert "Undo" in merged_page.text and "10 minutes" in merged_page.text
        undo_id = location.rsplit("=", 1)[1]
        undone = await client.post(
            f"/ui/topics/{first.id}/undo-merge",
            data={"csrf_token": csrf_of(merged_page.text), "merge": undo_id},
        )
        assert undone.status_code == 303
        assert undone.headers["location"] == f"/ui/topics/{second.id}?done=unmerged"
        after = {t.id: (t.name, await members(client, t.id)) for t in await bug_topics(client)}
        assert after == before
        again = await client.post(
            f"/ui/topics/{first.id}/undo-merge", data={"csrf_token": token, "merge": undo_id}
        )
        assert again.status_code == 409 and "already undone" in again.text

        # after 10 minutes a merge stays
        late = await client.post(
            f"/ui/topics/{second.id}/merge",
            data={"csrf_token": token, "into": str(first.id), "confirmed": "1"},
        )
        late_id = int(late.headers["location"].rsplit("=", 1)[1])
        await move_back(client, late_id)
        refused = await client.post(
            f"/ui/topics/{first.id}/undo-merge", data={"csrf_token": token, "merge": str(late_id)}
        )
        assert refused.status_code == 409 and "10 minutes" in refused.text
        [kept] = await bug_topics(client)
        assert (kept.id, kept.name, kept.conversations) == (first.id, before[first.id][0], 2)

        audit = await client.get("/ui/audit", params={"who": "ui:admin"})
        actions = [
            row.attrs["data-action"]
            for row in parse_html(audit.text).find_all("tr")
            if "data-action" in row.attrs
        ]
        assert actions[:3] == ["topic_merged", "merge_undone", "topic_merged"]


async def test_the_api_merges_and_undoes_within_ten_minutes(settings: Settings) -> None:
    async with running(settings) as (app, people):
        client = await person_client(app, people, "editor@team.example", Role.editor)
        first, second = await two_bug_topics(client, settings)
        before = {t.id: (t.name, await members(client, t.id)) for t in (first, second)}
        tokens = {}
        for role in (Role.viewer, Role.editor):
            email = f"{role.name}@team.example"
            if role is Role.viewer:
                await people.add(email, role, by="test")
            tokens[role] = {
                "authorization": f"Bearer {(await people.create_token(email, 'ci', by='test'))[1]}"
            }

        async def merge() -> dict[str, object]:
            asked = await client.post(
                f"/api/insights/topics/{second.id}/merge",
                json={"into": first.id},
                headers=tokens[Role.editor],
            )
            assert asked.status_code == 200, asked.text
            return dict(asked.json())

        started = utcnow()
        merged = await merge()
        assert (merged["id"], merged["merged"]) == (first.id, second.id)
        undo_until = datetime.fromisoformat(str(merged["undo_until"]))
        assert started + timedelta(minutes=10) <= undo_until <= utcnow() + timedelta(minutes=10)
        assert [t.id for t in await bug_topics(client)] == [first.id]

        def undo(topic_id: int, role: Role = Role.editor) -> object:
            return client.post(f"/api/insights/topics/{topic_id}/undo-merge", headers=tokens[role])

        assert (await undo(second.id, Role.viewer)).status_code == 403
        assert (await undo(999_999)).status_code == 404
        assert [t.id for t in await bug_topics(client)] == [first.id]
        undone = await undo(second.id)
        assert undone.status_code == 200, undone.text
        assert {t["id"]: t["name"] for t in undone.json()} == {
            t: name for t, (name, _) in before.items()
        }
        after = {t.id: (t.name, await members(client, t.id)) for t in await bug_topics(client)}
        assert after == before
        assert (await undo(first.id)).status_code == 409  # nothing left to undo

        # by the target's id too, but not after 10 minutes
        merged = await merge()
        await move_back(client, int(merged["merge"]))  # type: ignore[call-overload]
        refused = await undo(first.id)
        assert refused.status_code == 409 and "10 minutes" in refused.text
        assert [t.id for t in await bug_topics(client)] == [first.id]
        await client.aclose()


async def test_a_renamed_topic_keeps_its_name_through_regrouping(settings: Settings) -> None:
    async with browser(settings) as client:
        await log_in(client)
        await seed_conversations(client, settings)
        [bug] = await bug_topics(client)
        token = csrf_of((await client.get(f"/ui/topics/{bug.id}")).text)
        renamed = await client.post(
            f"/ui/topics/{bug.id}/rename", data={"csrf_token": token, "name": "Photo uploads"}
        )
        assert renamed.status_code == 303
        # twice as many conversations: more than a quarter more, so everything is regrouped
        more = {
            4: PHOTO_CRASH,
            5: "Uploading a photo crashes the app with error 500.",
            6: "Please add a dark mode for the dashboard.",
            7: "Where do I reset my password?",
        }
        await seed_conversations(client, settings, more)
        topic_of = {
            c.id: c.topic_id
            for c in await dashboard.conversations(
                client._transport.app.state.insights.store  # type: ignore[attr-defined]
            )
        }
        assert topic_of[1] == bug.id
        [still] = [t for t in await bug_topics(client) if t.id == bug.id]
        assert still.name == "Photo uploads"


async def test_merge_and_undo_in_the_store(insights_url: str) -> None:
    store = await Store(database_url(insights_url)).open()
    try:
        async with store.session() as session:
            session.add_all([Conversation(id=n, subject="") for n in (1, 2, 3)])
            session.add_all(
                [
                    Topic(id=10, label="bug", name="Uploads", named_by_person=False),
                    Topic(id=11, label="bug", name="Photo crash", named_by_person=True),
                    Topic(id=12, label="feature", name="Dark mode"),
                ]
            )
            await session.flush()
            session.add_all(
                [
                    TopicMember(conversation_id=1, topic_id=10, pinned=False),
                    TopicMember(conversation_id=2, topic_id=11, pinned=True),
                    TopicMember(conversation_id=3, topic_id=11, pinned=False),
                ]
            )

        async def state() -> dict[int, tuple[str, bool, int | None, list[tuple[int, bool]]]]:
            async with store.read() as session:
                topics = {t.id: t for t in await session.scalars(select(Topic))}
                rows = list(await session.scalars(select(TopicMember)))
                return {
                    t.id: (
                        t.name,
                        t.named_by_person,
                        t.merged_into,
                        sorted((m.conversation_id, m.pinned) for m in rows if m.topic_id == t.id),
                    )
                    for t in topics.values()
                }

        before = await state()
        with pytest.raises(ValueError, match="cannot merge into a feature"):
            await merges.merge_topics(store, 11, 12, by="cli")
        merge = await merges.merge_topics(store, 11, 10, by="ui:a@team.example", name="Photos")
        merged = await state()
        assert merged[10] == ("Photos", True, None, [(1, False), (2, True), (3, False)])
        assert merged[11][2] == 10
        with pytest.raises(merges.UnknownTopic):
            await merges.merge_topics(store, 11, 10, by="cli")  # merged away
        assert await merges.undo_merge(store, merge, by="ui:b@team.example") == 11
        assert await state() == before
        with pytest.raises(ValueError, match="already undone"):
            await merges.undo_merge(store, merge, by="cli")
        with pytest.raises(LookupError):
            await merges.undo_merge(store, merge + 100, by="cli")
        found = await audit.entries(store, audit.AuditFilter(actor="@TEAM.example"))
        assert [(e.actor, e.action) for e in found] == [
            ("ui:b@team.example", "merge_undone"),
            ("ui:a@team.example", "topic_merged"),
        ]
        today = utcnow().date().isoformat()
        assert len(await audit.entries(store, audit.audit_filter(None, None, today, today))) == 2
        tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
        assert await audit.entries(store, audit.audit_filter(None, None, tomorrow, None)) == []
    finally:
        await store.aclose()
