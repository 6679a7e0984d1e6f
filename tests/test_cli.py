"""The ``deskside`` command, run in-process (and ``demo`` as a real process)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deskside.cli import app
from deskside.helpdesks import protocol_classes
from fake_stripe import FakeStripe

ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = ROOT / "examples" / "demo" / "deskside.toml"

runner = CliRunner()


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo's database in a temporary data directory, and its secrets in the environment."""
    monkeypatch.setenv("DESKSIDE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HELPSCOUT_SECRET", "hs-secret")
    monkeypatch.setenv("THERETHERE_SECRET", "tt-secret")
    return tmp_path


def test_sign_matches_an_independent_signer(tmp_path: Path) -> None:
    body = b'{"customer": {"email": "owner@acme.example"}}'
    path = tmp_path / "body.json"
    path.write_bytes(body)
    result = runner.invoke(app, ["sign", "--desk", "helpscout", "--secret", "s3cret", str(path)])
    assert result.exit_code == 0, result.output
    expected = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha1).digest()).decode()
    assert result.stdout.strip() == expected

    result = runner.invoke(app, ["sign", "--desk", "therethere", "--secret", "s3cret"], input=body)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()


def test_sign_rejects_an_unknown_desk() -> None:
    result = runner.invoke(app, ["sign", "--desk", "zendesk", "--secret", "x"], input=b"{}")
    assert result.exit_code == 2
    assert "helpscout" in result.output


def test_preview_raw_prints_what_each_helpdesk_receives(demo_env: Path) -> None:
    result = runner.invoke(app, ["preview", "owner@acme.example", "--demo", "--raw"])
    assert result.exit_code == 0, result.output
    bodies = json.loads(result.stdout)
    assert set(bodies) == {*protocol_classes(), "card"}  # every registered helpdesk
    assert "<h4>Acme HR</h4>" in bodies["helpscout"]["html"]
    rows = {row["name"]: row for row in bodies["therethere"]["data"]}
    assert rows["Renews"]["type"] == "date"


