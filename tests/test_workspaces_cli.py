"""``deskside workspaces add|list|remove`` and ``--workspace`` on the insights commands, run in
this process on SQLite and PostgreSQL: each workspace sees only its own data, an unknown one
is refused, a person joins a second workspace without a new link, and ``forget`` covers every
workspace unless one is named."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text
from typer.testing import CliRunner, Result

from deskside.cli import app as cli_app
from deskside.insights.helpscout.cli import webhook_target
from deskside.insights.helpscout.inbox import Inbox
from deskside.insights.ingest.changes import save_conversations
from deskside.insights.ingest.normalise import conversation_record
from deskside.insights.people import People
from deskside.insights.store import Store, database_url
from deskside.web.guard import token_digest
from fake_helpscout import FakeHelpScout, generate_dataset
from test_insights_connect import write_config
from test_insights_webhooks import conversation

UNKNOWN = "no workspace is called 'nope': `deskside workspaces list`"
WEBHOOKS = "https://deskside.example/webhooks/helpscout"
ANN = 601
"""The customer with a conversation in both workspaces (customer601@example.com)."""


def deskside(url: str, *args: str, stdin: str | None = None, **env: str) -> Result:
    """``deskside ARGS`` in this process, on the insights database ``url`` and no config."""
    return CliRunner().invoke(
        cli_app,
        [*args, "--config", "no-such-config.toml"],
        input=stdin,
        env={"DESKSIDE_DATABASE": url, "COLUMNS": "200", **env},
    )


def listed(url: str) -> list[dict[str, Any]]:
    result = deskside(url, "workspaces", "list", "--json")
    assert result.exit_code == 0, result.output
    found: list[dict[str, Any]] = json.loads(result.output)
    return found


def data_of(url: str, workspace: str) -> bool:
    """Whether workspace's database is there: its SQLite file, or its PostgreSQL schema."""
    if url.startswith("sqlite"):
        path = Path(make_url(url).database or "")
        return path.with_name(f"{path.stem}.{workspace}{path.suffix}").exists()

    async def schemas() -> list[str]:
        store = Store(database_url(url))
        try:
            async with store.read() as session:
                names = await session.scalars(
                    text("select schema_name from information_schema.schemata")
                )
                return list(names)
        finally:
            await store.aclose()

    return f"deskside_{workspace}" in asyncio.run(schemas())


def store_conversations(url: str, workspace: str, *documents: dict[str, Any]) -> None:
    """Save ``documents`` as conversations of ``workspace`` through its own store."""

    async def save() -> None:
        store = await Store(database_url(url), workspace=workspace).open()
        try:
            async with store.session() as session:
                await save_conversations(session, [conversation_record(d) for d in documents])
        finally:
            await store.aclose()

    asyncio.run(save())


async def deliver(url: str, workspace: str, *documents: dict[str, Any]) -> None:
    """Help Scout's ``convo.created`` webhooks for ``documents``, stored in ``workspace``'s
    inbox as the server stores them."""
    store = await Store(database_url(url), workspace=workspace).open()
    inbox = Inbox(store)
    try:
        for document in documents:
            await inbox.accept("convo.created", json.dumps(document).encode())
    finally:
        await inbox.aclose()
        await store.aclose()


def subjects(url: str, *args: str) -> list[str]:
    result = deskside(url, "conversations", "--json", *args)
    assert result.exit_code == 0, result.output
    return sorted(item["subject"] for item in json.loads(result.output))


# ── add, list, remove ────────────────────────────────────────────────────────────────────────


def test_add_list_and_remove_a_workspace(insights_url: str) -> None:
    added = deskside(insights_url, "workspaces", "add", "acme")
    assert added.exit_code == 0, added.output
    assert "/webhooks/helpscout/acme" in added.output
    assert data_of(insights_url, "acme")
    again = deskside(insights_url, "workspaces", "add", "acme")
    assert again.exit_code == 1 and "already" in again.output
    assert deskside(insights_url, "workspaces", "add", "Not A Name").exit_code == 2
    assert listed(insights_url) == [
        {"name": "default", "conversations": 0, "people": 0},
        {"name": "acme", "conversations": 0, "people": 0},
    ]

    default = deskside(insights_url, "workspaces", "remove", "default", "--yes")
    assert default.exit_code == 2 and "cannot be removed" in default.output
    kept = deskside(insights_url, "workspaces", "remove", "acme", stdin="n\n")
    assert kept.exit_code == 1 and "all its data for good" in kept.output
    assert [item["name"] for item in listed(insights_url)] == ["default", "acme"]
    removed = deskside(insights_url, "workspaces", "remove", "acme", stdin="y\n")
    assert removed.exit_code == 0, removed.output
    assert "all its data is deleted" in removed.output
    assert not data_of(insights_url, "acme")
    assert [item["name"] for item in listed(insights_url)] == ["default"]
    gone = deskside(insights_url, "workspaces", "remove", "acme", "--yes")
    assert gone.exit_code == 2 and "no workspace is called 'acme'" in gone.output


