"""Where a Help Scout request's CPU goes, stage by stage, measured in-process.

    .venv/bin/python benchmarks/request_profile.py [--requests 3000] [--database-url URL]

The demo card with the Help Scout helpdesk only (as ``run.py``'s loopback scenario serves it)
over the benchmark's PostgreSQL database (100,000 customers, loaded as ``run.py`` loads it).
The ASGI app is called directly, one request at a time, so the process's CPU time across a
stage is that request's own: first unobserved (the true CPU per request), then with each stage
wrapped in a CPU timer (each timer adds about a microsecond). Uncached: every request a new
customer; cached: the same 100 customers again. Writes
``benchmarks/results/request_profile.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging.config
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sidebar.common import (
    DEFAULT_DATABASE,
    RESULTS,
    SECRET,
    asgi_call,
    demo_config,
    ensure_database,
    signed,
)

HOT = 100

# (owner, attribute, stage): the stages timed, each inclusive of what it calls.
STAGES = [
    ("deskside.protocols.base:Protocol", "verify", "signature check"),
    ("deskside.protocols.base:Protocol", "aparse", "body parsed, addresses normalised"),
    ("deskside.resolve:Resolver", "resolve", "sources, deadline, cache (resolver)"),
    ("deskside.sources.sql:SqlSource", "fetch", "of which the SQL query (asyncpg)"),
    ("deskside.service", "build_sidebar", "card laid out (compiled expressions)"),
    ("deskside.protocols.helpscout:HelpScout", "respond", "Help Scout markup"),
    ("deskside.protocols.base:Protocol", "response", "answer encoded (JSON)"),
    ("deskside.logs", "log_request", "access line (JSON log)"),
    ("deskside.middleware:Observe", "_count", "request metrics (Prometheus)"),
]
NESTED = {"of which the SQL query (asyncpg)"}


def _owner(path: str) -> Any:
    module, _, name = path.partition(":")
    found: Any = __import__(module, fromlist=["_"])
    return getattr(found, name) if name else found


def _timed(original: Callable[..., Any], add: Callable[[float], None]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(original):

        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return await original(*args, **kwargs)
            finally:
                add(time.process_time() - started)

        return timed_async

    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            add(time.process_time() - started)

    return timed


def observe(cpu: Counter[str]) -> Callable[[], None]:
    """Wrap every stage of STAGES in a CPU timer adding to ``cpu``; returns the undo."""
    undo = []
    for path, attribute, stage in STAGES:
        owner = _owner(path)
        original = getattr(owner, attribute)
        setattr(owner, attribute, _timed(original, lambda s, k=stage: cpu.update({k: s})))
        undo.append((owner, attribute, original))

    def restore() -> None:
        for owner, attribute, original in undo:
            setattr(owner, attribute, original)

    return restore


def _caller(app: Any, line: str) -> Callable[[], Awaitable[None]]:
    """The signed request ``line`` (see ``signed``) as an in-process call to ``app``."""
    signature, _, body = line.rstrip("\n").partition("\t")
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body.encode())).encode()),
        (b"x-helpscout-signature", signature.encode()),
    ]
    return asgi_call(app, "/helpscout", body.encode(), headers)


async def _cpu_us(calls: list[Callable[[], Awaitable[None]]]) -> float:
    started = time.process_time()
    for call in calls:
        await call()
    return (time.process_time() - started) / len(calls) * 1e6


async def measure(database: str, requests: int) -> dict[str, Any]:
    from deskside import logs
    from deskside.config import load_settings
    from deskside.server import create_app

    # Access lines as in production (JSON, info), written where they cost nothing more.
    null = open(os.devnull, "w")  # noqa: ASYNC230, SIM115 - the process's lifetime
    logging.config.dictConfig(logs.logging_config("json", "info", stream=null))
    os.environ["DESKSIDE_DEMO_DATABASE_URL"] = database
    os.environ["HELPSCOUT_SECRET"] = SECRET
    config = Path(tempfile.mkdtemp(prefix="deskside-bench-")) / "deskside.toml"
    config.write_text(demo_config())
    app = create_app(load_settings(config))
    async with app.router.lifespan_context(app):
        new = iter(range(1, 10 * requests))
        hot = [_caller(app, signed(n)) for n in range(1, HOT + 1)]
        for call in [*hot, *(_caller(app, signed(next(new))) for _ in range(200))]:
            await call()  # warm: connections, prepared statements, the hot customers cached
        found: dict[str, Any] = {}
        for kind in ("uncached", "cached"):

            def calls(kind: str = kind) -> list[Callable[[], Awaitable[None]]]:
                if kind == "cached":
                    return hot * (requests // HOT)
                return [_caller(app, signed(next(new))) for _ in range(requests)]

            total = await _cpu_us(calls())
            cpu: Counter[str] = Counter()
            restore = observe(cpu)
            try:
                batch = calls()
                observed = await _cpu_us(batch)
            finally:
                restore()
            stages = {stage: round(cpu[stage] / len(batch) * 1e6, 1) for _, _, stage in STAGES}
            top = sum(us for stage, us in stages.items() if stage not in NESTED)
            stages["framework, routing, middleware, the rest"] = round(observed - top, 1)
            found[kind] = {
                "cpu_us_per_request": round(total, 1),
                "observed_cpu_us_per_request": round(observed, 1),
                "stages_us": stages,
            }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument(
        "--database-url", default=os.environ.get("DESKSIDE_BENCH_DATABASE_URL", DEFAULT_DATABASE)
    )
    args = parser.parse_args()
    ensure_database(args.database_url, reload=False)
    found = asyncio.run(measure(args.database_url, args.requests))
    load = os.getloadavg()[0]
    print(f"CPU µs per Help Scout request, in-process, {args.requests:,} each; load {load:.1f}")
    print("| stage | uncached µs | cached µs |")
    print("| --- | ---: | ---: |")
    for stage in found["uncached"]["stages_us"]:
        print(
            f"| {stage} | {found['uncached']['stages_us'][stage]} "
            f"| {found['cached']['stages_us'][stage]} |"
        )
    for key, name in (
        ("observed_cpu_us_per_request", "whole request, timers on"),
        ("cpu_us_per_request", "whole request, no timers"),
    ):
        print(f"| **{name}** | {found['uncached'][key]} | {found['cached'][key]} |")
    path = RESULTS / "request_profile.json"
    report = {"requests": args.requests, "load_average": round(load, 2), **found}
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"Written to {path}")


if __name__ == "__main__":
    main()
