"""How fast a sidebar-only deskside starts and how lean it stays, on this machine:

    .venv/bin/python benchmarks/startup.py

The config: a SQL source on a SQLite file (2,000 customers) and the five helpdesks (Help Scout,
There There, Helper, Plain, generic), no ``[insights]``. Measured:

1. ``deskside --help`` and ``deskside sign``: wall and CPU time (median of ``--runs``);
2. ``deskside serve`` from start to the first 200 on ``/readyz``: wall time and the CPU time
   the server used until then (median of 3);
3. the server's resident memory (RSS) after 10,000 signed requests, each of the 2,000
   customers asked through every helpdesk in turn (psutil when the ``bench`` extra is
   installed, else ``/proc``);
4. the modules a process that serves this config loads: whether scikit-learn, SciPy, NumPy,
   lxml or alembic are among them;
5. ``deskside serve --workers 2`` from start to the first 200 on ``/readyz`` while another
   program keeps every core busy (a burner that stops by itself), then 15 s of polling: how
   many workers uvicorn's supervisor replaced meanwhile.

Every command runs with its bytecode cached, as an installed package has it (in a temporary
``PYTHONPYCACHEPREFIX``, warmed up first). Prints a table and the floors (PASS/MISS) and writes
``benchmarks/results/startup.json``. Requests are signed here with plain ``hmac``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import platform
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sidebar.servers import free_port, stop_group

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "startup.json"
SECRET = "deskside-startup-secret"  # noqa: S105 - a fixed secret for local load only
CUSTOMERS = 2_000
REQUESTS = 10_000
CONCURRENCY = 8
BURN_SECONDS = 120  # the CPU burner's upper bound; it is stopped as soon as it is not needed
STABLE_SECONDS = 15
BUSY_GIVE_UP_SECONDS = 60

# Floors
HELP_SECONDS = 0.5
SIGN_SECONDS = 0.5
READY_SECONDS = 1.5
RSS_MB = 100.0
BUSY_SERVE_SECONDS = 10.0
INSIGHTS_STACK = ("sklearn", "scipy", "numpy", "lxml", "alembic")

CONFIG = """
[sources.app]
kind = "sql"
url = "env:DESKSIDE_STARTUP_DATABASE_URL"
query = "select name, email, plan, mrr_cents from customers where lower(email) in :emails"

[card]
title = "{{ app.name }}"

[[card.badges]]
text = "{{ app.plan }}"

[[card.fields]]
label = "MRR"
type = "currency"
value = "app.mrr_cents / 100"

[helpdesks.helpscout]
secret = "env:DESKSIDE_STARTUP_SECRET"

[helpdesks.therethere]
secret = "env:DESKSIDE_STARTUP_SECRET"

[helpdesks.helper]
secret = "env:DESKSIDE_STARTUP_SECRET"

[helpdesks.plain]
secret = "env:DESKSIDE_STARTUP_SECRET"

[helpdesks.card]
secret = "env:DESKSIDE_STARTUP_SECRET"
"""

MODULES = """
import asyncio, json, sys
from deskside.config import load_settings
from deskside.lookup import Lookup
from deskside.server import create_app


async def main():
    service = create_app(load_settings(sys.argv[1])).state.service
    try:
        await service.answer(Lookup(emails=["customer1@startup.example"]))
    finally:
        await service.aclose()


asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""
"""Builds the app for the config and runs a lookup, as a serving process does, then closes its
sources: an open SQLite connection's thread would keep the process from exiting."""

BURNER = """
import time
stop = time.monotonic() + float(__import__("sys").argv[1])
while time.monotonic() < stop:
    pass
"""


def deskside_command() -> list[str]:
    """The ``deskside`` console script next to this Python, as users run it."""
    script = Path(sys.executable).parent / "deskside"
    return [str(script)] if script.exists() else [sys.executable, "-m", "deskside"]


