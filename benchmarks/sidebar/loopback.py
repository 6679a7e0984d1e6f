"""The loopback suite: every server next to PostgreSQL on the same host, loaded with wrk.

1. a bare ASGI app under uvicorn, served like ``deskside serve`` (the ceiling);
2. the hand-written WSGI endpoint (``handwritten.py``) under gunicorn sync workers;
3. ``deskside serve`` on the demo card: uncached (every request a new customer), cached (100
   hot customers), at a constant 200 req/s (open loop), and with a second source that never
   answers (300 ms deadline).
"""

from __future__ import annotations

import functools
import json
import random
import re
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .common import CUSTOMERS, HERE, Result, company_of, demo_config, signed
from .servers import Blackhole, CpuMeter, RssSampler, check_answer, serving

WORKERS = 2  # per server: one per core
CONNECTIONS = 16  # wrk, 1 thread: leaves the cores to the servers and PostgreSQL
HOT_CUSTOMERS = 100
OPEN_RATE = 200  # req/s
HANG_DEADLINE_MS = 300

# Floors (issue 18)
CACHED_VS_BARE = 0.4
UNCACHED_VS_HANDWRITTEN = 1.0
OPEN_P99_MS = 10.0
HANG_SLACK_MS = 50.0
RSS_MB = 100.0

LABELS = {
    "bare": "bare ASGI, uvicorn (ceiling)",
    "handwritten": "hand-written WSGI, gunicorn sync",
    "uncached": "deskside uncached",
    "cached": "deskside cached (100 hot customers)",
    "open": f"deskside uncached, open loop {OPEN_RATE} req/s",
    "hang": f"deskside, 1 source hangs ({HANG_DEADLINE_MS} ms deadline)",
}


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


def hanging_config(hang_port: int) -> str:
    """The demo config plus an ``http`` source that never answers, and a HANG_DEADLINE_MS
    deadline."""
    from deskside.sources.base import SourceConfig

    config, count = re.subn(
        r"(?m)^deadline_ms = \d+", f"deadline_ms = {HANG_DEADLINE_MS}", demo_config()
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
    scenario: str, pid: int, port: int, warmup: Path, requests: Path, seconds: float,
    warmup_seconds: float,
) -> Result:  # fmt: skip
    """Warm up, then measure at CONNECTIONS concurrent connections for ``seconds``."""
    print(f"  {scenario} …", flush=True)
    with RssSampler(pid) as rss:
        wrk(port, warmup, warmup_seconds)
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