# ── --workspace ──────────────────────────────────────────────────────────────────────────────


def test_each_workspace_lists_only_its_own_conversations(insights_url: str) -> None:
    assert deskside(insights_url, "workspaces", "add", "acme").exit_code == 0
    store_conversations(insights_url, "default", conversation(1, subject="Invoice missing"))
    store_conversations(
        insights_url,
        "acme",
        conversation(2, subject="Login loops"),
        conversation(3, subject="Export is slow"),
    )
    assert subjects(insights_url) == ["Invoice missing"]
    assert subjects(insights_url, "--workspace", "acme") == ["Export is slow", "Login loops"]
    assert subjects(insights_url, "-w", "default") == ["Invoice missing"]
    assert [(item["name"], item["conversations"]) for item in listed(insights_url)] == [
        ("default", 1),
        ("acme", 2),
    ]

    for args, env in (
        (["conversations", "--workspace", "nope"], {}),
        (["events"], {"DESKSIDE_WORKSPACE": "nope"}),
        (["users", "list", "-w", "nope"], {}),
        (["reports", "-w", "nope"], {}),
        (["forget", "someone@example.com", "-w", "nope"], {}),
    ):
        refused = deskside(insights_url, *args, **env)
        assert refused.exit_code == 2, (args, refused.output)
        assert UNKNOWN in refused.output, refused.output
    assert not data_of(insights_url, "nope")  # refused before anything was created
    odd = deskside(insights_url, "conversations", "-w", "../Other")
    assert odd.exit_code == 2 and "no workspace is called '../Other'" in odd.output


def test_the_worker_works_through_every_workspace_or_the_one_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'insights.db'}"
    assert deskside(url, "workspaces", "add", "acme").exit_code == 0
    asyncio.run(deliver(url, "default", conversation(11, subject="Invoice missing")))
    asyncio.run(deliver(url, "acme", conversation(12, subject="Login loops")))
    only = deskside(url, "worker", "--drain", "--workspace", "acme")
    assert only.exit_code == 0, only.output
    assert "1 event(s) processed" in only.output
    assert subjects(url) == []
    asyncio.run(deliver(url, "acme", conversation(13, subject="Export is slow")))
    every = deskside(url, "worker", "--drain")
    assert every.exit_code == 0, every.output
    assert "default: 1  acme: 1" in every.output and "2 event(s) processed" in every.output
    assert subjects(url) == ["Invoice missing"]
    assert subjects(url, "-w", "acme") == ["Export is slow", "Login loops"]


def test_a_running_worker_takes_up_a_workspace_added_after_it_started(tmp_path: Path) -> None:
    """``deskside worker`` (no --drain, no --workspace) as a service runs it: a workspace added
    while it runs gets its webhook events applied, and SIGTERM stops it with the counts."""
    url = f"sqlite:///{tmp_path / 'insights.db'}"
    assert deskside(url, "workspaces", "list").exit_code == 0  # the default workspace exists
    command = [sys.executable, "-m", "deskside", "worker", "--database", url]
    worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:

        def applied(*args: str, subject: str) -> None:
            deadline = time.monotonic() + 60
            while subjects(url, *args) != [subject]:
                assert worker.poll() is None, worker.communicate()
                assert time.monotonic() < deadline, f"{subject!r} was never applied"
                time.sleep(0.1)

        asyncio.run(deliver(url, "default", conversation(20, subject="Webhook to the default")))
        applied(subject="Webhook to the default")  # the worker runs, and has looked
        assert deskside(url, "workspaces", "add", "later").exit_code == 0
        asyncio.run(deliver(url, "later", conversation(21, subject="Webhook after start")))
        applied("-w", "later", subject="Webhook after start")
        worker.send_signal(signal.SIGTERM)
        output, errors = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, errors
    assert "default: 1  later: 1" in output and "2 event(s) processed" in output


