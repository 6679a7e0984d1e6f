"""Two workspaces with look-alike data (the same customers' words, the same kind of topics), and
a person who is an admin of one of them, the highest role, so that only the workspace can stop
them: every route of the web UI and the insights API, called with the ids of the other
workspace's rows (conversations, topics, people, tokens), answers 404; the routes without an id
show nothing of the other workspace; and afterwards the other workspace's data is exactly as it
was. Both ways round (the default workspace holds the people, so it is not like the others),
on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from deskside.config import Settings
from deskside.insights import DEFAULT_WORKSPACE
from deskside.insights.models import (
    Classification,
    Conversation,
    Membership,
    PersonToken,
    Topic,
    TopicMember,
)
from deskside.insights.people import People
from deskside.insights.store import Store
from deskside.web.roles import PERMISSIONS, Role
from helpers import add_workspace, demo_settings, helpscout_signature
from test_insights_webhooks import conversation, settled
from test_people import (
    ADMIN,
    PASSWORD,
    client_of,
    guarded_routes,
    person_client,
    running,
    session_csrf,
)
from test_web import CONVERSATIONS

pytestmark = pytest.mark.anyio

OTHER = "acme"
SHIFT = 5000
"""The other workspace's topics' ids are moved this far up, so that none is also an id of the
caller's workspace (ids are per workspace: an id both have names the caller's own row)."""
NAMES = [f"Acme secret topic {n}" for n in range(1, 4)]
"""What the other workspace's people named its topics: never shown to the caller."""
GITHUB = (
    '[insights.reports]\ngithub_repository = "team/app"\ngithub_token = "unused"\n'
    'github_api_url = "http://127.0.0.1:9"\n'
)
"""Exports configured (to nowhere: no export may get as far as GitHub)."""
ROUTE_ACTIONS = {
    "/ui/connection/{action}": ["connect", "disconnect", "mailboxes", "refresh", "import"],
    "/ui/people/{person_id}/{action}": ["role", "remove", "invite", "token"],
}


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: str,
) -> Settings:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    replace = {"[server]\n": ADMIN, "[insights.helpscout]": GITHUB + "[insights.helpscout]"}
    if request.param == "postgresql":
        url = request.getfixturevalue("fresh_postgres_url")
        replace["[insights]"] = f'[insights]\ndatabase = "{url}"\n'
    return demo_settings(monkeypatch, tmp_path, database, replace=replace)


async def seed(client: httpx.AsyncClient, settings: Settings, workspace: str, first: int) -> None:
    """The same three customers' messages as Help Scout webhooks to ``workspace``, with
    conversation ids from ``first``; stored, classified and grouped."""
    secret = settings.insights.helpscout.webhook_secret[0].get_secret_value()
    path = "/webhooks/helpscout" + ("" if workspace == DEFAULT_WORKSPACE else f"/{workspace}")
    for offset, words in enumerate(CONVERSATIONS.values()):
        document = conversation(first + offset, threads=1, customer_id=first + offset)
        document["_embedded"]["threads"][0]["body"] = f"<p>{words}</p>"
        body = json.dumps(document).encode()
        headers = {
            "Content-Type": "application/json",
            "X-HelpScout-Event": "convo.created",
            "X-HelpScout-Signature": helpscout_signature(secret, body),
        }
        answer = await client.post(path, content=body, headers=headers)
        assert answer.status_code == 200, answer.text
    insights = client._transport.app.state.insights  # type: ignore[attr-defined]
    live = await insights.workspace(workspace)
    await settled(live.store)
    await live.analysis.update()


async def mark_as_other(store: Store) -> None:
    """Move the topics' ids up by :data:`SHIFT` (new ones follow) and give them :data:`NAMES`,
    as people would."""
    async with store.session() as session:
        if store.dialect == "postgresql":
            await session.execute(
                text(f"select setval(pg_get_serial_sequence('topics', 'id'), {2 * SHIFT})")
            )
        await session.execute(update(TopicMember).values(topic_id=TopicMember.topic_id + SHIFT))
        await session.execute(update(Topic).values(id=Topic.id + SHIFT))
        topics = await session.scalars(select(Topic).order_by(Topic.id))
        for topic, name in zip(topics, NAMES, strict=False):
            topic.name, topic.named_by_person = name, True


async def snapshot(store: Store, control: Store) -> dict[str, Any]:
    """Everything of ``store``'s workspace a change through a route could touch."""
    async with store.read() as session:
        found: dict[str, Any] = {
            "conversations": sorted(await session.scalars(select(Conversation.id))),
            "labels": sorted(
                (row.conversation_id, row.label, row.by)
                for row in await session.scalars(select(Classification))
            ),
            "topics": sorted(
                (row.id, row.name, row.merged_into) for row in await session.scalars(select(Topic))
            ),
            "members": sorted(
                (row.conversation_id, row.topic_id)
                for row in await session.scalars(select(TopicMember))
            ),
        }
    async with control.read() as session:
        found["roles"] = sorted(
            (row.person_id, row.role)
            for row in await session.scalars(
                select(Membership).where(Membership.workspace == store.workspace)
            )
        )
        found["tokens"] = sorted(
            await session.scalars(
                select(PersonToken.id).where(PersonToken.workspace == store.workspace)
            )
        )
    return found


