"""The realistic scenario: the data behind a network, as in production.

PostgreSQL is reached through a local TCP proxy that holds every chunk 1 ms each way, and a
billing API (a local fake) answers after 150 ms, as a payment provider's API does. The
hand-written endpoint does what such endpoints do — the query, then the billing call, one
after the other — on gunicorn sync workers (2 x cores + 1, as gunicorn advises); deskside
serves the demo card with the billing API as an ``http`` source, its default cache settings
(and, once more, with the cache off) and one worker per core. Load: 1,000 distinct customers
with a Zipf-like popularity (a few are opened many times, as in a real inbox), 32 and 256
connections, each request followed to its end by ``loadgen.py``, so that the answers later
than the deadline + 100 ms are counted exactly.
"""

from __future__ import annotations

import functools
import json
import random
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from .common import CORES, CUSTOMERS, HERE, company_of, demo_config, demo_deadline_ms, signed
from .network import customer
from .servers import CpuMeter, RssSampler, check_answer, serving, settle

DISTINCT_CUSTOMERS = 1_000
CONNECTIONS = (32, 256)
DATABASE_DELAY_MS = 1.0  # each way, per chunk
BILLING_DELAY_MS = 150.0
DESKSIDE_WORKERS = CORES  # one per core
HANDWRITTEN_WORKERS = 2 * CORES + 1  # gunicorn's advice for sync workers
REQUEST_TIMEOUT_S = 5.0  # the load generator gives up (a timeout, and late)
LATE_SLACK_MS = 100.0
CACHE_OFF_RPS = 1_000  # floor at 256 connections (issue 18)
PARTIAL_TEXT = "unavailable"  # in an answer that lacks a source: "Billing unavailable"

SERVERS = {
    "handwritten": f"hand-written, gunicorn {HANDWRITTEN_WORKERS} sync workers",
    "cached": f"deskside, default cache, {DESKSIDE_WORKERS} workers",
    "uncached": f"deskside, cache off, {DESKSIDE_WORKERS} workers",
}


@dataclass
class Run:
    """One server at one number of connections."""

    server: str
    connections: int
    rps: float
    p50_ms: float | None
    """None: no answer (a timeout) at this percentile."""
    p99_ms: float | None
    max_ms: float | None
    late: int
    """Answers later than the deadline + LATE_SLACK_MS, timeouts included."""
    timeouts: int
    errors: int
    answers: int
    """Answers to the requests sent in the measured window (timeouts are none)."""
    partial: int
    """Answers among them that lack a source ("… unavailable": its error, the deadline)."""
    cpu_ms: float | None
    """CPU time of the server's processes per answer in the measured window (None: none)."""
    server_cpu: float
    """% of one core the server's processes used in the measured window."""
    rss_mb: float
    """Peak resident memory of the busiest worker."""
    generator_cpu: float
    """% of one core the load generator used: near 100 it, not the server, was the limit."""
    network_cpu: dict[str, float]
    """% of one core the proxy, the fake billing API and PostgreSQL used."""
    other_cpu: float
    """% of all cores other programs used meanwhile."""
    error_kinds: dict[str, int]


def request_file(directory: Path) -> Path:
    """DISTINCT_CUSTOMERS signed requests for a fixed sample of the bulk customers."""
    customers = random.Random(18).sample(range(CUSTOMERS), DISTINCT_CUSTOMERS)
    path = directory / "realistic.txt"
    path.write_text("".join(signed(n) for n in customers))
    return path


def deskside_config(billing_port: int, cache: bool) -> str:
    """The demo config with the fake billing API as its ``billing`` source (an ``http`` one);
    without ``cache``, ``cache_ttl_seconds = 0`` on both sources."""
    url = f"http://127.0.0.1:{billing_port}/v1/customers?email={{email}}"
    config = (
        demo_config() + f'\n[sources.billing]\nkind = "http"\nlabel = "Billing"\nurl = "{url}"\n'
    )
    if not cache:
        config, count = re.subn(r"(?m)^(\[sources\.\w+\])$", r"\1\ncache_ttl_seconds = 0", config)
        assert count == 2, config
    return config


def added_round_trip_ms(direct: str, proxied: str) -> float:
    """How much longer a ``select 1`` round trip takes through the proxy (median of 200)."""
    import time

    import psycopg

    medians = []
    for url in (direct, proxied):
        with psycopg.connect(url, autocommit=True) as connection:
            for _ in range(20):
                connection.execute("select 1")
            times = []
            for _ in range(200):
                started = time.perf_counter()
                connection.execute("select 1").fetchone()
                times.append(time.perf_counter() - started)
        medians.append(sorted(times)[100] * 1000)
    return medians[1] - medians[0]


