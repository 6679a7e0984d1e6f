"""deskside's benchmark suite, in one command (from the repository root):

    .venv/bin/python benchmarks/run.py

It installs the ``bench`` extra if missing, asks to install wrk if missing, loads the demo HR
SaaS data with 100,000 generated customers into PostgreSQL (database ``deskside_bench``,
created when missing, reloaded only when ``demo.py`` changes), then measures at fixed
concurrency, each server with the same number of worker processes:

1. a bare ASGI app under uvicorn, served like ``deskside serve`` (the ceiling);
2. the hand-written WSGI endpoint (``handwritten.py``) under gunicorn sync workers;
3. ``deskside serve`` on the demo card: uncached (every request a new customer), cached (100
   hot customers), at a constant 200 req/s (open loop), and with a second source that never
   answers (300 ms deadline).

It prints a table and the targets (PASS/MISS) and writes ``benchmarks/results/latest.json``.
Every request is a correctly signed Help Scout request, built before the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import http.client
import importlib.util
import inspect
import json
import os
import platform
import random
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "latest.json"
COMMAND = ".venv/bin/python benchmarks/run.py"

WORKERS = 2  # per server: one per core
CONNECTIONS = 16  # wrk, 1 thread: leaves the cores to the servers and PostgreSQL
WARMUP_SECONDS = 3
CUSTOMERS = 100_000
HOT_CUSTOMERS = 100
OPEN_RATE = 200  # req/s
OPEN_SECONDS = 20
HANG_DEADLINE_MS = 300
HANG_SECONDS = 10
SECRET = "deskside-benchmark-secret"  # noqa: S105 - a fixed secret for local load only
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/deskside_bench"

# Targets (issue 4)
CACHED_VS_BARE = 0.6
UNCACHED_VS_HANDWRITTEN = 1.5
OPEN_P99_MS = 50.0
HANG_SLACK_MS = 50.0
RSS_MB = 150.0


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


def ensure_tools(assume_yes: bool) -> None:
    """The ``bench`` extra in this interpreter, and wrk on the PATH (asking before apt-get)."""
    if not all(importlib.util.find_spec(m) for m in ("gunicorn", "psycopg", "psutil")):
        print("Installing the bench extra: pip install -e '.[bench]'", flush=True)
        pip = [sys.executable, "-m", "pip", "install", "-q", "-e", f"{ROOT}[bench]"]
        subprocess.run(pip, check=True)
        importlib.invalidate_caches()
    if shutil.which("wrk"):
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


def request_files(directory: Path) -> dict[str, Path]:
    """Disjoint sets of customers, so that no "uncached" request asks for one asked before."""
    order = list(range(CUSTOMERS))
    random.Random(4).shuffle(order)
    slices = {
        "warmup": order[:5_000],
        "uncached": order[5_000:80_000],
        "open": order[80_000:90_000],
        "hang": order[90_000:],
        "hot": order[:HOT_CUSTOMERS],
    }
    files = {}
    for name, customers in slices.items():
        files[name] = directory / f"{name}.txt"
        files[name].write_text("".join(signed(n) for n in customers))
    return files


def deskside_config(hang_port: int | None = None) -> str:
    """The demo config's source, lookup and card, with the Help Scout helpdesk only; with
    ``hang_port`` also an ``http`` source that never answers, and a HANG_DEADLINE_MS deadline."""
    from deskside.demo import demo_config_path
    from deskside.sources.base import SourceConfig

    demo, found, _ = demo_config_path().read_text().partition("\n[helpdesks.")
    assert found, "the demo config has no [helpdesks.*] table"
    config = demo + '\n[helpdesks.helpscout]\nsecret = "env:HELPSCOUT_SECRET"\n'
    if hang_port is not None:
        config, count = re.subn(
            r"(?m)^deadline_ms = \d+", f"deadline_ms = {HANG_DEADLINE_MS}", config
        )
        assert count == 1, "the demo config sets no [server] deadline_ms"
        config += (
            '\n[sources.slow]\nkind = "http"\nlabel = "Slow API"\n'
            f'url = "http://127.0.0.1:{hang_port}/customers?email={{email}}"\n'
            "timeout_seconds = 10\n"
        )
        if "breaker_failures" in SourceConfig.model_fields:
            # The worst case: every request waits for the hanging source until the deadline,
            # instead of a circuit breaker skipping it after a few timeouts.
            config += "breaker_failures = 1000000\n"
    return config


class Blackhole:
    """A local HTTP "API" that accepts connections, reads what is sent and never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port: int = self.socket.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError), selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self.socket:
                        connection, _ = self.socket.accept()
                        selector.register(connection, selectors.EVENT_READ)
                        continue
                    peer: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        received = peer.recv(65536)
                    except OSError:
                        received = b""
                    if not received:  # the caller gave up
                        selector.unregister(peer)
                        peer.close()

    def close(self) -> None:
        self.socket.close()


