"""Forgetting a customer's cached answers: the admin endpoint and ``deskside cache clear``."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import uvicorn
from typer.testing import CliRunner

from deskside.cli import app as cli
from deskside.config import Settings
from deskside.server import create_app
from fake_http import unused_port
from helpers import demo_settings, helpscout_request, make_demo_database, post_helpscout, serve

pytestmark = pytest.mark.anyio

ADMIN = "admin-token-for-tests"
runner = CliRunner()


def with_cache(cache: str, admin: bool = True) -> dict[str, dict[str, str]]:
    top = f'cache = "{cache}"\n' + (f'[admin]\ntoken = "{ADMIN}"\n\n' if admin else "")
    return {"replace": {"[server]\n": f"{top}[server]\n"}}


def set_plan(database: str, plan: str) -> None:
    with sqlite3.connect(database.removeprefix("sqlite:///")) as connection:
        connection.execute("update companies set plan = ? where name = 'Acme HR'", (plan,))


@pytest.fixture
def database(tmp_path: Path) -> str:
    return make_demo_database(tmp_path / "demo.sqlite3")


async def test_clearing_a_customer_shows_their_new_plan(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database, **with_cache("memory"))
    async with serve(settings) as client:
        before = await post_helpscout(client, helpscout_request("owner@acme.example"))
        set_plan(database, "Enterprise")
        cached = await post_helpscout(client, helpscout_request("owner@acme.example"))
        cleared = await client.post(
            "/admin/cache/clear",
            json={"email": " Owner@Acme.example "},
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        after = await post_helpscout(client, helpscout_request("owner@acme.example"))
    assert 'badge blue">Pro<' in before.json()["html"]
    assert 'badge blue">Pro<' in cached.json()["html"]
    assert cleared.status_code == 200
    assert cleared.json() == {"email": "owner@acme.example", "dropped": 1}
    assert 'badge blue">Enterprise<' in after.json()["html"]


async def test_the_admin_endpoint_wants_its_token_and_an_address(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database, **with_cache("memory"))
    async with serve(settings) as client:
        wrong = await client.post(
            "/admin/cache/clear", json={"email": "a@b.io"}, headers={"Authorization": "Bearer x"}
        )
        missing = await client.post("/admin/cache/clear", json={"email": "a@b.io"})
        bad = await client.post(
            "/admin/cache/clear", json={"email": 7}, headers={"Authorization": f"Bearer {ADMIN}"}
        )
    assert wrong.status_code == missing.status_code == 401
    assert bad.status_code == 400


async def test_without_an_admin_token_there_is_no_admin_endpoint(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database, **with_cache("memory", admin=False))
    async with serve(settings) as client:
        response = await client.post("/admin/cache/clear", json={"email": "a@b.io"})
    assert response.status_code == 404


def test_cache_clear_empties_a_shared_redis_cache(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database, **with_cache(redis_url))

    async def look_up() -> None:
        async with serve(settings) as client:
            await post_helpscout(client, helpscout_request("owner@acme.example"))

    asyncio.run(look_up())
    keys = redis.Redis.from_url(redis_url).keys("deskside:v1:app*")
    assert len(keys) == 1

    result = runner.invoke(
        cli, ["cache", "clear", "owner@acme.example", "-c", str(tmp_path / "deskside.toml")]
    )
    assert result.exit_code == 0, result.output
    assert "dropped 1 cached answer(s) about owner@acme.example" in result.stdout
    assert redis.Redis.from_url(redis_url).keys("deskside:v1:app*") == []


def test_cache_clear_of_an_in_process_cache_needs_the_server(tmp_path: Path) -> None:
    config = tmp_path / "deskside.toml"
    config.write_text(
        '[sources.app]\nkind = "sql"\nurl = "sqlite:///x.db"\nquery = "select :email"\n'
    )
    result = runner.invoke(cli, ["cache", "clear", "a@b.io", "-c", str(config)])
    assert result.exit_code == 2
    assert "--url" in result.stderr


@pytest.fixture
def running_server(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Settings]]:
    settings = demo_settings(monkeypatch, tmp_path, database, **with_cache("memory"))
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
    yield f"http://127.0.0.1:{port}", settings
    server.should_exit = True
    thread.join(timeout=10)


def test_cache_clear_through_a_running_server(
    running_server: tuple[str, Settings], tmp_path: Path
) -> None:
    url, _settings = running_server
    config = str(tmp_path / "deskside.toml")
    result = runner.invoke(
        cli, ["cache", "clear", "owner@acme.example", "-c", config, "--url", url]
    )
    assert result.exit_code == 0, result.output
    assert "dropped 0 cached answer(s)" in result.stdout

    wrong = runner.invoke(
        cli, ["cache", "clear", "owner@acme.example", "-c", config, "--url", url, "--token", "no"]
    )
    assert wrong.exit_code == 2
    assert "answered 401" in wrong.stderr


async def test_answers_from_cached_data_are_reused_only_for_the_same_question(
    database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain asks different card keys for the same cached customer: each gets its own cards."""
    from helpers import as_body, therethere_signature

    settings = demo_settings(monkeypatch, tmp_path, database, **with_cache("memory"))
    secret = "plain-test-secret"

    async def plain(keys: list[str]) -> list[str]:
        body = as_body({"cardKeys": keys, "customer": {"email": "owner@acme.example"}})
        headers = {"Plain-Request-Signature": therethere_signature(secret, body)}
        response = await client.post("/plain", content=body, headers=headers)
        return [card["key"] for card in response.json()["cards"]]

    async with serve(settings) as client:
        assert await plain(["account"]) == ["account"]  # fetched
        assert await plain(["account"]) == ["account"]  # cached data, answer reused
        assert await plain(["billing", "account"]) == ["billing", "account"]
        first = await post_helpscout(client, helpscout_request("owner@acme.example"))
        second = await post_helpscout(client, helpscout_request("owner@acme.example"))
    assert first.content == second.content