def test_preview_one_desk_and_unknown_customer(demo_env: Path) -> None:
    result = runner.invoke(
        app, ["preview", "nobody@example.com", "--demo", "--raw", "--desk", "therethere"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"data": []}


def test_preview_shows_sources_and_markup(demo_env: Path) -> None:
    result = runner.invoke(app, ["preview", "pat@initech.example,pat@initrode.example", "--demo"])
    assert result.exit_code == 0, result.output
    assert "2 record(s)" in result.stdout
    assert "Initrode" in result.stdout and "Initech" in result.stdout


def test_check_connects_and_looks_up(demo_env: Path) -> None:
    runner.invoke(app, ["preview", "x@example.com", "--demo", "--raw"])  # creates the database
    os.environ["DESKSIDE_DEMO_DATABASE_URL"] = f"sqlite:///{demo_env / 'demo.sqlite3'}"
    try:
        result = runner.invoke(
            app, ["check", "-c", str(DEMO_CONFIG), "--email", "owner@acme.example"]
        )
    finally:
        del os.environ["DESKSIDE_DEMO_DATABASE_URL"]
    assert result.exit_code == 0, result.output
    assert "valid" in result.stdout
    assert "1 record(s)" in result.stdout
    assert "hs-secret" not in result.stdout  # secrets are counted, never shown


def test_check_fails_when_a_source_is_unreachable(tmp_path: Path) -> None:
    config = tmp_path / "deskside.toml"
    config.write_text(
        '[sources.app]\nkind = "sql"\nurl = "postgresql://nobody@127.0.0.1:1/x"\n'
        'query = "select 1 where :email = :email"\n'
    )
    result = runner.invoke(app, ["check", "-c", str(config)])
    assert result.exit_code == 1, result.output
    assert "app" in result.stdout


def test_bad_config_is_reported_with_file_line_and_fix(tmp_path: Path) -> None:
    config = tmp_path / "deskside.toml"
    config.write_text(
        "[sources.app]\n"
        'kind = "sql"\n'
        'url = "sqlite:///x.db"\n'
        'qurey = "select 1"\n'
        "\n"
        "[helpdesks.helpscout]\n"
        'secret = "env:DESKSIDE_TEST_UNSET_VARIABLE"\n'
    )
    for command in (["check", "-c", str(config)], ["serve", "-c", str(config)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        output = " ".join(result.stderr.split())
        assert f"{config}:4: sources.app.qurey: unknown key: did you mean `query`?" in output
        assert f"{config}:1: sources.app.query: required: add `query = …`" in output
        assert "DESKSIDE_TEST_UNSET_VARIABLE is not set" in output
        assert f"{config}:7: helpdesks.helpscout.secret" in output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_serves_and_prints_working_signed_requests(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "DESKSIDE_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("HELPSCOUT_SECRET", None)
    env.pop("THERETHERE_SECRET", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "deskside", "demo", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        commands: list[str] = []
        titles: list[str] = []
        deadline = time.monotonic() + 30
        for line in process.stdout:
            if line.startswith("# "):
                titles.append(re.split(r"[:(]", line[2:])[0].strip())
            if line.startswith("curl "):
                commands.append(line.strip())
            if "Uvicorn running" in line or time.monotonic() > deadline:
                break
        assert len(commands) == len(titles), (titles, commands)
        answers = [_run_curl(command) for command in commands]
        assert answers[-1].json() == {"status": "stored"}
        # the webhook lands in the data directory's database, where the command looks
        deadline = time.monotonic() + 60
        while True:
            listed = CliRunner().invoke(app, ["conversations", "--json"], env=env)
            assert listed.exit_code == 0, listed.output
            if json.loads(listed.output) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert [answer.status_code for answer in answers] == [200] * len(commands)
    [conversation] = json.loads(listed.output)
    assert conversation["subject"] == "Export to CSV fails"
    assert conversation["customer"] == "owner@acme.example"
    documents = [a.json() if "json" in a.headers["content-type"] else a.text for a in answers]
    by_title = dict(zip(titles, documents, strict=True))  # a helpdesk may answer a page
    # Listed as on the Setup page: the established helpdesks first, the generic endpoint last
    # (then the webhook)
    assert titles[:3] == ["Help Scout", "There There", "Helper"]
    assert titles.index("Generic JSON") == len(titles) - 2, titles
    helpscout, therethere, helper = (
        by_title["Help Scout"],
        by_title["There There"],
        by_title["Helper"],
    )
    plain, card = by_title["Plain"], by_title["Generic JSON"]
    identity = by_title["Helper widget identity, as your app's backend asks for it"]
    assert "<h4>Acme HR</h4>" in helpscout["html"]
    assert "42 / 50" in helpscout["html"]
    assert {"name": "Status", "value": "Starter · Owner · Trial expired", "type": "markdown"} in (
        therethere["data"]
    )
    assert helper["customer"]["value"] == 24900
    assert [c["key"] for c in plain["cards"]] == ["account", "billing"]
    assert all(c["components"] for c in plain["cards"])
    assert card["cards"][0]["title"] == "Acme HR"
    assert identity["email"] == "owner@acme.example"
    assert identity["customerMetadata"]["value"] == 24900


def _run_curl(command: str) -> httpx.Response:
    """Send the request a printed curl command describes, with httpx."""
    words = shlex.split(command)
    method = words[words.index("-X") + 1]
    url = next(word for word in words if word.startswith("http://"))
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = words[words.index("--data-binary") + 1].encode() if "--data-binary" in words else b""
    deadline = time.monotonic() + 90  # a busy machine may take long to start the server
    while time.monotonic() < deadline:
        try:
            return httpx.request(method, url, headers=headers, content=body, timeout=30)
        except httpx.ConnectError:
            time.sleep(0.1)
    raise AssertionError(f"the server never answered at {url}")


def test_demo_takes_revenue_from_stripe_when_it_has_a_key(
    demo_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeStripe() as fake:
        customer = fake.add_customer("owner@acme.example", name="Olivia")
        fake.add_subscription(customer, fake.price(9900, nickname="Stripe Pro"), quantity=2)
        monkeypatch.setenv("STRIPE_API_KEY", fake.api_key)
        monkeypatch.setenv("STRIPE_API_BASE", fake.url)
        result = runner.invoke(app, ["preview", "owner@acme.example", "--demo", "--raw"])
    assert result.exit_code == 0, result.output
    bodies = json.loads(result.stdout)
    assert bodies["helper"]["customer"]["value"] == 19800  # Stripe's MRR, not the app's 24900
    assert "Stripe Pro (active)" in bodies["helpscout"]["html"]
    assert "$198.00" in bodies["helpscout"]["html"]


def test_demo_without_stripe_takes_revenue_from_its_database(demo_env: Path) -> None:
    result = runner.invoke(app, ["preview", "owner@acme.example", "--demo", "--raw"])
    assert result.exit_code == 0, result.output
    bodies = json.loads(result.stdout)
    assert bodies["helper"]["customer"]["value"] == 24900
    assert "Stripe Pro" not in bodies["helpscout"]["html"]


def test_sign_knows_every_helpdesk() -> None:
    query = b"email=user%40example.com&timestamp=1672534800"
    result = runner.invoke(app, ["sign", "--desk", "helper", "--secret", "testSecret"], input=query)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Bearer AMeZkbMvdAoagGE8kMKukMyvrl+OSOWAjzXteDEjoxY="
    body = b'{"cardKeys":["plan"]}'
    for desk in ("plain", "card"):
        result = runner.invoke(app, ["sign", "--desk", desk, "--secret", "k"], input=body)
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_serve_starts_on_a_valid_config_and_answers(tmp_path: Path) -> None:
    database = tmp_path / "app.sqlite3"
    database.write_bytes(b"")
    config = tmp_path / "deskside.toml"
    config.write_text(
        f'[sources.app]\nkind = "sql"\nurl = "sqlite:///{database}"\n'
        "query = \"select 'Acme' as company where :email = 'a@b.example'\"\n"
        '[card]\ntitle = "{{ app.company }}"\n'
        '[helpdesks.therethere]\nsecret = "env:DESKSIDE_TEST_TT"\n'
    )
    port = _free_port()
    env = {**os.environ, "DESKSIDE_TEST_TT": "tt-secret"}
    process = subprocess.Popen(
        [sys.executable, "-m", "deskside", "serve", "-c", str(config), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        body = b'{"email":"a@b.example"}'
        signature = hmac.new(b"tt-secret", body, hashlib.sha256).hexdigest()
        answer = _run_curl(
            f"curl -X POST http://127.0.0.1:{port}/therethere "
            f"-H 'X-There-There-Signature: {signature}' --data-binary '{body.decode()}'"
        )
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert answer.status_code == 200, stderr
    assert answer.json() == {"data": [{"name": "Account", "value": "Acme", "type": "markdown"}]}
    assert health.json()["status"] == "ok"
    assert process.returncode in (0, -15)
    assert "tt-secret" not in stderr


# ── Help ────────────────────────────────────────────────────────────────────────────────────


def _command_paths() -> list[list[str]]:
    """Every command and sub-command, as the words that invoke it."""
    import typer.main

    paths: list[list[str]] = [[]]
    pending = [([], typer.main.get_command(app))]
    while pending:
        words, group = pending.pop()
        for name, command in getattr(group, "commands", {}).items():
            paths.append([*words, name])
            pending.append(([*words, name], command))
    return paths


@pytest.mark.parametrize("words", _command_paths(), ids=lambda words: " ".join(words) or "-")
def test_help_shows_no_value_for_flags(words: list[str]) -> None:
    result = runner.invoke(app, [*words, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "Default:  " not in result.output  # a [table] name eaten by Rich markup
    assert "``" not in result.output


def test_help_names_config_tables_and_every_helpdesk() -> None:
    from deskside.protocols import PROTOCOLS

    serve = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert "Default: [server] host." in serve.output
    assert "Default: [server] port." in serve.output
    preview = " ".join(
        runner.invoke(app, ["preview", "--help"], env={"COLUMNS": "200"}).output.split()
    )
    for protocol in PROTOCOLS.values():
        assert protocol.kind in preview


def test_conversations_refuse_a_sqlite_database_in_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "typo"
    result = runner.invoke(app, ["conversations", "--database", f"sqlite:///{missing}/x.db"])
    assert result.exit_code == 2, result.output
    assert str(missing) in " ".join(result.stderr.split())
    assert "does not exist" in result.stderr
    assert not missing.exists()
