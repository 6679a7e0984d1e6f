"""The Help Scout commands (connect, mailboxes, import, disconnect) through Typer's runner,
and the web routes of the connection, against the fake Help Scout."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from subprocess import PIPE, STDOUT
from typing import Any

import httpx
import pytest
import typer
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from typer.testing import CliRunner

from deskside.config import Settings
from deskside.insights import audit
from deskside.insights.helpscout import cli as helpscout_cli
from deskside.insights.helpscout.connection import webhook_secrets
from deskside.insights.ingest.backfill import parse_since
from deskside.insights.models import Connection, Conversation, ImportCursor, Mailbox
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, database_url
from deskside.web.helpscout_oauth import CALLBACK_PATH as CALLBACK
from deskside.web.helpscout_oauth import CONNECT_PATH as CONNECT
from deskside.web.roles import Role
from fake_helpscout import FakeHelpScout, approve, generate_dataset, sign_webhook
from fake_http import Received, Reply, unused_port
from test_people import client_of, person_client, running

KEY = Fernet.generate_key().decode()
ADMIN_TOKEN = "admin-token-0123456789"
runner = CliRunner()
app = typer.Typer()
helpscout_cli.register(app)


@pytest.fixture
def helpscout() -> Iterator[FakeHelpScout]:
    with FakeHelpScout(generate_dataset(400, customers=80, seed=5)) as fake:
        yield fake


def write_config(
    path: Path, fake: FakeHelpScout, *, key: str | None = KEY, **helpscout: str
) -> Path:
    table = fake.settings_document(**helpscout)
    lines = ["[insights]", f'database = "sqlite:///{path.parent / "insights.db"}"']
    if key:
        lines.append(f'encryption_key = "{key}"')
    lines.append("[insights.helpscout]")
    lines += [f"{name} = {json.dumps(value)}" for name, value in table.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def query(config: Path, work: Any) -> Any:
    """Run ``work(session)`` on the config's store."""

    async def main() -> Any:
        store = await Store(database_url(f"sqlite:///{config.parent / 'insights.db'}")).open()
        try:
            async with store.session() as session:
                return await work(session)
        finally:
            await store.aclose()

    return asyncio.run(main())


async def count_conversations(session: Any) -> int:
    return int(await session.scalar(select(func.count()).select_from(Conversation)))


def invoke(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input)


