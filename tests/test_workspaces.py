"""Workspaces kept apart where the data lives: each one's rows are in a database of its own
(a SQLite file beside ``[insights] database``, or a PostgreSQL schema), a webhook sent to
``/webhooks/helpscout/<workspace>`` lands in that workspace only, with that workspace's own
secret, and removing a workspace removes its data for good. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from deskside.insights import DEFAULT_WORKSPACE, audit
from deskside.insights.models import Conversation, Customer, Membership
from deskside.insights.people import People
from deskside.insights.privacy import erasure
from deskside.insights.store import Store, database_url
from deskside.insights.workspaces import UnknownWorkspace, Workspaces, check_name
from deskside.web.roles import Role
from helpers import add_workspace, helpscout_signature, serve
from test_insights_webhooks import SECRET, conversation, insights_settings

pytestmark = pytest.mark.anyio

ACME_SECRET = "acme-webhook-secret"


async def conversations_in(store: Store) -> set[int]:
    async with store.read() as session:
        return set(await session.scalars(select(Conversation.id)))


async def until(found: object, seconds: float = 30) -> None:
    """Poll ``found()`` (a coroutine function) until it is true."""
    deadline = time.monotonic() + seconds
    while not await found():  # type: ignore[operator]
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("name", ["", "Acme", "1acme", "acme_eu", "a" * 31, "../x", "default "])
def test_a_workspace_name_is_lower_case_letters_digits_and_hyphens(name: str) -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        check_name(name)


async def test_two_workspaces_keep_their_rows_apart(insights_url: str) -> None:
    control = await Store(database_url(insights_url)).open()
    workspaces = Workspaces(control)
    try:
        assert await workspaces.add("acme")
        assert not await workspaces.add("acme")  # there already
        assert await workspaces.names() == [DEFAULT_WORKSPACE, "acme"]
        acme = await workspaces.store("acme").open()
        try:
            async with control.session() as session:
                session.add(Conversation(id=1, subject="Default's own"))
            async with acme.session() as session:  # the same id, another account
                session.add(Conversation(id=1, subject="Acme's own"))
                session.add(Conversation(id=2, subject="Acme only"))
            async with control.read() as session:
                assert list(await session.scalars(select(Conversation.subject))) == [
                    "Default's own"
                ]
            assert await conversations_in(acme) == {1, 2}
        finally:
            await acme.aclose()
    finally:
        await control.aclose()


async def test_removing_a_workspace_deletes_its_data_and_its_roles(insights_url: str) -> None:
    control = await Store(database_url(insights_url)).open()
    workspaces = Workspaces(control)
    try:
        await workspaces.add("acme")
        acme = await workspaces.store("acme").open()
        async with acme.session() as session:
            session.add(Customer(id=7, email="cora@customer.example"))
        await acme.aclose()
        people = People(control, "acme")
        person, token = await people.add("ana@team.example", Role.editor, by="cli")
        assert token is not None  # a new person: invited
        await People(control).add("ana@team.example", Role.viewer, by="cli")  # joins default

        assert await workspaces.remove("acme")
        assert await workspaces.names() == [DEFAULT_WORKSPACE]
        with pytest.raises(ValueError, match="default workspace"):
            await workspaces.remove(DEFAULT_WORKSPACE)
        async with control.read() as session:
            roles = await session.scalars(
                select(Membership.workspace).where(Membership.person_id == person)
            )
            assert list(roles) == [DEFAULT_WORKSPACE]  # still a person of the default one
        if control.dialect == "postgresql":
            async with control.read() as session:
                schemas = await session.scalar(
                    text("select count(*) from pg_namespace where nspname = 'deskside_acme'")
                )
            assert schemas == 0
        else:
            assert not list(Path(str(control.engine.url.database)).parent.glob("insights.acme*"))
        # added again, it starts empty
        await workspaces.add("acme")
        again = await workspaces.store("acme").open()
        async with again.read() as session:
            assert await session.scalar(select(func.count()).select_from(Customer)) == 0
        await again.aclose()
    finally:
        await control.aclose()


async def test_a_webhook_lands_in_its_workspace_only_with_that_workspaces_secret(
    tmp_path: Path, database: str, insights_url: str
) -> None:
    own_secret = f'[insights.workspaces.acme.helpscout]\nwebhook_secret = "{ACME_SECRET}"\n'
    settings = insights_settings(tmp_path, database, insights_url, own_secret)
    async with serve(settings) as client:
        insights = client._transport.app.state.insights  # type: ignore[attr-defined]
        acme = await add_workspace(insights, "acme")

        async def deliver_to(path: str, number: int, secret: str) -> int:
            body = json.dumps(conversation(number)).encode()
            headers = {
                "Content-Type": "application/json",
                "X-HelpScout-Event": "convo.created",
                "X-HelpScout-Signature": helpscout_signature(secret, body),
            }
            return (await client.post(path, content=body, headers=headers)).status_code

        assert await deliver_to("/webhooks/helpscout/acme", 3001, SECRET) == 401
        assert await deliver_to("/webhooks/helpscout/acme", 3001, ACME_SECRET) == 200
        assert await deliver_to("/webhooks/helpscout", 3002, SECRET) == 200
        assert await deliver_to("/webhooks/helpscout/nowhere", 3003, SECRET) == 404

        async def both_stored() -> bool:
            return await conversations_in(acme.store) == {3001} and await conversations_in(
                insights.store
            ) == {3002}

        await until(both_stored)
        await insights.workspaces.remove("acme")
        with pytest.raises(UnknownWorkspace):
            await insights.workspace("nowhere")


async def test_a_workspaces_audit_holds_its_own_changes_and_those_of_its_people(
    insights_url: str,
) -> None:
    control = await Store(database_url(insights_url)).open()
    workspaces = Workspaces(control)
    try:
        await workspaces.add("acme")
        acme = await workspaces.store("acme").open()
        await erasure.forget(acme, ["cora@customer.example"], by="cli")
        await People(control, "acme").add("ana@team.example", Role.editor, by="cli")
        await People(control).add("bo@team.example", Role.viewer, by="cli")

        seen = await audit.workspace_entries(acme, control)
        assert [(e.action, e.workspace) for e in seen] == [
            ("person_added", "acme"),
            ("forget", "acme"),
        ]
        default = await audit.workspace_entries(control, control)
        assert [(e.action, e.workspace) for e in default] == [("person_added", "default")]
        await acme.aclose()
    finally:
        await control.aclose()