def body_for(path: str, csrf: str, ids: dict[str, int], theirs: str) -> dict[str, Any]:
    """A request body the route would accept, naming the other workspace's rows."""
    if path.startswith("/api/"):
        return {
            "json": {
                "label": "feature",
                "name": "Renamed by a stranger",
                "into": ids["other_topic"],
                "conversation_ids": [ids["conversation_id"]],
                "emails": ["customer9001@example.com"],
            },
            "headers": {"x-csrf-token": csrf},
        }
    return {
        "data": {
            "csrf_token": csrf,
            "label": "feature",
            "name": "Renamed by a stranger",
            "into": str(ids["other_topic"]),
            "conversation": str(ids["conversation_id"]),
            "confirmed": "1",
            "role": "viewer",
            "email": "newcomer@team.example",
            "since": "30d",
            "workspace": theirs,
        }
    }


def shows_theirs(text: str, *, ids: bool = True) -> list[str]:
    """What of the other workspace ``text`` shows: its topics' names, its customers' addresses
    and, with ``ids``, its conversations' ids and numbers (9001…, 9101…)."""
    pattern = r"customer900\d@|\b9[01]0\d\b" if ids else r"customer900\d@"
    return [name for name in NAMES if name in text] + re.findall(pattern, text)


def filled(path: str, ids: dict[str, int], action: str) -> str:
    path = path.replace("{path:path}", "insights").replace("{rest:path}", "insights")
    path = path.replace("{action}", action)
    return re.sub(r"\{([a-z_]+)\}", lambda m: str(ids[m.group(1)]), path)


@pytest.mark.parametrize("mine", [DEFAULT_WORKSPACE, OTHER])
async def test_a_person_of_one_workspace_never_sees_nor_changes_the_other(
    settings: Settings, mine: str
) -> None:
    theirs = OTHER if mine == DEFAULT_WORKSPACE else DEFAULT_WORKSPACE
    async with running(settings) as (app, people):
        insights = app.state.insights
        await add_workspace(insights, OTHER)
        async with client_of(app) as hooks:
            await seed(hooks, settings, mine, 101)
            await seed(hooks, settings, theirs, 9001)
        other = await insights.workspace(theirs)
        await mark_as_other(other.store)
        await other.analysis.update()  # regrouped now with the names, not in the middle
        # someone of the other workspace only, with a token there
        stranger, _ = await People(people.store, theirs).add(
            "stranger@team.example", Role.viewer, by="test"
        )
        token_id, _ = await People(people.store, theirs).create_token(
            "stranger@team.example", "theirs", by="test"
        )
        async with other.store.read() as session:
            topic_ids = sorted(await session.scalars(select(Topic.id)))
        assert len(topic_ids) >= 2 and min(topic_ids) > SHIFT
        ids = {
            "topic_id": topic_ids[0],
            "other_topic": topic_ids[1],
            "conversation_id": 9001,
            "person_id": stranger,
            "token_id": token_id,
        }
        before = await snapshot(other.store, people.store)

        admin = await person_client(app, People(people.store, mine), "ana@team.example", Role.admin)
        _, api_token = await People(people.store, mine).create_token(
            "ana@team.example", "mine", by="test"
        )
        csrf = await session_csrf(admin)
        for method, path in guarded_routes(app):
            if PERMISSIONS[(method, path)] is None or path.startswith("/ui/logout"):
                continue
            for action in ROUTE_ACTIONS.get(path, ["-"]):
                url = filled(path, ids, action)
                where = f"{method} {url} as an admin of {mine}"
                kwargs = body_for(path, csrf, ids, theirs) if method == "POST" else {}
                answer = await admin.request(method, url, **kwargs)
                assert answer.status_code != 500, where
                if re.search(r"\{(topic_id|conversation_id|person_id|token_id)\}", path):
                    assert answer.status_code == 404, f"{where}: {answer.status_code}"
                # a refusal may repeat the id asked for; nothing else of theirs
                shown = shows_theirs(answer.text, ids=answer.status_code < 400)
                assert not shown, f"{where} shows {shown}"
        # a person's token acts in its own workspace, whatever the request asks
        bearer = {"authorization": f"Bearer {api_token}", "x-deskside-workspace": theirs}
        for path in (
            "/api/insights/conversations",
            "/api/insights/topics",
            "/api/insights/reports",
        ):
            answer = await admin.get(path, headers=bearer)
            assert answer.status_code == 200, path
            assert not shows_theirs(answer.text), path
        # switching to the other workspace is refused
        refused = await admin.post("/ui/workspace", data={"csrf_token": csrf, "workspace": theirs})
        assert refused.status_code == 403
        assert await snapshot(other.store, people.store) == before
        await admin.aclose()
