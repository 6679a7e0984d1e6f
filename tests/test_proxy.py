"""Behind a reverse proxy: ``[server] trusted_proxies`` decides whose forwarded headers are
believed, ``[server] public_url`` what address people are shown. Through the real app (httpx
as the proxy's peer) and through ``deskside serve`` itself, where uvicorn must not believe the
headers on its own."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest

from deskside.config import Settings, load_settings
from deskside.errors import ConfigError
from deskside.server import create_app
from helpers import demo_config_text, demo_settings, parse_html
from test_web import ADMIN, NO_INSIGHTS, PASSWORD, csrf_of

pytestmark = pytest.mark.anyio

PROXY = ("127.0.0.1", 51000)
"""The peer a request comes from when it comes through the proxy."""
FORWARDED = {
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "deskside.example.com",
    "X-Forwarded-For": "203.0.113.7",
}
"""What nginx in front of deskside adds for a helpdesk calling https://deskside.example.com."""


def proxied_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, server: str
) -> Settings:
    """The demo config with the web UI on and ``server`` lines in ``[server]``."""
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    replace = {"[server]\n": ADMIN + server, **NO_INSIGHTS}
    return demo_settings(monkeypatch, tmp_path, database, replace=replace)


@asynccontextmanager
async def behind(
    settings: Settings, peer: tuple[str, int] = PROXY, base_url: str = "http://127.0.0.1:8000"
) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, asked from ``peer`` at ``base_url`` (what the proxy connects to)."""
    app = create_app(settings)
    transport = httpx.ASGITransport(app, client=peer)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=base_url) as client,
    ):
        yield client


async def setup_page(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str, str]:
    """Log in and open Setup as a browser behind the proxy: every request with ``headers``, and
    every cookie sent back, Secure ones too (the browser is on HTTPS, the proxy's hop is not).
    The page's text, and the session cookie as set."""
    jar: dict[str, str] = {}

    def sent() -> dict[str, str]:
        cookie = "; ".join(f"{name}={value}" for name, value in jar.items())
        return {**headers, "Cookie": cookie} if cookie else headers

    form = await client.get("/ui/login", headers=sent())
    jar.update(form.cookies)
    data = {"csrf_token": csrf_of(form.text), "password": PASSWORD, "next": ""}
    login = await client.post("/ui/login", data=data, headers=sent())
    assert login.status_code == 303, login.text
    jar.update(login.cookies)
    page = await client.get("/ui/setup", headers=sent())
    assert page.status_code == 200, page.headers
    session = next(c for c in login.headers.get_list("set-cookie") if "deskside_session=" in c)
    return parse_html(page.text).text(), session


@contextmanager
def access_clients(caplog: pytest.LogCaptureFixture) -> Iterator[list[str | None]]:
    """The client address of each access line logged inside the block."""
    clients: list[str | None] = []
    with caplog.at_level(logging.INFO, logger="deskside.access"):
        yield clients
    clients += [getattr(r, "client", None) for r in caplog.records if r.name == "deskside.access"]


# ── The config ───────────────────────────────────────────────────────────────────────────────


def config_with(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "deskside.toml"
    path.write_text(demo_config_text(replace={"[server]\n": "[server]\n" + server}))
    return path


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("https://deskside.example.com/", "https://deskside.example.com"),
        ("HTTPS://deskside.example.com:8443//", "https://deskside.example.com:8443"),
        ("https://example.com/tools/deskside/", "https://example.com/tools/deskside"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_public_url_is_kept_without_its_trailing_slash(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, written: str, kept: str
) -> None:
    settings = demo_settings(
        monkeypatch,
        tmp_path,
        database,
        replace={"[server]\n": f'[server]\npublic_url = "{written}"\n'},
    )
    assert settings.server.public_url == kept


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("deskside.example.com", "http(s) URL"),
        ("ftp://deskside.example.com", "http(s) URL"),
        ("https://", "http(s) URL"),
        ("https://deskside.example.com/?x=1", "without a query"),
        ("https://deskside.example.com/#top", "fragment"),
        ("https://admin:pw@deskside.example.com", "no user name or password"),
        ("https://deskside.example.com:99999", "Port"),
        ("https://deskside.example.com/a b", "no spaces"),
    ],
)
def test_a_public_url_that_is_no_base_url_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, written: str, said: str
) -> None:
    monkeypatch.setenv("DESKSIDE_DEMO_DATABASE_URL", "sqlite:///unused.db")
    path = config_with(tmp_path, f'public_url = "{written}"\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    [problem] = [p for p in refused.value.problems if ": server.public_url: " in p]
    line = path.read_text().splitlines().index(f'public_url = "{written}"') + 1
    assert f"{path}:{line}: server.public_url: " in problem
    assert said in problem
    assert "pw@" not in problem


def test_trusted_proxies_are_addresses_or_ranges(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = demo_settings(
        monkeypatch,
        tmp_path,
        database,
        replace={"[server]\n": '[server]\ntrusted_proxies = ["127.0.0.1", "10.0.0.0/8", "::1"]\n'},
    )
    assert [str(n) for n in settings.server.trusted_proxies] == [
        "127.0.0.1/32",
        "10.0.0.0/8",
        "::1/128",
    ]
    path = config_with(tmp_path, 'trusted_proxies = ["nginx.internal"]\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(path)
    assert any("server.trusted_proxies" in p and "network" in p for p in refused.value.problems)


# ── Forwarded headers ────────────────────────────────────────────────────────────────────────


async def test_a_trusted_proxy_forwards_scheme_host_and_client(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = proxied_settings(
        monkeypatch, tmp_path, database, 'trusted_proxies = ["127.0.0.1"]\n'
    )
    with access_clients(caplog) as clients:
        async with behind(settings) as client:
            text, cookie = await setup_page(client, FORWARDED)
    assert "https://deskside.example.com/helpscout" in text
    assert "https://deskside.example.com/helper/identity" in text
    assert "127.0.0.1" not in text
    assert "secure" in cookie.lower()  # the browser is on HTTPS
    assert clients and set(clients) == {"203.0.113.7"}


@pytest.mark.parametrize(
    ("trusted", "peer"),
    [
        ("", PROXY),  # the default: no proxy is trusted
        ('trusted_proxies = ["10.0.0.0/8", "::1"]\n', PROXY),
        ('trusted_proxies = ["127.0.0.1"]\n', ("198.51.100.20", 51000)),
    ],
)
async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: str,
    caplog: pytest.LogCaptureFixture,
    trusted: str,
    peer: tuple[str, int],
) -> None:
    settings = proxied_settings(monkeypatch, tmp_path, database, trusted)
    with access_clients(caplog) as clients:
        async with behind(settings, peer) as client:
            text, cookie = await setup_page(client, FORWARDED)
    assert "http://127.0.0.1:8000/helpscout" in text
    assert "deskside.example.com" not in text
    assert "secure" not in cookie.lower()
    assert clients and set(clients) == {peer[0]}


@pytest.mark.parametrize(
    "host", ["deskside.example.com/evil", "a b.example", "deskside.example.com@evil", "'"]
)
async def test_a_forwarded_host_that_is_no_host_is_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, host: str
) -> None:
    settings = proxied_settings(
        monkeypatch, tmp_path, database, 'trusted_proxies = ["127.0.0.1"]\n'
    )
    async with behind(settings) as client:
        text, _ = await setup_page(client, {**FORWARDED, "X-Forwarded-Host": host})
    assert "https://127.0.0.1:8000/helpscout" in text  # the scheme still forwarded
    assert "evil" not in text


async def test_the_nearest_proxys_host_counts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = proxied_settings(
        monkeypatch, tmp_path, database, 'trusted_proxies = ["127.0.0.1"]\n'
    )
    async with behind(settings) as client:
        forwarded = {**FORWARDED, "X-Forwarded-Host": "spoofed.example, deskside.example.com:8443"}
        text, _ = await setup_page(client, forwarded)
    assert "https://deskside.example.com:8443/helpscout" in text
    assert "spoofed" not in text


async def test_public_url_wins_over_any_header(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    server = 'public_url = "https://support-tools.example.org/deskside/"\n'
    server += 'trusted_proxies = ["127.0.0.1"]\n'
    settings = proxied_settings(monkeypatch, tmp_path, database, server)
    async with behind(settings) as client:
        text, _ = await setup_page(client, FORWARDED)
    assert "https://support-tools.example.org/deskside/helpscout" in text
    assert "deskside.example.com" not in text


# ── deskside serve ───────────────────────────────────────────────────────────────────────────


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("trusted", "shown"),
    [
        ("", "http://127.0.0.1:{port}/helpscout"),
        ('trusted_proxies = ["127.0.0.1"]\n', "https://deskside.example.com/helpscout"),
    ],
)
async def test_serve_believes_forwarded_headers_only_from_trusted_proxies(
    tmp_path: Path, database: str, trusted: str, shown: str
) -> None:
    """uvicorn believes ``X-Forwarded-*`` from 127.0.0.1 by default: ``serve`` turns that off,
    so only ``trusted_proxies`` decides."""
    config = tmp_path / "deskside.toml"
    config.write_text(demo_config_text(replace={"[server]\n": ADMIN + trusted, **NO_INSIGHTS}))
    secrets = ("HELPSCOUT", "THERETHERE", "HELPER", "PLAIN", "CARD")
    env = {
        **os.environ,
        "DESKSIDE_DEMO_DATABASE_URL": database,
        "DESKSIDE_ADMIN_PASSWORD": PASSWORD,
        "HELPER_IDENTITY_TOKEN": "identity-test-token",
        **{f"{desk}_SECRET": f"{desk.lower()}-test-secret" for desk in secrets},
    }
    port = _free_port()
    command = [sys.executable, "-m", "deskside", "serve", "-c", str(config), "--port", str(port)]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:  # until the server answers
                try:
                    await client.get("/healthz")
                    break
                except httpx.TransportError:
                    assert process.returncode is None, "deskside serve exited"
                    assert time.monotonic() < deadline, "deskside serve never answered"
                    await asyncio.sleep(0.1)
            text, _ = await setup_page(client, FORWARDED)
    finally:
        process.terminate()
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert shown.format(port=port) in text, stderr.decode()
