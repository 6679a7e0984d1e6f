"""People in the insights store on SQLite and PostgreSQL, and the ``deskside users`` and
``deskside tokens`` commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deskside.cli import app as cli_app
from deskside.insights.people import People, PersonError
from deskside.insights.store import Store, database_url
from deskside.web.guard import token_digest
from deskside.web.roles import Role

pytestmark = pytest.mark.anyio


async def test_people_on_sqlite_and_postgresql(insights_url: str) -> None:
    store = await Store(database_url(insights_url)).open()
    try:
        people = People(store)
        _, token = await people.add("Sam@Team.example", Role.editor, by="test")
        with pytest.raises(PersonError, match="already"):
            await people.add("sam@team.example", Role.viewer, by="test")
        newer = await people.invite_again("sam@team.example", by="test")
        assert await people.invitation(token) is None  # the older link stops
        member = await people.accept(newer, "scrypt$hash")
        assert member is not None and (member.email, member.role) == (
            "sam@team.example",
            Role.editor,
        )
        assert await people.accept(newer, "scrypt$other") is None
        login = await people.login_of("SAM@team.example")
        assert login is not None and login[1] == "scrypt$hash"
        token_id, api_token = await people.create_token("sam@team.example", "ci", by="test")
        found = await people.token_member(token_digest(api_token))
        assert found is not None and found.id == member.id
        await people.remove("sam@team.example", by="test")
        assert await people.member(member.id) is None
        assert await people.token_member(token_digest(api_token)) is None
        with pytest.raises(PersonError):
            await people.revoke_token(token_id, by="test")
    finally:
        await store.aclose()


# ── The commands ─────────────────────────────────────────────────────────────────────────────


def test_users_and_tokens_commands(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"DESKSIDE_DATABASE": f"sqlite:///{tmp_path / 'insights.db'}", "COLUMNS": "200"}
    config = ["--config", str(tmp_path / "none.toml")]
    added = runner.invoke(
        cli_app, ["users", "add", "Pat@Team.example", "--role", "editor", *config], env=env
    )
    assert added.exit_code == 0, added.output
    link = re.search(r"http://127\.0\.0\.1:8000/ui/invitation\?token=[\w-]{40,}", added.output)
    assert link, added.output
    again = runner.invoke(cli_app, ["users", "add", "pat@team.example", *config], env=env)
    assert again.exit_code == 1 and "already" in again.output
    wrong = runner.invoke(cli_app, ["users", "add", "x@team.example", "--role", "boss", *config])
    assert wrong.exit_code == 2
    role = runner.invoke(
        cli_app, ["users", "set-role", "pat@team.example", "admin", *config], env=env
    )
    assert role.exit_code == 0, role.output
    listed = runner.invoke(cli_app, ["users", "list", "--json", *config], env=env)
    assert '"role": "admin"' in listed.output and '"invited": true' in listed.output
    created = runner.invoke(cli_app, ["tokens", "create", "pat@team.example", *config], env=env)
    assert created.exit_code == 0 and re.search(r"^dsk_[\w-]{40,}$", created.output, re.M)
    tokens = runner.invoke(cli_app, ["tokens", "list", *config], env=env)
    assert "pat@team.example" in tokens.output and "dsk_" not in tokens.output
    revoked = runner.invoke(cli_app, ["tokens", "revoke", "1", *config], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert runner.invoke(cli_app, ["tokens", "revoke", "1", *config], env=env).exit_code == 1
    removed = runner.invoke(cli_app, ["users", "remove", "pat@team.example", *config], env=env)
    assert removed.exit_code == 0
    audit = runner.invoke(cli_app, ["users", "audit", "--json", *config], env=env)
    assert [row["action"] for row in json.loads(audit.output)] == [
        "person_removed",
        "token_revoked",
        "token_created",
        "role_changed",
        "person_added",
    ]
    erasures = runner.invoke(cli_app, ["erasures", "--json", *config], env=env)
    assert json.loads(erasures.output) == []