def make_database(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        connection.execute(
            "create table customers (email text, name text, plan text, mrr_cents int)"
        )
        connection.executemany(
            "insert into customers values (?, ?, ?, ?)",
            [
                (f"customer{n}@startup.example", f"Customer {n}", "pro", 4900 + n)
                for n in range(CUSTOMERS)
            ],
        )
        connection.execute("create index by_email on customers (lower(email))")
    return f"sqlite:///{path}"


# ── Requests, signed here ─────────────────────────────────────────────────────────────────────


def _hex256(body: bytes) -> str:
    return hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def _b64(body: bytes, digest: str) -> str:
    return base64.b64encode(hmac.new(SECRET.encode(), body, digest).digest()).decode()


def signed_request(n: int) -> tuple[str, str, bytes, dict[str, str]]:
    """Request ``n`` (method, path with query, body, headers), for customer ``n % CUSTOMERS``
    through each helpdesk in turn; Helper's carries the current time, as Helper sends it."""
    email = f"customer{n % CUSTOMERS}@startup.example"
    desk = (n + n // CUSTOMERS) % 5  # each customer through every helpdesk in turn
    json_type = {"content-type": "application/json"}
    if desk == 0:
        body = json.dumps({"customer": {"id": n, "email": email, "emails": [email]}}).encode()
        return (
            "POST",
            "/helpscout",
            body,
            {**json_type, "x-helpscout-signature": _b64(body, "sha1")},
        )
    if desk == 1:
        body = json.dumps({"email": email}).encode()
        return "POST", "/therethere", body, {**json_type, "x-there-there-signature": _hex256(body)}
    if desk == 2:
        query = urlencode({"email": email, "timestamp": int(time.time())}).encode()
        authorization = f"Bearer {_b64(query, 'sha256')}"
        return "GET", f"/helper?{query.decode()}", b"", {"authorization": authorization}
    if desk == 3:
        document = {"cardKeys": ["customer"], "customer": {"id": f"c_{n}", "email": email}}
        body = json.dumps(document).encode()
        return "POST", "/plain", body, {**json_type, "plain-request-signature": _hex256(body)}
    body = json.dumps({"email": email}).encode()
    return "POST", "/card", body, {**json_type, "x-deskside-signature": _hex256(body)}


async def send_requests(port: int, count: int) -> Counter[int]:
    """``count`` signed requests, ``CONCURRENCY`` at a time; how many got each status."""
    import httpx

    statuses: Counter[int] = Counter()
    numbers = iter(range(count))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

        async def sender() -> None:
            for n in numbers:
                method, path, body, headers = signed_request(n)
                answer = await client.request(method, path, content=body, headers=headers)
                statuses[answer.status_code] += 1

        await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
    return statuses


# ── Processes ─────────────────────────────────────────────────────────────────────────────────


def ready_status(port: int) -> int | None:
    """The status ``GET /readyz`` answers, or None when nothing answers yet."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/readyz")
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


class NotReady(RuntimeError):
    """``deskside serve`` stopped, or did not answer 200 on ``/readyz`` in time."""


@contextlib.contextmanager
def serving(
    config: Path, env: dict[str, str], log: Path, workers: int = 1, ready_within: float = 120
) -> Iterator[tuple[subprocess.Popen[bytes], int, float]]:
    """``deskside serve`` in its own process group; yields it, its port and the seconds from
    its start to the first 200 on ``/readyz`` (:class:`NotReady` after ``ready_within``);
    stops the whole group on the way out."""
    port = free_port()
    command = [*deskside_command(), "serve", "-c", str(config), "--port", str(port)]
    command += ["--workers", str(workers), "--log-format", "text"]
    with log.open("wb") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + ready_within
        while ready_status(port) != 200:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise NotReady(f"deskside serve did not get ready:\n{tail}")
            time.sleep(0.01)
        yield process, port, time.perf_counter() - started
    finally:
        stop_group(process, grace_seconds=30)


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid``."""
    try:
        import psutil
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for process {pid}") from None
    return float(psutil.Process(pid).memory_info().rss) / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_runs(
    command: list[str], env: dict[str, str], runs: int, stdin: bytes = b""
) -> tuple[float, float]:
    """The median wall time and CPU time (user + system) of ``runs`` runs of ``command``
    (after one to warm up). On a busy machine the CPU time says more than the wall time."""
    walls, cpus = [], []
    for run in range(runs + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, input=stdin, env=env, capture_output=True, check=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run:
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


@contextlib.contextmanager
def burning_every_core(env: dict[str, str]) -> Iterator[None]:
    """One busy loop per core, each stopping by itself after BURN_SECONDS at the latest."""
    burners = [
        subprocess.Popen([sys.executable, "-c", BURNER, str(BURN_SECONDS)], env=env)
        for _ in range(os.cpu_count() or 1)
    ]
    try:
        time.sleep(1)  # let them take the cores
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


# ── Main ─────────────────────────────────────────────────────────────────────────────────────


def main() -> None:
    parser = argparse.ArgumentParser(description="deskside's start-up and memory figures.")
    parser.add_argument("--runs", type=int, default=10, help="runs of each command timed")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    figures: dict[str, Any] = {"load_average_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="deskside-startup-") as scratch:
        work = Path(scratch)
        env = {
            **os.environ,
            "PYTHONPYCACHEPREFIX": str(work / "pycache"),
            "DESKSIDE_STARTUP_DATABASE_URL": make_database(work / "customers.db"),
            "DESKSIDE_STARTUP_SECRET": SECRET,
            "DESKSIDE_DATA_DIR": str(work),
        }
        for variable in ("PYTHONDONTWRITEBYTECODE", "PROMETHEUS_MULTIPROC_DIR"):
            env.pop(variable, None)
        config = work / "deskside.toml"
        config.write_text(CONFIG, encoding="utf-8")
        cli = deskside_command()

        print(f"Timing deskside --help and sign ({args.runs} runs each)…")
        help_times = timed_runs([*cli, "--help"], env, args.runs)
        figures["help_seconds"], figures["help_cpu_seconds"] = help_times
        sign = [*cli, "sign", "--desk", "helpscout", "--secret", SECRET]
        sign_times = timed_runs(sign, env, args.runs, stdin=b'{"customer":{}}')
        figures["sign_seconds"], figures["sign_cpu_seconds"] = sign_times

        print("Timing deskside serve until /readyz answers 200 (3 runs)…")
        ready, ready_cpu = [], []
        for run in range(4):  # the first warms up the bytecode of the serving modules
            with serving(config, env, work / f"ready{run}.log") as (process, _, seconds):
                ready.append(seconds)
                ready_cpu.append(cpu_seconds(process.pid))
        figures["ready_seconds"] = statistics.median(ready[1:])
        figures["ready_cpu_seconds"] = statistics.median(ready_cpu[1:])

        print(f"Sending {REQUESTS:,} signed requests over the five helpdesks…")
        with serving(config, env, work / "load.log") as (process, port, _):
            statuses = asyncio.run(send_requests(port, REQUESTS))
            figures["rss_mb"] = rss_mb(process.pid)
        figures["statuses"] = {str(k): v for k, v in sorted(statuses.items())}

        print("Listing the modules a serving process loads…")
        done = subprocess.run(
            [sys.executable, "-c", MODULES, str(config)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        modules = json.loads(done.stdout.strip().splitlines()[-1])
        figures["modules"] = len(modules)
        tops = {name.split(".")[0] for name in modules}
        figures["insights_stack_loaded"] = sorted(tops & set(INSIGHTS_STACK))

        print("Serving with --workers 2 while every core is kept busy…")
        figures["busy_serve_seconds"] = None  # not serving within BUSY_GIVE_UP_SECONDS
        log = work / "busy.log"
        with burning_every_core(env), contextlib.suppress(NotReady):
            busy = serving(config, env, log, workers=2, ready_within=BUSY_GIVE_UP_SECONDS)
            with busy as (_, port, seconds):
                figures["busy_serve_seconds"] = seconds
                stop = time.monotonic() + STABLE_SECONDS
                while time.monotonic() < stop:
                    ready_status(port)
                    time.sleep(0.2)
        figures["busy_workers_replaced"] = log.read_text(errors="replace").count("died")
    figures["load_average_after"] = os.getloadavg()
    report(figures)


def report(figures: dict[str, Any]) -> None:
    busy_serve = (
        f"not within {BUSY_GIVE_UP_SECONDS} s"
        if figures["busy_serve_seconds"] is None
        else f"{figures['busy_serve_seconds']:.1f} s"
    )
    rows = [
        (
            "deskside --help",
            f"{figures['help_seconds']:.2f} s ({figures['help_cpu_seconds']:.2f} s CPU)",
        ),
        (
            "deskside sign",
            f"{figures['sign_seconds']:.2f} s ({figures['sign_cpu_seconds']:.2f} s CPU)",
        ),
        (
            "deskside serve → first 200 on /readyz",
            f"{figures['ready_seconds']:.2f} s ({figures['ready_cpu_seconds']:.2f} s CPU)",
        ),
        (f"RSS after {REQUESTS:,} requests (1 worker)", f"{figures['rss_mb']:.0f} MB"),
        ("answers", ", ".join(f"{n:,} x {s}" for s, n in figures["statuses"].items())),
        ("modules in a serving process", str(figures["modules"])),
        (
            "of them scikit-learn, SciPy, NumPy, lxml, alembic",
            ", ".join(figures["insights_stack_loaded"]) or "none",
        ),
        ("--workers 2, cores kept busy → first 200", busy_serve),
        (
            f"… workers uvicorn replaced (while starting and {STABLE_SECONDS} s after)",
            str(figures["busy_workers_replaced"]),
        ),
    ]
    print("\n| measure | result |\n| --- | ---: |")
    for name, value in rows:
        print(f"| {name} | {value} |")
    floors = [
        (f"--help ≤ {HELP_SECONDS} s", figures["help_seconds"] <= HELP_SECONDS),
        (f"sign ≤ {SIGN_SECONDS} s", figures["sign_seconds"] <= SIGN_SECONDS),
        (f"ready ≤ {READY_SECONDS} s", figures["ready_seconds"] <= READY_SECONDS),
        (f"RSS ≤ {RSS_MB:.0f} MB per worker", figures["rss_mb"] <= RSS_MB),
        (
            "no scikit-learn, SciPy or NumPy",
            not set(figures["insights_stack_loaded"]) & {"sklearn", "scipy", "numpy"},
        ),
        (
            f"--workers 2 on busy cores serves ≤ {BUSY_SERVE_SECONDS:.0f} s, no worker replaced",
            figures["busy_serve_seconds"] is not None
            and figures["busy_serve_seconds"] <= BUSY_SERVE_SECONDS
            and figures["busy_workers_replaced"] == 0,
        ),
    ]
    print("\n| floor | verdict |\n| --- | --- |")
    for name, met in floors:
        print(f"| {name} | {'PASS' if met else 'MISS'} |")
    before = figures["load_average_before"][0]
    if before > 0.5:
        print(f"\nWARNING: the load average was {before:.1f} when this started: other programs")
        print("were using the CPU, so the times are high; run again on a quiet machine.")
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    document = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "os": platform.platform(),
            "deskside_commit": commit,
        },
        "figures": figures,
        "floors": {name: met for name, met in floors},
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(f"\nWritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
