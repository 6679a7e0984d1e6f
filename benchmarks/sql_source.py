"""CPU per lookup of the SQL source on PostgreSQL, in-process, its two paths side by side.

    .venv/bin/python benchmarks/sql_source.py [--database-url URL] [--rounds 8]

Loads the demo data with 100,000 generated customers into PostgreSQL (database
``deskside_bench_sql``, created when missing, loaded once), then runs the demo's query for
distinct customers through SQLAlchemy's async engine (the path every dialect had before) and
through asyncpg's prepared statements (PostgreSQL's path now), in interleaved rounds so that
both see the same machine: one lookup at a time, 8 at once (within the pool of 10) and 16 at
once (past it: SQLAlchemy's pool opens overflow connections and closes them when they come
back). Reports the median over rounds of the CPU time (this process's user + system) and wall
time per lookup, and writes ``benchmarks/results/sql_source.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
import tomllib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/deskside_bench_sql"
CUSTOMERS = 100_000
QUERY: str = tomllib.loads((ROOT / "examples" / "demo" / "deskside.toml").read_text())["sources"][
    "app"
]["query"]
MARKER = f"deskside-bench-sql {CUSTOMERS}"


def ensure_database(url: str) -> None:
    """The database with the demo data and CUSTOMERS generated customers, loaded once."""
    import psycopg
    from psycopg import sql
    from sqlalchemy import make_url

    from deskside import demo

    parsed = make_url(url).set(drivername="postgresql")
    name = parsed.database or "deskside_bench_sql"
    admin = parsed.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as connection:
        if not connection.execute(
            "select 1 from pg_database where datname = %s", (name,)
        ).fetchone():
            connection.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    url = parsed.render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as connection:
        try:
            row = connection.execute("select obj_description('users'::regclass)").fetchone()
        except psycopg.errors.UndefinedTable:
            row = None
        if row is None or row[0] != MARKER:
            print(f"Loading the demo data with {CUSTOMERS:,} customers into {name} …", flush=True)
            asyncio.run(demo.create_demo_database(url, extra_customers=CUSTOMERS))
            connection.execute(
                "create index if not exists ix_users_email_lower on users (lower(email))"
            )
            connection.execute(sql.SQL("comment on table users is {}").format(MARKER))
            connection.execute("vacuum analyze")


def runners(url: str) -> dict[str, Any]:
    from deskside.sources.sql import async_url
    from deskside.sources.sql_drivers import AsyncpgRunner, SqlAlchemyRunner, translate

    translated = translate(QUERY)
    assert translated is not None
    return {
        "sqlalchemy": SqlAlchemyRunner(async_url(url), QUERY, 10),
        "asyncpg": AsyncpgRunner(async_url(url), translated, 10),
    }


async def measure(
    lookups: list[Any], run: Callable[[Any], Awaitable[list[Any]]], concurrency: int
) -> tuple[float, float, int]:
    """(CPU µs, wall µs) per lookup and the rows found, over ``lookups``."""
    found = 0

    async def one(lookup: Any) -> None:
        nonlocal found
        rows = await run(lookup)
        found += len(rows)

    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(lookups), concurrency):
        await asyncio.gather(*(one(x) for x in lookups[start : start + concurrency]))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / len(lookups) * 1e6, wall / len(lookups) * 1e6, found


async def bench(url: str, rounds: int, per_round: int) -> dict[str, Any]:
    from deskside.lookup import Lookup

    order = list(range(CUSTOMERS))
    random.Random(18).shuffle(order)
    emails = iter(f"customer{n}@bulk.example" for n in order)
    paths = runners(url)
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {}
    try:
        for runner in paths.values():  # connections made and statements prepared
            await measure([Lookup(emails=(next(emails),)) for _ in range(300)], _rows(runner), 16)
        for _ in range(rounds):
            for concurrency in (1, 8, 16):
                for path, runner in paths.items():
                    batch = [Lookup(emails=(next(emails),)) for _ in range(per_round)]
                    cpu, wall, found = await measure(batch, _rows(runner), concurrency)
                    assert found == per_round, (path, found)  # each customer found once
                    samples.setdefault(f"{path}, {concurrency} at once", {}).setdefault(
                        "samples", []
                    ).append((cpu, wall))
    finally:
        for runner in paths.values():
            await runner.aclose()
    figures = {}
    for scenario, data in samples.items():
        cpus = [cpu for cpu, _ in data["samples"]]
        walls = [wall for _, wall in data["samples"]]
        figures[scenario] = {
            "cpu_us_per_lookup": round(statistics.median(cpus), 1),
            "cpu_us_min": round(min(cpus), 1),
            "cpu_us_max": round(max(cpus), 1),
            "wall_us_per_lookup": round(statistics.median(walls), 1),
        }
    return figures


def _rows(runner: Any) -> Callable[[Any], Awaitable[list[Any]]]:
    return lambda lookup: runner.rows(lookup, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=DEFAULT_DATABASE)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=2000)
    args = parser.parse_args()
    ensure_database(args.database_url)
    load_before = os.getloadavg()
    started = time.monotonic()
    figures = asyncio.run(bench(args.database_url, args.rounds, args.per_round))
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    report = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "benchmarks/sql_source.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "deskside_commit": commit,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "rounds": args.rounds,
        "lookups_per_round": args.per_round,
        "run_seconds": round(time.monotonic() - started, 1),
        "figures": figures,
    }
    for scenario, figure in figures.items():
        print(
            f"{scenario:28} {figure['cpu_us_per_lookup']:8.1f} µs CPU"
            f" ({figure['cpu_us_min']:.1f} to {figure['cpu_us_max']:.1f})"
            f" {figure['wall_us_per_lookup']:8.1f} µs wall"
        )
    print(
        "load average",
        report["machine"]["load_average_before"],
        "→",
        report["machine"]["load_average_after"],
    )
    path = ROOT / "benchmarks" / "results" / "sql_source.json"
    path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
