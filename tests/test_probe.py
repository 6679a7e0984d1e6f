"""``deskside probe`` against deskside itself (over real HTTP) and against broken endpoints."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from deskside.cli import app
from deskside.config import load_settings
from deskside.demo import DEMO_DATABASE_ENV, create_demo_database, demo_config_path
from deskside.probe import probe
from deskside.server import create_app
from fake_http import FakeHTTPServer, Reply, unused_port

SECRETS = {
    "helpscout": "hs-probe",
    "therethere": "tt-probe",
    "helper": "hp-probe",
    "plain": "pl-probe",
    "card": "cd-probe",
}
ENVS = {
    "helpscout": "HELPSCOUT_SECRET",
    "therethere": "THERETHERE_SECRET",
    "helper": "HELPER_SECRET",
    "plain": "PLAIN_SECRET",
    "card": "CARD_SECRET",
}
runner = CliRunner()


@pytest.fixture(scope="module")
def deskside_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo served by uvicorn on a real socket, as a helpdesk would reach it."""
    database = tmp_path_factory.mktemp("probe") / "demo.sqlite3"
    url = f"sqlite:///{database}"
    asyncio.run(create_demo_database(url))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DEMO_DATABASE_ENV, url)
        patch.setenv("HELPER_IDENTITY_TOKEN", "identity-token")
        for kind, env in ENVS.items():
            patch.setenv(env, SECRETS[kind])
        settings = load_settings(demo_config_path())
    port = unused_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # generous: a busy machine starts it slowly
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.parametrize("kind", list(SECRETS))
def test_deskside_passes_as_every_helpdesk(deskside_url: str, kind: str) -> None:
    result = runner.invoke(
        app,
        [
            "probe",
            f"{deskside_url}/{kind}",
            "--desk",
            kind,
            "--secret",
            SECRETS[kind],
            "--email",
            "owner@acme.example",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "PASS" in result.stdout


@pytest.mark.parametrize("kind", list(SECRETS))
def test_deskside_refuses_forgeries(deskside_url: str, kind: str) -> None:
    command = ["probe", f"{deskside_url}/{kind}", "--desk", kind, "--secret", SECRETS[kind]]
    result = runner.invoke(app, [*command, "--bad-signature"])
    assert result.exit_code == 0, result.output
    assert "refused the forged signature with 401" in result.stdout


def test_wrong_secret_is_diagnosed(deskside_url: str) -> None:
    command = ["probe", f"{deskside_url}/helpscout", "--desk", "helpscout", "--secret", "nope"]
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    assert "answered 401" in result.stdout
    assert "is the secret the one configured" in result.stdout


@pytest.fixture
def broken() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer() as server:
        yield server


@pytest.mark.anyio
async def test_an_endpoint_accepting_any_signature_fails(broken: FakeHTTPServer) -> None:
    broken.route("/therethere", Reply.json({"data": []}))
    report = await probe(broken.url("/therethere"), "therethere", "s", bad_signature=True)
    assert not report.ok
    assert "ACCEPTED a forged signature" in report.findings[-1].message


@pytest.mark.anyio
async def test_a_slow_endpoint_fails(broken: FakeHTTPServer) -> None:
    broken.route("/therethere", Reply.json({"data": []}, delay=10))
    started = time.monotonic()
    report = await probe(broken.url("/therethere"), "therethere", "s", timeout_seconds=0.3)
    assert time.monotonic() - started < 5  # did not wait for the answer, however busy the machine
    assert not report.ok
    assert "no answer within 0.3 s" in report.findings[0].message


@pytest.mark.anyio
async def test_a_non_json_answer_fails(broken: FakeHTTPServer) -> None:
    broken.route("/helpscout", Reply.text("<html>oops</html>", content_type="text/html"))
    report = await probe(broken.url("/helpscout"), "helpscout", "s")
    assert not report.ok
    messages = [finding.message for finding in report.findings if not finding.ok]
    assert any("Content-Type is 'text/html'" in m for m in messages)
    assert any("not JSON" in m for m in messages)


@pytest.mark.anyio
async def test_a_missing_plain_key_fails(broken: FakeHTTPServer) -> None:
    answer = {"cards": [{"key": "account", "timeToLiveSeconds": 60, "components": None}]}
    broken.route("/plain", Reply.json(answer))
    report = await probe(broken.url("/plain"), "plain", "s", card_keys=["account", "billing"])
    assert not report.ok
    assert any("billing missing" in f.message for f in report.findings if not f.ok)
    sent = broken.received("/plain")[0].json()
    assert sent["cardKeys"] == ["account", "billing"]


@pytest.mark.anyio
async def test_malformed_helpscout_html_and_plain_components_fail(broken: FakeHTTPServer) -> None:
    broken.route("/helpscout", Reply.json({"html": "<div><b>Pro</div>"}))
    report = await probe(broken.url("/helpscout"), "helpscout", "s")
    assert any("not well-formed" in f.message for f in report.findings if not f.ok)

    bad = {"key": "a", "components": [{"componentText": {"text": "x"}, "componentDivider": {}}]}
    broken.route("/plain", Reply.json({"cards": [bad]}))
    report = await probe(broken.url("/plain"), "plain", "s", card_keys=["a"])
    assert any("exactly one component key" in f.message for f in report.findings if not f.ok)


@pytest.mark.anyio
async def test_there_there_row_types_are_checked(broken: FakeHTTPServer) -> None:
    rows = [{"name": "Seats", "value": "42", "type": "numeric"}]
    broken.route("/therethere", Reply.json({"data": rows}))
    report = await probe(broken.url("/therethere"), "therethere", "s")
    assert any("must be a JSON number" in f.message for f in report.findings if not f.ok)


@pytest.mark.anyio
async def test_the_request_is_the_helpdesks(broken: FakeHTTPServer) -> None:
    broken.route("/helper", Reply.json({"success": True}))
    report = await probe(broken.url("/helper"), "helper", "testSecret", email="a+b@x.example")
    assert report.ok, report.findings
    received = broken.received("/helper")[0]
    assert received.method == "GET"
    assert received.query["email"] == ["a+b@x.example"]
    assert received.headers["authorization"].startswith("Bearer ")


def test_unreachable_endpoint_is_reported(tmp_path: Path) -> None:
    port = unused_port()
    command = ["probe", f"http://127.0.0.1:{port}/x", "--desk", "card", "--secret", "s"]
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    assert "could not reach" in result.stdout
