"""Shared fixtures: real databases when the machine has them, a clear skip when it does not;
and a check over the whole run that no log line shows a test customer's address or subject.

Set ``DESKSIDE_REQUIRE_SERVICES=1`` (``.ci/run`` does) to turn those skips into failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

# pytest-xdist starts its test processes with COLUMNS=80 and LINES=24; a Rich console created
# while they are set keeps that width for good, whatever COLUMNS a test later gives a command.
# Without them a test process sizes output as a single-process run does.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)
# The test command installs the optional sentence encoder so that its own tests run
# (test_insights_encoder); everything else tests the classifier of the default install.
os.environ["DESKSIDE_ENCODER"] = "off"

from deskside.sources.sql import async_url
from fake_helpscout import private_patterns
from services import PrivatePostgres, PrivateRedis, postgres_binaries, require

pytest_plugins = ["pytester"]  # test_privacy_logs runs a small test session of its own

POSTGRES_URL = os.environ.get(
    "DESKSIDE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
# The demo config reads it, as `deskside demo` sets it: whichever test loads the config first.
os.environ.setdefault("HELPSCOUT_WEBHOOK_SECRET", "helpscout-webhook-test-secret")
MYSQL_URL = os.environ.get("DESKSIDE_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _missing(reason: str) -> None:
    """Skip the test for ``reason``; fail it under ``DESKSIDE_REQUIRE_SERVICES=1``."""
    if os.environ.get("DESKSIDE_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def _unavailable(what: str, url: str, exc: BaseException) -> None:
    _missing(
        f"{what} is not reachable at {make_url(url).render_as_string()} ({type(exc).__name__}); "
        f"start it or point the DESKSIDE_TEST_* URL at one"
    )


async def _admin(url: str, statement: str) -> None:
    engine = create_async_engine(async_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


def _scratch_database(what: str, server_url: str) -> Iterator[str]:
    """A new, empty database on the server at ``server_url``, dropped afterwards."""
    name = f"deskside_test_{secrets.token_hex(4)}"
    try:
        asyncio.run(_admin(server_url, f"create database {name}"))
    except Exception as exc:
        _unavailable(what, server_url, exc)
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(server_url, f"drop database {name}"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A scratch PostgreSQL database URL (plain ``postgresql://`` form)."""
    yield from _scratch_database("PostgreSQL", POSTGRES_URL)


@pytest.fixture(scope="session")
def mysql_url() -> Iterator[str]:
    """A scratch MariaDB/MySQL database URL (plain ``mysql://`` form)."""
    yield from _scratch_database("MariaDB/MySQL", MYSQL_URL)


# Each parallel test process (pytest-xdist's gw0, gw1, …) empties a Redis database of its own.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
REDIS_URL = os.environ.get("DESKSIDE_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{15 - _WORKER % 16}")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """An emptied Redis database (number 15, 14, … by test process) for one test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        _unavailable("Redis", REDIS_URL, exc)
    try:
        yield REDIS_URL
    finally:
        with contextlib.suppress(redis.RedisError):
            client.flushdb()
        client.close()


@pytest.fixture(scope="session")
def template_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo database, built once per run."""
    from helpers import make_demo_database

    path = tmp_path_factory.mktemp("demo") / "demo.db"
    make_demo_database(path)
    return path


@pytest.fixture
def database(template_database: Path, tmp_path: Path) -> str:
    """A fresh copy of the demo database for each test (tests may add rows)."""
    path = tmp_path / "demo.db"
    shutil.copyfile(template_database, path)
    return f"sqlite:///{path}"


@pytest.fixture(autouse=True)
def _data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing a test runs writes into the real user data directory."""
    monkeypatch.setenv("DESKSIDE_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture
def fresh_postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for this test alone."""
    yield from _scratch_database("PostgreSQL", POSTGRES_URL)


@pytest.fixture(params=["sqlite", "postgresql"])
def insights_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty insights database URL: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'insights.db'}"
    return str(request.getfixturevalue("fresh_postgres_url"))


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this test's own, which the test may stop and start."""
    binaries = postgres_binaries()
    require("PostgreSQL", binaries is not None)
    assert binaries is not None
    server = PrivatePostgres(binaries)
    try:
        server.create()
        yield server
    finally:
        server.remove()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis server of this test's own, which the test may stop and start."""
    require("Redis", shutil.which("redis-server") is not None)
    server = PrivateRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# ── A real browser, for the *_e2e tests ──────────────────────────────────────────────────────