def test_client_credentials_connect_select_import_disconnect(
    helpscout: FakeHelpScout, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "deskside.toml", helpscout, mode="client_credentials")
    result = invoke("connect", "helpscout", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert "connected to Help Scout (client_credentials)" in result.output
    assert "Billing" in result.output and "Support" in result.output
    for secret in helpscout.issued_secrets():
        assert secret not in result.output

    result = invoke("mailboxes", "-c", str(config), "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [(m["name"], m["selected"]) for m in listed] == [
        ("Billing", False),
        ("Sales", False),
        ("Support", False),
    ]
    billing = listed[0]["id"]

    result = invoke("mailboxes", "-c", str(config), "--select", "999")
    assert result.exit_code == 2 and "no such mailbox: 999" in result.output
    result = invoke("mailboxes", "-c", str(config), "--select", str(billing))
    assert result.exit_code == 0, result.output
    assert query(config, lambda s: s.scalar(select(Mailbox.id).where(Mailbox.selected))) == billing

    result = invoke("mailboxes", "-c", str(config), "--all")
    assert result.exit_code == 0 and "takes every mailbox" in result.output
    assert query(config, lambda s: s.scalar(select(Mailbox.id).where(Mailbox.selected))) is None
    assert invoke("mailboxes", "-c", str(config), "--select", str(billing)).exit_code == 0

    result = invoke("import", "-c", str(config), "--since", "400d")
    assert result.exit_code == 0, result.output
    since = parse_since("400d")
    expected = helpscout.dataset.matching(since, [billing])
    assert f"imported {len(expected)} conversations" in result.output
    assert query(config, count_conversations) == len(expected)

    result = invoke("import", "-c", str(config), "--since", "400d")
    assert result.exit_code == 0, result.output
    assert "Already imported" in result.output
    result = invoke("import", "-c", str(config), "--since", "400d", "--mailbox", str(billing + 1))
    assert result.exit_code == 0, result.output
    assert query(config, count_conversations) == len(
        helpscout.dataset.matching(since, [billing, billing + 1])
    )

    result = invoke("disconnect", "helpscout", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert "disconnected" in result.output
    assert query(config, lambda s: s.get(Connection, "helpscout")) is None
    result = invoke("import", "-c", str(config), "--since", "400d", "--again")
    assert result.exit_code == 2 and "not connected" in result.output
    result = invoke("mailboxes", "-c", str(config))
    assert result.exit_code == 0 and "Billing" in result.output  # the stored list
    result = invoke("disconnect", "helpscout", "-c", str(config))
    assert result.exit_code == 0 and "was not connected" in result.output


class Browser:
    """Stands in for the user's browser: follows the authorisation URL from a thread."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self._pages: list[httpx.Response] = []

    def open(self, url: str) -> bool:
        def visit() -> None:
            self._pages.append(httpx.get(url, follow_redirects=True, timeout=10))

        thread = threading.Thread(target=visit)
        thread.start()
        self._threads.append(thread)
        return True

    def pages(self) -> list[httpx.Response]:
        """Every page the browser ended on, once it has finished loading them."""
        for thread in self._threads:
            thread.join(timeout=15)
        return self._pages


def test_oauth_connect_through_the_local_listener_with_a_webhook(
    helpscout: FakeHelpScout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpscout.redirect_url = f"http://127.0.0.1:{unused_port()}/insights/helpscout/callback"
    config = write_config(tmp_path / "deskside.toml", helpscout)
    browser = Browser()
    monkeypatch.setattr("webbrowser.open", browser.open)
    result = invoke(
        "connect",
        "helpscout",
        "-c",
        str(config),
        "--webhook-url",
        "https://deskside.example/webhooks/helpscout",
    )
    assert result.exit_code == 0, result.output
    assert "connected to Help Scout (oauth)" in result.output
    (webhook_id,) = helpscout.webhooks
    assert f"webhook {webhook_id} registered" in result.output
    (page,) = browser.pages()
    assert page.status_code == 200 and "connected to Help Scout" in page.text
    assert page.url.path == "/insights/helpscout/callback"

    (webhook,) = helpscout.webhooks.values()
    assert webhook["url"] == "https://deskside.example/webhooks/helpscout"
    assert len(webhook["secret"]) <= 40 and webhook["payloadVersion"] == "V2"
    for secret in [*helpscout.issued_secrets(), webhook["secret"]]:
        assert secret not in result.output
    settings = InsightsSettings.model_validate({"encryption_key": KEY})
    assert query(config, lambda s: webhook_secrets(s, settings)) == [webhook["secret"]]
    connection = query(config, lambda s: s.get(Connection, "helpscout"))
    assert connection.mode == "oauth" and connection.webhook_id == webhook_id

    result = invoke("disconnect", "helpscout", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert "webhook deskside registered is deleted" in result.output
    assert helpscout.webhooks == {}


def test_oauth_denied_in_the_browser(
    helpscout: FakeHelpScout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helpscout.redirect_url = f"http://127.0.0.1:{unused_port()}/cb"
    helpscout.deny = True
    config = write_config(tmp_path / "deskside.toml", helpscout)
    browser = Browser()
    monkeypatch.setattr("webbrowser.open", browser.open)
    result = invoke("connect", "helpscout", "-c", str(config))
    assert result.exit_code == 2, result.output
    assert "did not authorise deskside (access_denied)" in result.output
    (page,) = browser.pages()
    assert page.status_code == 400 and "access_denied" in page.text
    assert helpscout.token_requests() == []


def test_oauth_connect_by_pasting_the_code(helpscout: FakeHelpScout, tmp_path: Path) -> None:
    helpscout.redirect_url = "https://deskside.example/insights/helpscout/callback"
    config = write_config(tmp_path / "deskside.toml", helpscout)
    result = invoke(
        "connect",
        "helpscout",
        "-c",
        str(config),
        "--no-browser",
        input=helpscout.issue_code() + "\n",
    )
    assert result.exit_code == 0, result.output
    assert helpscout.url("/authentication/authorizeClientApplication?") in result.output
    assert "connected to Help Scout (oauth)" in result.output

    forged = f"{helpscout.redirect_url}?code={helpscout.issue_code()}&state=not-ours"
    result = invoke("connect", "helpscout", "-c", str(config), "--no-browser", input=forged + "\n")
    assert result.exit_code == 2
    assert "not started here" in result.output


def test_connect_refuses_without_an_encryption_key(
    helpscout: FakeHelpScout, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "deskside.toml", helpscout, key=None)
    monkeypatch.setattr("webbrowser.open", lambda url: pytest.fail("no browser without a key"))
    result = invoke("connect", "helpscout", "-c", str(config))
    assert result.exit_code == 2
    assert "encryption_key is not set" in result.output
    assert helpscout.token_requests() == []


def test_ctrl_c_during_import_resumes_on_the_next_run(
    helpscout: FakeHelpScout, tmp_path: Path
) -> None:
    """The import runs as a user runs it, in a process of its own, and gets a Ctrl-C (SIGINT)
    mid-way: it stops after the page it was writing, and the next run resumes there."""
    config = write_config(tmp_path / "deskside.toml", helpscout, mode="client_credentials")
    assert invoke("connect", "helpscout", "-c", str(config)).exit_code == 0
    helpscout.page_size = 20
    importing: list[subprocess.Popen[str]] = []
    interrupted = threading.Event()

    def ctrl_c(request: Received) -> Reply | None:
        if request.query.get("page") == ["4"] and not interrupted.is_set():
            interrupted.set()
            importing[0].send_signal(signal.SIGINT)  # as if the user pressed Ctrl-C now
        return None

    helpscout.fault = ctrl_c
    command = [sys.executable, "-m", "deskside", "import", "-c", str(config), "--since", "400d"]
    importing.append(subprocess.Popen(command, stdout=PIPE, stderr=STDOUT, text=True))
    output, _ = importing[0].communicate(timeout=120)
    assert importing[0].returncode == 130, output
    assert "Re-run the same command to resume" in output
    stored = query(config, count_conversations)
    cursor = query(config, lambda s: s.scalar(select(ImportCursor)))
    assert stored == cursor.imported and stored % 20 == 0 and not cursor.finished

    result = invoke("import", "-c", str(config), "--since", "400d")
    assert result.exit_code == 0, result.output
    everything = helpscout.dataset.matching(parse_since("400d"))
    assert f"imported {len(everything) - stored} conversations (resumed)" in result.output
    ids = query(config, lambda s: s.scalars(select(Conversation.id)))
    assert sorted(ids) == sorted(c["id"] for c in everything)


def test_parse_since() -> None:
    now = datetime(2024, 5, 10, 15, 42, 7, tzinfo=UTC)
    assert parse_since("90d", now=now) == datetime(2024, 2, 10, tzinfo=UTC)
    assert parse_since("2w", now=now) == datetime(2024, 4, 26, tzinfo=UTC)
    assert parse_since("12h", now=now) == datetime(2024, 5, 10, 3, tzinfo=UTC)
    assert parse_since("2024-01-31", now=now) == datetime(2024, 1, 31, tzinfo=UTC)
    assert parse_since("2024-01-31T09:30:00+02:00", now=now) == datetime(
        2024, 1, 31, 7, 30, tzinfo=UTC
    )
    for wrong in ("soon", "90x", "2030-01-01"):
        with pytest.raises(ValueError):
            parse_since(wrong, now=now)


def test_the_webhook_signer_matches_help_scouts_vector() -> None:
    assert sign_webhook("asdfasdf", b'{"id":123}') == "7S2+kN8bZsrdAEADJ+yYfWWsf/4="


def web_settings(helpscout: FakeHelpScout, tmp_path: Path, **options: str) -> Settings:
    """The app's settings: an ``[admin] token`` and password, Help Scout as ``options`` say."""
    return Settings.model_validate(
        {
            "sources": {
                "app": {
                    "kind": "sql",
                    "url": f"sqlite:///{tmp_path / 'app.db'}",
                    "query": "select email from users where email in :emails",
                }
            },
            "admin": {"token": ADMIN_TOKEN, "password": "admin-password-0123456789"},
            "insights": {
                "database": f"sqlite:///{tmp_path / 'insights.db'}",
                "encryption_key": KEY,
                "helpscout": helpscout.settings_document(**options),
            },
        }
    )


@pytest.mark.anyio
async def test_web_routes_connect_and_refuse_forged_states(
    helpscout: FakeHelpScout, tmp_path: Path
) -> None:
    async with running(web_settings(helpscout, tmp_path)) as (app, people):
        store = app.state.insights.store
        client = client_of(app)
        assert (await client.get(CONNECT)).status_code == 401
        wrong = {"authorization": "Bearer not-the-token"}
        assert (await client.get(CONNECT, headers=wrong)).status_code == 401
        for role in (Role.editor, Role.admin):
            await people.add(f"{role.name}@team.example", role, by="test")
        editor = await people.create_token("editor@team.example", "ci", by="test")
        refused = await client.get(CONNECT, headers={"authorization": f"Bearer {editor[1]}"})
        assert refused.status_code == 403
        # an admin's API token or session does as well as the [admin] token
        admin = await people.create_token("admin@team.example", "ci", by="test")
        by_token = await client.get(CONNECT, headers={"authorization": f"Bearer {admin[1]}"})
        assert by_token.status_code == 302
        boss = await person_client(app, people, "boss@team.example", Role.admin)
        assert (await boss.get(CONNECT)).status_code == 302
        await boss.aclose()

        started = await client.get(CONNECT, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert started.status_code == 302
        assert started.headers["location"].startswith(helpscout.url("/authentication/"))
        code, state = await asyncio.to_thread(approve, started.headers["location"])

        forged = await client.get(
            CALLBACK, params={"code": helpscout.issue_code(), "state": "forged"}
        )
        assert forged.status_code == 400 and "not started here" in forged.text
        done = await client.get(CALLBACK, params={"code": code, "state": state})
        assert done.status_code == 200 and "connected" in done.text
        again = await client.get(CALLBACK, params={"code": helpscout.issue_code(), "state": state})
        assert again.status_code == 400 and "already used" in again.text
        denied = await client.get(CALLBACK, params={"error": "access_denied"})
        assert denied.status_code == 400
        await client.aclose()
        async with store.session() as session:
            assert (await session.get(Connection, "helpscout")) is not None
            assert len(list(await session.scalars(select(Mailbox)))) == 3
        # the audit says who connected: the admin token that started the authorisation
        admin_actor = "api:token-" + hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()[:8]
        found = await audit.entries(store)
        connected = [(e.actor, e.detail) for e in found if e.action == "helpscout_connect"]
        assert connected == [(admin_actor, "connected (oauth)")]


@pytest.mark.anyio
async def test_connecting_in_the_browser_needs_oauth_mode(
    helpscout: FakeHelpScout, tmp_path: Path
) -> None:
    settings = web_settings(helpscout, tmp_path, mode="client_credentials")
    async with running(settings) as (app, _), client_of(app) as client:
        answer = await client.get(CONNECT, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert answer.status_code == 400 and "deskside connect helpscout" in answer.text