# ── Servers ────────────────────────────────────────────────────────────────────────────────


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(
    name: str, command: Callable[[int], list[str]], env: dict[str, str], logs: Path
) -> Iterator[tuple[int, int]]:
    """Start ``command(port)`` in its own process group; yield its pid and port once it
    accepts connections; stop the whole group on the way out (also on Ctrl-C or an error)."""
    port = free_port()
    log = logs / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command(port), cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} did not start:\n{tail}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.2)
            yield process.pid, port
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def check_answer(port: int, line: str, expect: list[str]) -> None:
    """Send one request and fail loudly unless the answer is 200 and contains ``expect``."""
    signature, body = line.rstrip("\n").split("\t", 1)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/json", "X-HelpScout-Signature": signature}
        connection.request("POST", "/helpscout", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read().decode()
    finally:
        connection.close()
    html = json.loads(answer).get("html", "") if response.status == 200 else ""
    if missing := [text for text in expect if text not in html]:
        raise RuntimeError(f"unexpected answer (HTTP {response.status}, lacks {missing}): {answer}")


class RssSampler:
    """Samples the resident memory of a server's worker processes every 100 ms."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.master = psutil.Process(pid)
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.1):
            for child in self.master.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "resource_tracker" not in " ".join(child.cmdline()):
                        rss = child.memory_info().rss
                        self.peak[child.pid] = max(self.peak.get(child.pid, 0), rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return max(self.peak.values(), default=0) / 2**20


# ── Load ───────────────────────────────────────────────────────────────────────────────────


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and all its descendants so far, including
    the children it has already waited for (wrk, once it has finished)."""
    import psutil

    used = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        times = root.cpu_times()
        used += times.user + times.system + times.children_user + times.children_system
        for process in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                used += times.user + times.system
    return used


class CpuMeter:
    """CPU time used while it is entered: by the server's processes, and by programs that are
    neither the benchmark (wrk, the open-loop generator) nor its server nor PostgreSQL."""

    def __init__(self, server: int) -> None:
        self.server = server
        self.server_seconds = 0.0
        self.other_percent = 0.0

    def _read(self) -> tuple[float, float, float, float]:
        import psutil

        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + t.irq + t.softirq + t.steal
        database = 0.0
        for process in psutil.process_iter(["name", "cpu_times"]):
            if (process.info["name"] or "").startswith("postgres") and process.info["cpu_times"]:
                database += process.info["cpu_times"].user + process.info["cpu_times"].system
        server = cpu_seconds(self.server)
        return busy + t.idle + t.iowait, busy, server, cpu_seconds(os.getpid()) + database

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        return self

    def __exit__(self, *_: object) -> None:
        total, busy, server, ours = (b - a for a, b in zip(self._start, self._read(), strict=True))
        self.server_seconds = server
        self.other_percent = max(0.0, busy - server - ours) / max(total, 1e-9) * 100


def wrk(port: int, requests: Path, seconds: float) -> dict[str, Any]:
    command = [
        "wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "5s",
        "-s", str(HERE / "requests.lua"), f"http://127.0.0.1:{port}/helpscout", "--", str(requests),
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    summary = next(line for line in output.splitlines() if line.startswith("BENCH "))
    result: dict[str, Any] = json.loads(summary.removeprefix("BENCH "))
    return result


def closed_loop(
    scenario: str, pid: int, port: int, warmup: Path, requests: Path, seconds: float
) -> Result:
    """Warm up, then measure at CONNECTIONS concurrent connections for ``seconds``."""
    print(f"  {scenario} …", flush=True)
    with RssSampler(pid) as rss:
        wrk(port, warmup, WARMUP_SECONDS)
        with CpuMeter(pid) as cpu:
            run = wrk(port, requests, seconds)
    elapsed = run["duration_us"] / 1e6
    return Result(
        scenario=scenario,
        requests=run["requests"],
        seconds=elapsed,
        rps=run["requests"] / elapsed,
        p50_ms=run["p50_us"] / 1000,
        p99_ms=run["p99_us"] / 1000,
        max_ms=run["max_us"] / 1000,
        errors=run["errors"] + run["non_2xx"],
        rss_mb=rss.peak_mb,
        cpu_ms=cpu.server_seconds * 1000 / max(run["requests"], 1),
        other_cpu=cpu.other_percent,
    )


def open_loop(scenario: str, pid: int, port: int, requests: Path) -> Result:
    """OPEN_RATE req/s for OPEN_SECONDS from a separate process (``openloop.py``)."""
    print(f"  {scenario} …", flush=True)
    command = [
        sys.executable, str(HERE / "openloop.py"), f"http://127.0.0.1:{port}/helpscout",
        str(requests), "--rate", str(OPEN_RATE), "--duration", str(OPEN_SECONDS),
    ]  # fmt: skip
    with RssSampler(pid) as rss, CpuMeter(pid) as cpu:
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    run = json.loads(output)
    return Result(
        scenario=scenario,
        requests=run["requests"],
        seconds=run["seconds"],
        rps=run["requests"] / run["seconds"],
        p50_ms=run["p50_ms"],
        p99_ms=run["p99_ms"],
        max_ms=run["max_ms"],
        errors=run["errors"],
        rss_mb=rss.peak_mb,
        cpu_ms=cpu.server_seconds * 1000 / max(run["requests"], 1),
        other_cpu=cpu.other_percent,
    )


# ── Report ─────────────────────────────────────────────────────────────────────────────────


def checks(results: dict[str, Result]) -> list[dict[str, Any]]:
    bare, hand = results["bare"], results["handwritten"]
    cached, uncached = results["cached"], results["uncached"]
    at_rate, hang = results["open"], results["hang"]
    rss = max(r.rss_mb for key, r in results.items() if key not in ("bare", "handwritten"))
    limit = HANG_DEADLINE_MS + HANG_SLACK_MS
    rows = [
        ("cached ≥ 0.6 x bare ceiling", cached.rps / bare.rps >= CACHED_VS_BARE,
         f"{cached.rps / bare.rps:.2f} x ({cached.rps:,.0f} / {bare.rps:,.0f} req/s)"),
        ("uncached ≥ 1.5 x hand-written", uncached.rps / hand.rps >= UNCACHED_VS_HANDWRITTEN,
         f"{uncached.rps / hand.rps:.2f} x ({uncached.rps:,.0f} / {hand.rps:,.0f} req/s)"),
        (f"p99 ≤ 50 ms at {OPEN_RATE} req/s uncached", at_rate.p99_ms <= OPEN_P99_MS
         and at_rate.errors == 0, f"p99 {at_rate.p99_ms:.1f} ms, {at_rate.errors} errors"),
        (f"hanging source: every answer ≤ {HANG_DEADLINE_MS} + 50 ms",
         hang.max_ms <= limit and hang.errors == 0,
         f"max {hang.max_ms:.0f} ms of {limit:.0f} ({hang.max_ms - HANG_DEADLINE_MS:+.0f} ms "
         f"past the deadline), {hang.errors} errors"),
        ("RSS ≤ 150 MB per deskside worker", rss <= RSS_MB, f"peak {rss:.0f} MB"),
    ]  # fmt: skip
    return [{"target": t, "pass": ok, "measured": measured} for t, ok, measured in rows]


LABELS = {
    "bare": "bare ASGI, uvicorn (ceiling)",
    "handwritten": "hand-written WSGI, gunicorn sync",
    "uncached": "deskside uncached",
    "cached": "deskside cached (100 hot customers)",
    "open": f"deskside uncached, open loop {OPEN_RATE} req/s",
    "hang": f"deskside, 1 source hangs ({HANG_DEADLINE_MS} ms deadline)",
}


def print_report(results: dict[str, Result], verdicts: list[dict[str, Any]]) -> None:
    print("\n| scenario | req/s | p50 ms | p99 ms | max ms | errors | server CPU ms/req |", end="")
    print(" peak RSS/worker MB |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for key, r in results.items():
        print(
            f"| {LABELS[key]} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
            f"{r.max_ms:.0f} | {r.errors} | {r.cpu_ms:.2f} | {r.rss_mb:.0f} |"
        )
    if busy := {LABELS[k]: r.other_cpu for k, r in results.items() if r.other_cpu > 10}:
        print("\nWARNING: other programs kept the machine busy during some scenarios, so their")
        print("figures are low: run again on a quiet machine. Other programs' share of all cores:")
        for label, percent in busy.items():
            print(f"  {label}: {percent:.0f}%")
    print("\n| target | measured | verdict |\n| --- | --- | --- |")
    for check in verdicts:
        print(
            f"| {check['target']} | {check['measured']} | {'PASS' if check['pass'] else 'MISS'} |"
        )


def machine(postgres: str) -> dict[str, Any]:
    import psutil

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = re.search(r"model name\s*:\s*(.+)", cpuinfo)
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": model.group(1) if model else platform.processor(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "wrk": wrk_version.split()[1] if wrk_version else "?",
        "deskside_commit": commit,
    }


# ── Main ───────────────────────────────────────────────────────────────────────────────────


def main() -> None:
    parser = argparse.ArgumentParser(description="deskside's benchmark suite.")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DESKSIDE_BENCH_DATABASE_URL", DEFAULT_DATABASE),
        help="PostgreSQL database for the benchmark data (created if missing)",
    )
    parser.add_argument("--seconds", type=float, default=15, help="each closed-loop measurement")
    parser.add_argument("--reload", action="store_true", help="reload the data even if present")
    parser.add_argument("--yes", action="store_true", help="install wrk without asking")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C

    ensure_tools(args.yes)
    postgres = ensure_database(args.database_url, args.reload)
    started = time.monotonic()
    python = sys.executable
    env = {
        **os.environ,
        "HELPSCOUT_SECRET": SECRET,
        "DATABASE_URL": args.database_url,  # the hand-written app's
        "DESKSIDE_DEMO_DATABASE_URL": args.database_url,  # the demo config's
    }
    results: dict[str, Result] = {}
    with tempfile.TemporaryDirectory(prefix="deskside-bench-") as scratch:
        work = Path(scratch)
        files = request_files(work)
        probe = files["warmup"].read_text().split("\n", 1)[0]
        company = "Company " + re.findall(r"customer(\d+)@", probe)[0]
        (work / "deskside.toml").write_text(deskside_config())
        common = ["--workers", str(WORKERS), "--log-level", "warning"]

        def uvicorn(port: int) -> list[str]:
            app = [python, "-m", "uvicorn", "--app-dir", str(HERE), "bare:app"]
            return [*app, *common, "--host", "127.0.0.1", "--port", str(port)]

        def gunicorn(port: int) -> list[str]:
            app = [python, "-m", "gunicorn", "--chdir", str(HERE), "handwritten:app"]
            return [*app, *common, "--worker-class", "sync", "--bind", f"127.0.0.1:{port}"]

        def deskside(port: int, config: str = "deskside.toml") -> list[str]:
            app = [python, "-m", "deskside", "serve", "-c", str(work / config)]
            return [*app, *common, "--host", "127.0.0.1", "--port", str(port)]

        print(
            f"Measuring ({WORKERS} workers per server, wrk 1 thread x {CONNECTIONS} connections):"
        )
        with serving("bare", uvicorn, env, work) as (pid, port):
            check_answer(port, probe, ["Acme HR"])
            results["bare"] = closed_loop(
                "bare", pid, port, files["warmup"], files["uncached"], args.seconds
            )
        with serving("handwritten", gunicorn, env, work) as (pid, port):
            check_answer(port, probe, [company])
            results["handwritten"] = closed_loop(
                "hand-written", pid, port, files["warmup"], files["uncached"], args.seconds
            )
        with serving("deskside", deskside, env, work) as (pid, port):
            check_answer(port, probe, [company])
            results["uncached"] = closed_loop(
                "deskside uncached", pid, port, files["warmup"], files["uncached"], args.seconds
            )
            if results["uncached"].requests > len(files["uncached"].read_text().splitlines()):
                print("  warning: more requests than distinct customers: some were cache hits")
            results["open"] = open_loop("deskside at a constant rate", pid, port, files["open"])
            results["cached"] = closed_loop(
                "deskside cached", pid, port, files["hot"], files["hot"], args.seconds
            )
        blackhole = Blackhole()
        try:
            (work / "hang.toml").write_text(deskside_config(hang_port=blackhole.port))
            hanging = functools.partial(deskside, config="hang.toml")
            with serving("deskside-hang", hanging, env, work) as (pid, port):
                check_answer(port, probe, [company, "Slow API unavailable"])
                warmup, hang = files["warmup"], files["hang"]
                results["hang"] = closed_loop(
                    "deskside with a hanging source", pid, port, warmup, hang, HANG_SECONDS
                )
        finally:
            blackhole.close()

    verdicts = checks(results)
    print_report(results, verdicts)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": COMMAND,
        "machine": machine(postgres),
        "settings": {
            "workers_per_server": WORKERS,
            "load": f"wrk, 1 thread, {CONNECTIONS} connections, {WARMUP_SECONDS} s warm-up, "
            f"{args.seconds:g} s measured; open loop {OPEN_RATE} req/s for {OPEN_SECONDS} s",
            "customers": CUSTOMERS,
            "hot_customers": HOT_CUSTOMERS,
            "hang_deadline_ms": HANG_DEADLINE_MS,
        },
        "results": {key: {"label": LABELS[key], **asdict(r)} for key, r in results.items()},
        "checks": verdicts,
        "run_seconds": round(time.monotonic() - started),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWritten to {RESULTS.relative_to(ROOT)} ({report['run_seconds']} s of measuring).")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("Interrupted; every server was stopped.")
