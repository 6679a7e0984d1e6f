"""What every sidebar benchmark shares: paths, the data, signed requests, the machine."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import importlib.util
import inspect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent  # benchmarks/
ROOT = HERE.parent
RESULTS = HERE / "results"
COMMAND = ".venv/bin/python benchmarks/run.py"

CUSTOMERS = 100_000
SECRET = "deskside-benchmark-secret"  # noqa: S105 - a fixed secret for local load only
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/deskside_bench"
CORES = os.cpu_count() or 1


@dataclass
class Result:
    """One measured scenario."""

    scenario: str
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    rss_mb: float
    """Peak resident memory of the busiest worker process while the scenario ran."""
    cpu_ms: float
    """CPU time the server's processes used per request (user + system, all of them; the
    database's own CPU time is not included)."""
    other_cpu: float
    """% of all cores that other programs (not the benchmark, its server or PostgreSQL) used
    while it was measured: anything well above 0 took CPU from it, and its figures are low."""


# ── Set-up ─────────────────────────────────────────────────────────────────────────────────


def ensure_tools(assume_yes: bool, wrk: bool = True) -> None:
    """The ``bench`` extra in this interpreter, and (when ``wrk``) wrk on the PATH, asking
    before apt-get."""
    if not all(importlib.util.find_spec(m) for m in ("gunicorn", "psycopg", "psutil")):
        print("Installing the bench extra: pip install -e '.[bench]'", flush=True)
        pip = [sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"]
        subprocess.run(pip, check=True)
        importlib.invalidate_caches()
    if not wrk or shutil.which("wrk"):
        return
    print("wrk (the HTTP load generator, a Debian package) is not installed.")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    install = [*sudo, "apt-get", "install", "-y", "wrk"]
    if not assume_yes and not (
        sys.stdin.isatty() and input(f"Run `{' '.join(install)}` now? [y/N] ").lower() == "y"
    ):
        sys.exit(f"Install it with `{' '.join(install)}` (or run with --yes), then run again.")
    subprocess.run([*sudo, "apt-get", "update", "-q"], check=True)
    subprocess.run(install, check=True)


def ensure_database(url: str, reload: bool) -> str:
    """Create the database if missing and load the demo data with CUSTOMERS generated
    customers unless it already holds them; returns PostgreSQL's version."""
    import psycopg
    from psycopg import sql
    from sqlalchemy import make_url

    from deskside import demo

    parsed = make_url(url).set(drivername="postgresql")
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)
    url = parsed.render_as_string(hide_password=False)
    try:
        psycopg.connect(admin, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        where = parsed.render_as_string(hide_password=True)
        sys.exit(f"Cannot reach PostgreSQL at {where} (see --database-url): {exc}".strip())
    with psycopg.connect(admin, autocommit=True) as connection:
        name = parsed.database or "deskside_bench"
        exists = "select 1 from pg_database where datname = %s"
        if not connection.execute(exists, (name,)).fetchone():
            connection.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    # The data as the current demo.py builds it: a changed demo.py reloads it.
    fingerprint = hashlib.sha256(inspect.getsource(demo).encode()).hexdigest()[:16]
    marker = f"deskside-bench {CUSTOMERS} {fingerprint}"
    with psycopg.connect(url, autocommit=True) as connection:
        try:
            row = connection.execute("select obj_description('users'::regclass)").fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
        if reload or row is None or row[0] != marker:
            print(f"Loading the demo data with {CUSTOMERS:,} customers into {name} …", flush=True)
            started = time.perf_counter()
            asyncio.run(demo.create_demo_database(url, extra_customers=CUSTOMERS))
            # The demo query finds addresses by lower(email): demo.py indexes it since d9b6bf0.
            connection.execute(
                "create index if not exists ix_users_email_lower on users (lower(email))"
            )
            connection.execute(sql.SQL("comment on table users is {}").format(marker))
            connection.execute("vacuum analyze")
            print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)
        connection.execute("select count(*) from users join companies on companies.id = company_id")
        version = connection.execute("show server_version").fetchone()
    return str(version[0]) if version else "?"


def signed(n: int) -> str:
    """A Help Scout request for bulk customer ``n``: "<signature>\\t<body>", signed here with
    plain hmac (independently of deskside's own signing code)."""
    email = f"customer{n}@bulk.example"
    document = {
        "ticket": {"id": 700000 + n, "number": 4000 + n, "subject": "Question about my plan"},
        "customer": {"id": 900000 + n, "fname": "Customer", "lname": str(n), "email": email,
                     "emails": [email]},
        "user": {"id": 9, "fname": "Ann", "lname": "Agent", "role": "owner", "convRedirect": 0},
        "mailbox": {"id": 87654, "email": "help@hr-demo.example"},
    }  # fmt: skip
    body = json.dumps(document, separators=(",", ":"))
    digest = hmac.new(SECRET.encode(), body.encode(), hashlib.sha1).digest()
    return f"{base64.b64encode(digest).decode()}\t{body}\n"


def company_of(line: str) -> str:
    """The company name the demo data gives the customer of a signed request line."""
    found = re.search(r"customer(\d+)@", line)
    assert found, line
    return f"Company {found.group(1)}"


def demo_config() -> str:
    """The demo config's sources, lookup and card, with the Help Scout helpdesk only."""
    from deskside.demo import demo_config_path

    demo, found, _ = demo_config_path().read_text().partition("\n[helpdesks.")
    assert found, "the demo config has no [helpdesks.*] table"
    return demo + '\n[helpdesks.helpscout]\nsecret = "env:HELPSCOUT_SECRET"\n'


def demo_deadline_ms() -> int:
    """The ``[server] deadline_ms`` the demo config sets."""
    found = re.search(r"(?m)^deadline_ms = (\d+)", demo_config())
    assert found, "the demo config sets no [server] deadline_ms"
    return int(found.group(1))


def machine(postgres: str, commit: str | None = None) -> dict[str, Any]:
    """The machine, the versions, the commit measured (``commit``, else the working tree's
    ``git describe --dirty``), and the load average now."""
    import psutil

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    wrk_version = ""
    if shutil.which("wrk"):
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    commit = (
        commit
        or subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    )
    return {
        "cpu": model.group(1) if model else platform.processor(),
        "cores": CORES,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "wrk": wrk_version.split()[1] if wrk_version else "not installed",
        "deskside_commit": commit,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def asgi_call(
    app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
) -> Callable[[], Awaitable[None]]:
    """One POST of ``body`` to ``app`` at ``path``, called in-process (no server, no socket),
    with a fresh scope each time as a server makes; fails unless the answer is 200."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200, message

    async def call() -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": list(headers),
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        await app(scope, receive, send)

    return call