def test_a_person_of_one_workspace_joins_another_without_a_new_link(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'insights.db'}"
    assert deskside(url, "workspaces", "add", "acme").exit_code == 0
    first = deskside(url, "users", "add", "Pat@Team.example", "--role", "admin")
    assert first.exit_code == 0, first.output
    assert re.search(r"/ui/invitation\?token=[\w-]{40,}", first.output)
    joined = deskside(url, "users", "add", "pat@team.example", "--role", "viewer", "-w", "acme")
    assert joined.exit_code == 0, joined.output
    assert "joined the workspace acme as viewer" in joined.output
    assert "invitation" not in joined.output
    newcomer = deskside(url, "users", "add", "lee@team.example", "--workspace", "acme")
    assert re.search(r"/ui/invitation\?token=[\w-]{40,}", newcomer.output), newcomer.output

    roles = deskside(url, "users", "list", "--json", "--workspace", "acme")
    assert [(p["email"], p["role"]) for p in json.loads(roles.output)] == [
        ("lee@team.example", "viewer"),
        ("pat@team.example", "viewer"),
    ]
    created = deskside(url, "tokens", "create", "pat@team.example", "-w", "acme")
    assert created.exit_code == 0, created.output
    token = re.search(r"^dsk_[\w-]{40,}$", created.output, re.M)
    assert token, created.output
    assert "pat@team.example" not in deskside(url, "tokens", "list").output
    assert "pat@team.example" in deskside(url, "tokens", "list", "-w", "acme").output

    async def acting() -> tuple[str, str] | None:
        store = Store(database_url(url))
        try:
            member = await People(store).token_member(token_digest(token[0]))
        finally:
            await store.aclose()
        return (member.workspace, member.role.name) if member is not None else None

    assert asyncio.run(acting()) == ("acme", "viewer")  # the token acts in acme, as a viewer
    people = {item["name"]: item["people"] for item in listed(url)}
    assert people == {"default": 1, "acme": 2}


@pytest.mark.parametrize("named", [True, False], ids=["one workspace", "every workspace"])
def test_forget_covers_every_workspace_unless_one_is_named(insights_url: str, named: bool) -> None:
    assert deskside(insights_url, "workspaces", "add", "acme").exit_code == 0
    for workspace, number in (("default", 21), ("acme", 22)):
        store_conversations(insights_url, workspace, conversation(number, customer_id=ANN))
        store_conversations(insights_url, workspace, conversation(number + 10, customer_id=700))
    address = f"customer{ANN}@example.com"
    args = ["--workspace", "acme"] if named else []

    result = deskside(insights_url, "forget", address.upper(), *args)

    assert result.exit_code == 0, result.output
    assert f"erased {address} in workspace acme" in result.output
    numbers = {
        workspace: sorted(
            item["number"]
            for item in json.loads(
                deskside(insights_url, "conversations", "--json", "-w", workspace).output
            )
        )
        for workspace in ("default", "acme")
    }
    if named:
        assert "in workspace default" not in result.output
        assert numbers == {"default": [121, 131], "acme": [132]}
    else:
        assert f"erased {address} in workspace default" in result.output
        assert numbers == {"default": [131], "acme": [132]}
    audit = deskside(insights_url, "erasures", "--json", "-w", "acme")
    assert [row["action"] for row in json.loads(audit.output)] == ["forget"]


# ── Help Scout ───────────────────────────────────────────────────────────────────────────────


def test_a_workspace_connects_its_own_help_scout_account(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'insights.db'}"
    with FakeHelpScout(generate_dataset(30, customers=10, seed=7)) as helpscout:
        config = write_config(tmp_path / "deskside.toml", helpscout, mode="client_credentials")
        assert deskside(url, "workspaces", "add", "acme").exit_code == 0

        def run(*args: str) -> Result:
            return CliRunner().invoke(cli_app, [*args, "-c", str(config)], env={"COLUMNS": "200"})

        other = run("connect", "helpscout", "-w", "acme", "--webhook-url", WEBHOOKS + "/beta")
        assert other.exit_code == 2 and "the workspace 'beta'" in other.output
        connected = run("connect", "helpscout", "-w", "acme", "--webhook-url", WEBHOOKS)
        assert connected.exit_code == 0, connected.output
        assert "import --since 90d --workspace acme" in connected.output
        assert [hook["url"] for hook in helpscout.webhooks.values()] == [WEBHOOKS + "/acme"]

        imported = run("import", "--since", "400d", "--workspace", "acme")
        assert imported.exit_code == 0, imported.output
        assert json.loads(run("mailboxes", "--json").output) == []
        assert json.loads(run("mailboxes", "--json", "-w", "acme").output) != []
        assert subjects(url) == []
        assert len(subjects(url, "-w", "acme")) == 30


def test_the_webhook_url_gets_the_workspaces_path() -> None:
    base = "https://deskside.example"
    for given, workspace, wanted in (
        (base, "default", base + "/webhooks/helpscout"),
        (base + "/", "acme", base + "/webhooks/helpscout/acme"),
        (base + "/webhooks/helpscout", "acme", base + "/webhooks/helpscout/acme"),
        (base + "/webhooks/helpscout/acme", "acme", base + "/webhooks/helpscout/acme"),
        (base + "/in/webhooks/helpscout/", "acme", base + "/in/webhooks/helpscout/acme"),
        (base + "/proxy/hs?k=1", "acme", base + "/proxy/hs?k=1"),
    ):
        assert webhook_target(given, workspace) == wanted, given