def measure(
    server: str, pid: int, port: int, requests: Path, connections: int, seconds: float,
    warmup: float, late_ms: float, network: dict[str, int],
) -> Run:  # fmt: skip
    """Load the server with ``loadgen.py`` and measure the server and everything else in the
    generator's recorded window."""
    print(f"  {SERVERS[server]}, {connections} connections …", flush=True)
    command = [
        sys.executable, str(HERE / "sidebar" / "loadgen.py"),
        f"http://127.0.0.1:{port}/helpscout", str(requests), "--connections", str(connections),
        "--warmup", str(warmup), "--seconds", str(seconds),
        "--timeout", str(REQUEST_TIMEOUT_S), "--late-ms", str(late_ms), "--marks",
        "--partial", PARTIAL_TEXT,
    ]  # fmt: skip
    with RssSampler(pid) as rss:
        generator = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert generator.stdout is not None
        assert generator.stdout.readline().strip() == "RECORDING", "loadgen.py failed"
        with CpuMeter(pid, {**network, "generator": generator.pid}) as cpu:
            assert generator.stdout.readline().strip() == "WINDOW-END", "loadgen.py failed"
        output = generator.stdout.read()
        if generator.wait() != 0:
            raise RuntimeError("loadgen.py failed")
    result = json.loads(output)
    window = max(cpu.wall_seconds, 1e-9)
    return Run(
        server=server,
        connections=connections,
        rps=result["rps"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        max_ms=result["max_ms"],
        late=result["late"],
        timeouts=result["timeouts"],
        errors=result["errors"],
        answers=result["answers"],
        partial=result["partial"],
        cpu_ms=cpu.server_seconds * 1000 / result["requests"] if result["answers"] else None,
        server_cpu=cpu.server_seconds / window * 100,
        rss_mb=rss.peak_mb,
        generator_cpu=result["generator_cpu_percent"],
        network_cpu={
            "proxy": cpu.helper_seconds["proxy"] / window * 100,
            "billing": cpu.helper_seconds["billing"] / window * 100,
            "postgresql": cpu.database_seconds / window * 100,
        },
        other_cpu=cpu.other_percent,
        error_kinds=result["error_kinds"],
    )


def checks(runs: list[Run], deadline_ms: int) -> list[dict[str, Any]]:
    """Issue 18's floors for this scenario, each with what was measured."""
    at = {(r.server, r.connections): r for r in runs}
    limit = deadline_ms + LATE_SLACK_MS
    rows = []
    for server in ("cached", "uncached"):
        if run := at.get((server, 256)):
            cache = "on" if server == "cached" else "off"
            rows.append((
                f"256 connections, cache {cache}: no answer later than {limit:.0f} ms "
                f"(deadline {deadline_ms} + {LATE_SLACK_MS:.0f})",
                run.late == 0 and run.answers > 0,
                f"{run.late} late ({run.timeouts} timeouts), max {ms(run.max_ms, ' ms')}",
            ))  # fmt: skip
    if run := at.get(("uncached", 256)):
        rows.append((
            f"256 connections, cache off: ≥ {CACHE_OFF_RPS:,} req/s on {DESKSIDE_WORKERS} workers",
            run.rps >= CACHE_OFF_RPS and run.answers > 0,
            f"{run.rps:,.0f} req/s",
        ))  # fmt: skip
    return [{"target": t, "pass": ok, "measured": measured} for t, ok, measured in rows]


def ms(value: float | None, unit: str = "") -> str:
    """A latency for the table: "timeout" when that request got no answer."""
    if value is None:
        return "timeout"
    return (f"{value:,.0f}" if value >= 100 else f"{value:.1f}") + unit


def print_report(runs: list[Run], verdicts: list[dict[str, Any]], late_ms: float) -> None:
    print(
        f"\n| server | connections | req/s | p50 ms | p99 ms | max ms | late (> {late_ms:.0f} ms)"
        " | timeouts | errors | partial | server CPU ms/req | server CPU % | peak RSS/worker MB"
        " | generator CPU % |"
    )
    print("| --- |" + " ---: |" * 13)
    for r in runs:
        print(
            f"| {SERVERS[r.server]} | {r.connections} | {r.rps:,.0f} | {ms(r.p50_ms)} | "
            f"{ms(r.p99_ms)} | {ms(r.max_ms)} | {r.late} | {r.timeouts} | {r.errors} | "
            f"{r.partial} | "
            f"{'—' if r.cpu_ms is None else f'{r.cpu_ms:.2f}'} | {r.server_cpu:.0f} | "
            f"{r.rss_mb:.0f} | {r.generator_cpu:.0f} |"
        )
    print("\nCPU used meanwhile by the network, the database (% of one core) and other programs:")
    for r in runs:
        shares = ", ".join(f"{k} {v:.0f}%" for k, v in r.network_cpu.items())
        print(f"  {r.server}/{r.connections}: {shares}; other programs {r.other_cpu:.0f}% of all")
    if saturated := [r for r in runs if r.generator_cpu > 80]:
        print("\nWARNING: the load generator used most of a core in", len(saturated), "runs.")
    if any(r.other_cpu > 10 for r in runs):
        print("WARNING: other programs used the CPU meanwhile: these figures are low.")
    print("\n| floor | measured | verdict |\n| --- | --- | --- |")
    for check in verdicts:
        print(
            f"| {check['target']} | {check['measured']} | {'met' if check['pass'] else 'MISSED'} |"
        )


def run(
    work: Path, env: dict[str, str], database_url: str, seconds: float, quick: bool
) -> dict[str, Any]:
    """Measure the realistic scenario; returns its report."""
    python = sys.executable
    warmup = 2.0 if quick else 5.0
    deadline_ms = demo_deadline_ms()
    late_ms = deadline_ms + LATE_SLACK_MS
    requests = request_file(work)
    probe = requests.read_text().split("\n", 1)[0]
    email = re.findall(r'"email":"([^"]+)"', probe)[0]
    expect = [
        company_of(probe),
        "{plan} ({status})".format(**json.loads(customer(f"/?email={email}"))),
    ]
    direct = make_url(database_url).set(drivername="postgresql")
    network = [python, str(HERE / "sidebar" / "network.py")]

    def proxy(port: int) -> list[str]:
        upstream = f"{direct.host or '127.0.0.1'}:{direct.port or 5432}"
        return [*network, "proxy", "--port", str(port), "--upstream", upstream,
                "--delay-ms", str(DATABASE_DELAY_MS)]  # fmt: skip

    def billing(port: int) -> list[str]:
        return [*network, "billing", "--port", str(port), "--delay-ms", str(BILLING_DELAY_MS)]

    runs: list[Run] = []
    print(
        f"Behind a network (database +{DATABASE_DELAY_MS:g} ms each way, billing API "
        f"{BILLING_DELAY_MS:.0f} ms, {DISTINCT_CUSTOMERS:,} customers, Zipf-like):"
    )
    with (
        serving("proxy", proxy, env, work) as (proxy_pid, proxy_port),
        serving("billing", billing, env, work) as (billing_pid, billing_port),
    ):
        proxied = direct.set(host="127.0.0.1", port=proxy_port)
        plain = direct.render_as_string(hide_password=False)
        added = added_round_trip_ms(plain, proxied.render_as_string(hide_password=False))
        print(f"  the proxy adds {added:.1f} ms to a database round trip (median)")
        server_env = {
            **env,
            "DATABASE_URL": proxied.render_as_string(hide_password=False),
            "DESKSIDE_DEMO_DATABASE_URL": proxied.render_as_string(hide_password=False),
            "BILLING_URL": f"http://127.0.0.1:{billing_port}/v1/customers?email=",
        }
        helpers = {"proxy": proxy_pid, "billing": billing_pid}
        load = functools.partial(
            measure, requests=requests, seconds=seconds, warmup=warmup, late_ms=late_ms,
            network=helpers,
        )  # fmt: skip

        def gunicorn(port: int) -> list[str]:
            app = [python, "-m", "gunicorn", "--chdir", str(HERE), "handwritten:app"]
            return [*app, "--workers", str(HANDWRITTEN_WORKERS), "--worker-class", "sync",
                    "--log-level", "warning", "--bind", f"127.0.0.1:{port}"]  # fmt: skip

        def deskside(config: Path, port: int) -> list[str]:
            app = [python, "-m", "deskside", "serve", "-c", str(config)]
            return [*app, "--workers", str(DESKSIDE_WORKERS), "--log-level", "warning",
                    "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip

        with serving("realistic-handwritten", gunicorn, server_env, work) as (pid, port):
            check_answer(port, probe, expect, attempts=5)
            settle(pid)
            runs += [load("handwritten", pid, port, connections=c) for c in CONNECTIONS]
        for server, cache in (("cached", True), ("uncached", False)):
            config = work / f"realistic-{server}.toml"
            config.write_text(deskside_config(billing_port, cache))
            command = functools.partial(deskside, config)
            with serving(f"realistic-{server}", command, server_env, work) as (pid, port):
                check_answer(port, probe, expect, attempts=5)
                settle(pid)
                runs += [load(server, pid, port, connections=c) for c in CONNECTIONS]
    verdicts = checks(runs, deadline_ms)
    print_report(runs, verdicts, late_ms)
    return {
        "settings": {
            "database": f"PostgreSQL through a TCP proxy adding {DATABASE_DELAY_MS:g} ms each "
            f"way per chunk (measured: +{added:.1f} ms per round trip, median)",
            "billing": f"local fake API answering after {BILLING_DELAY_MS:.0f} ms",
            "customers": f"{DISTINCT_CUSTOMERS:,} distinct, Zipf-like popularity (weight 1/rank)",
            "connections": list(CONNECTIONS),
            "load": f"loadgen.py, closed loop, {warmup:g} s warm-up, {seconds:g} s recorded, "
            f"{REQUEST_TIMEOUT_S:g} s timeout per request",
            "deadline_ms": deadline_ms,
            "late_after_ms": late_ms,
            "handwritten_workers": HANDWRITTEN_WORKERS,
            "deskside_workers": DESKSIDE_WORKERS,
        },
        "added_round_trip_ms": round(added, 2),
        "runs": [{"label": SERVERS[r.server], **asdict(r)} for r in runs],
        "checks": verdicts,
    }