CHROMIUM = os.environ.get("DESKSIDE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
"""What this machine needs: no sandbox as root, and no calls home (the network is closed)."""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (PyPI ``playwright``; its own browsers
    are never downloaded), for one test module; ``$DESKSIDE_CHROMIUM`` may point at another.
    Skips, naming what is missing, without either (fails under DESKSIDE_REQUIRE_SERVICES=1)."""
    has_playwright = importlib.util.find_spec("playwright") is not None
    has_chromium = Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None
    if not (has_playwright and has_chromium):
        missing = [] if has_playwright else ["Playwright (pip install playwright)"]
        missing += [] if has_chromium else [f"Chromium at {CHROMIUM} (apt-get install chromium)"]
        _missing(f"a real browser needs {' and '.join(missing)}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def chromium_page(chromium: Any) -> Iterator[Any]:
    """A page in a fresh browser context (no cookies); fails the test on any dialog (an
    ``alert`` would mean injected script ran), script error or Content-Security-Policy
    violation."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    opened = context.new_page()
    problems: list[str] = []
    opened.on(
        "dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
    )
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))

    def console(message: Any) -> None:
        if "Content Security Policy" in message.text:
            problems.append(f"console: {message.text}")

    opened.on("console", console)
    yield opened
    context.close()
    assert problems == [], problems


# ── No private data in any log line ───────────────────────────────────────────────────────────

PRIVATE_IN_LOGS = re.compile(
    "|".join(
        [
            *private_patterns(),  # the fake Help Scout's customers and subjects
            r"\bcustomer\d+@example\.com\b",  # test_insights_webhooks.conversation()
            re.escape("Export to CSV fails"),  # its subject, and the demo webhook's
            r"[\w.+-]+@privacy\.example\b",  # addresses made to be looked for
        ]
    )
)
"""Test customers' addresses and subjects: a log line that shows one fails the run."""
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class _PrivateLogLines(logging.Handler):
    """On the root logger for the whole run: keeps each log line (message, exception and
    extra fields, as deskside's JSON lines show them) that matches :data:`PRIVATE_IN_LOGS`,
    with its logger and the test that was running."""

    def __init__(self) -> None:
        super().__init__()
        self.test = "(before the first test)"
        self.found: list[tuple[str, str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = logging.Formatter("%(levelname)s %(message)s").format(record)
        except Exception:  # arguments that do not fit the message: what would be written
            line = f"{record.levelname} {record.msg!r} {record.args!r}"
        extra = {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}
        if extra:
            line += f" {extra}"
        if PRIVATE_IN_LOGS.search(line):
            self.found.append((record.name, self.test, line))

    def report(self) -> str:
        lines = [
            f"{len(self.found)} log line(s) show a test customer's address or subject "
            "(masked here); log an id or a count instead:"
        ]
        for logger, test, line in self.found[:20]:
            first, *rest = line.splitlines()  # a traceback: the lines with what was found
            shown = [first, *(part for part in rest if PRIVATE_IN_LOGS.search(part))]
            lines.append(f"  logger {logger}, during {test}:")
            lines += [f"    {_masked(part)[:300]}" for part in shown]
        return "\n".join(lines)


def _masked(line: str) -> str:
    def mask(found: re.Match[str]) -> str:
        text = found.group()
        local, at, domain = text.partition("@")
        return f"{local[:1]}***@{domain}" if at else f"{text[:1]}*** (a subject)"

    return PRIVATE_IN_LOGS.sub(mask, line)


@pytest.fixture(scope="session", autouse=True)
def _private_log_lines() -> Iterator[_PrivateLogLines]:
    """Fails the run (an error at the teardown of each test process's last test) when any log
    line showed a test customer's address or subject."""
    handler = _PrivateLogLines()
    logging.getLogger().addHandler(handler)
    yield handler
    logging.getLogger().removeHandler(handler)
    if handler.found:
        pytest.fail(handler.report(), pytrace=False)


@pytest.fixture(autouse=True)
def _log_lines_name_their_test(
    request: pytest.FixtureRequest, _private_log_lines: _PrivateLogLines
) -> None:
    _private_log_lines.test = request.node.nodeid
    root = logging.getLogger()
    if _private_log_lines not in root.handlers:  # a test set up logging anew (dictConfig)
        root.addHandler(_private_log_lines)