def open_loop(scenario: str, pid: int, port: int, requests: Path, seconds: float) -> Result:
    """OPEN_RATE req/s for ``seconds`` from a separate process (``openloop.py``)."""
    print(f"  {scenario} …", flush=True)
    command = [
        sys.executable, str(HERE / "sidebar" / "openloop.py"), f"http://127.0.0.1:{port}/helpscout",
        str(requests), "--rate", str(OPEN_RATE), "--duration", str(seconds),
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


def checks(results: dict[str, Result]) -> list[dict[str, Any]]:
    """Issue 18's loopback floors, each with what was measured."""
    bare, hand = results["bare"], results["handwritten"]
    cached, uncached = results["cached"], results["uncached"]
    at_rate, hang = results["open"], results["hang"]
    rss = max(r.rss_mb for key, r in results.items() if key not in ("bare", "handwritten"))
    limit = HANG_DEADLINE_MS + HANG_SLACK_MS
    rows = [
        (f"cached ≥ {CACHED_VS_BARE} x bare ceiling", cached.rps / bare.rps >= CACHED_VS_BARE,
         f"{cached.rps / bare.rps:.2f} x ({cached.rps:,.0f} / {bare.rps:,.0f} req/s)"),
        (f"uncached ≥ {UNCACHED_VS_HANDWRITTEN} x hand-written, CPU/request ≤ hand-written's",
         uncached.rps / hand.rps >= UNCACHED_VS_HANDWRITTEN and uncached.cpu_ms <= hand.cpu_ms,
         f"{uncached.rps / hand.rps:.2f} x ({uncached.rps:,.0f} / {hand.rps:,.0f} req/s), "
         f"{uncached.cpu_ms:.2f} / {hand.cpu_ms:.2f} ms CPU"),
        (f"p99 ≤ {OPEN_P99_MS:g} ms at {OPEN_RATE} req/s uncached",
         at_rate.p99_ms <= OPEN_P99_MS and at_rate.errors == 0,
         f"p99 {at_rate.p99_ms:.1f} ms, {at_rate.errors} errors"),
        (f"hanging source: every answer ≤ {HANG_DEADLINE_MS} + {HANG_SLACK_MS:g} ms",
         hang.max_ms <= limit and hang.errors == 0,
         f"max {hang.max_ms:.0f} ms of {limit:.0f} ({hang.max_ms - HANG_DEADLINE_MS:+.0f} ms "
         f"past the deadline), {hang.errors} errors"),
        (f"RSS ≤ {RSS_MB:g} MB per deskside worker", rss <= RSS_MB, f"peak {rss:.0f} MB"),
    ]  # fmt: skip
    return [{"target": t, "pass": ok, "measured": measured} for t, ok, measured in rows]


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


def run(work: Path, env: dict[str, str], seconds: float, quick: bool) -> dict[str, Any]:
    """Measure the loopback suite; returns its part of the report."""
    python = sys.executable
    warmup_seconds, open_seconds, hang_seconds = (1, 5, 5) if quick else (3, 20, 10)
    files = request_files(work)
    probe = files["warmup"].read_text().split("\n", 1)[0]
    company = company_of(probe)
    (work / "deskside.toml").write_text(demo_config())
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

    measure = functools.partial(closed_loop, seconds=seconds, warmup_seconds=warmup_seconds)
    warmup = files["warmup"]
    results: dict[str, Result] = {}
    print(f"Loopback ({WORKERS} workers per server, wrk 1 thread x {CONNECTIONS} connections):")
    with serving("bare", uvicorn, env, work) as (pid, port):
        check_answer(port, probe, ["Acme HR"])
        results["bare"] = measure("bare", pid, port, warmup, files["uncached"])
    with serving("handwritten", gunicorn, env, work) as (pid, port):
        check_answer(port, probe, [company])
        results["handwritten"] = measure("hand-written", pid, port, warmup, files["uncached"])
    with serving("deskside", deskside, env, work) as (pid, port):
        check_answer(port, probe, [company])
        results["uncached"] = measure("deskside uncached", pid, port, warmup, files["uncached"])
        if results["uncached"].requests > len(files["uncached"].read_text().splitlines()):
            print("  warning: more requests than distinct customers: some were cache hits")
        results["open"] = open_loop(
            "deskside at a constant rate", pid, port, files["open"], open_seconds
        )
        results["cached"] = measure("deskside cached", pid, port, files["hot"], files["hot"])
    blackhole = Blackhole()
    try:
        (work / "hang.toml").write_text(hanging_config(blackhole.port))
        hanging = functools.partial(deskside, config="hang.toml")
        with serving("deskside-hang", hanging, env, work) as (pid, port):
            check_answer(port, probe, [company, "Slow API unavailable"], attempts=5)
            results["hang"] = closed_loop(
                "deskside with a hanging source", pid, port, warmup, files["hang"],
                hang_seconds, warmup_seconds,
            )  # fmt: skip
    finally:
        blackhole.close()
    verdicts = checks(results)
    print_report(results, verdicts)
    return {
        "settings": {
            "workers_per_server": WORKERS,
            "load": f"wrk, 1 thread, {CONNECTIONS} connections, {warmup_seconds} s warm-up, "
            f"{seconds:g} s measured; open loop {OPEN_RATE} req/s for {open_seconds} s",
            "customers": CUSTOMERS,
            "hot_customers": HOT_CUSTOMERS,
            "hang_deadline_ms": HANG_DEADLINE_MS,
        },
        "results": {key: {"label": LABELS[key], **asdict(r)} for key, r in results.items()},
        "checks": verdicts,
    }
