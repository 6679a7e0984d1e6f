"""CPU per lookup of the SQL source, in-process: the path it took before beside its path now.

    .venv/bin/python benchmarks/sql_source.py [--backend postgresql|mysql|sqlite|all] [--rounds 8]

Loads the demo data with generated customers (database ``deskside_bench_sql``, created when
missing, loaded once): 100,000 into PostgreSQL, each looked up once; 2,000 into MariaDB/MySQL,
looked up in turn (its demo index is no help to ``lower(email)``, so every lookup scans the
table); 100,000 into a SQLite file in the temporary folder. Runs the demo's query through
SQLAlchemy's async engine (the path every dialect took before) and through the driver's own
path (now: asyncpg's prepared statements on PostgreSQL, aiomysql with deskside's pool on
MariaDB, aiosqlite's connections on SQLite), in interleaved rounds so that both see the same
machine: one lookup at a time, 8 at once (within the pool of 10) and 16 at once (past it:
SQLAlchemy's pool opens overflow connections and closes them when they come back). Reports the
median over rounds of the CPU time (this process's user + system) and wall time per lookup,
and writes ``benchmarks/results/sql_source.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATABASES = {
    "postgresql": "postgresql://postgres@127.0.0.1:5432/deskside_bench_sql",
    "mysql": "mysql://root@127.0.0.1:3306/deskside_bench_sql",
    "sqlite": f"sqlite:///{tempfile.gettempdir()}/deskside_bench_sql.sqlite3",
}
CUSTOMERS = {"postgresql": 100_000, "mysql": 2_000, "sqlite": 100_000}
QUERY: str = tomllib.loads((ROOT / "examples" / "demo" / "deskside.toml").read_text())["sources"][
    "app"
]["query"]


def marker(backend: str) -> str:
    return f"deskside-bench-sql {CUSTOMERS[backend]}"


def ensure_postgres(url: str) -> None:
    """The database with the demo data and its generated customers, loaded once."""
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
        if row is None or row[0] != marker("postgresql"):
            customers = CUSTOMERS["postgresql"]
            print(f"Loading the demo data with {customers:,} customers into {name} …", flush=True)
            asyncio.run(demo.create_demo_database(url, extra_customers=customers))
            connection.execute(
                "create index if not exists ix_users_email_lower on users (lower(email))"
            )
            connection.execute(sql.SQL("comment on table users is {}").format(marker("postgresql")))
            connection.execute("vacuum analyze")


async def ensure_mysql(url: str) -> None:
    """The database with the demo data and its generated customers, loaded once."""
    from sqlalchemy import make_url, text
    from sqlalchemy.ext.asyncio import create_async_engine

    from deskside import demo
    from deskside.sources.sql import async_url

    parsed = make_url(async_url(url))
    server = create_async_engine(parsed.set(database=""), isolation_level="AUTOCOMMIT")
    async with server.connect() as connection:
        await connection.execute(text(f"create database if not exists {parsed.database}"))
        found = await connection.scalar(
            text(
                "select table_comment from information_schema.tables"
                " where table_schema = :db and table_name = 'users'"
            ),
            {"db": parsed.database},
        )
    if found != marker("mysql"):
        customers = CUSTOMERS["mysql"]
        print(f"Loading the demo data with {customers:,} customers into MariaDB …", flush=True)
        await demo.create_demo_database(url, extra_customers=customers)
        async with server.connect() as connection:
            table = f"{parsed.database}.users"
            await connection.execute(text(f"alter table {table} comment = '{marker('mysql')}'"))
    await server.dispose()


def ensure_sqlite(url: str) -> None:
    """The file with the demo data and its generated customers, loaded once."""
    from sqlalchemy import make_url

    from deskside import demo

    path = str(make_url(url).database)
    with sqlite3.connect(path) as connection:
        loaded = connection.execute("pragma user_version").fetchone()[0]
    if loaded != CUSTOMERS["sqlite"]:
        print(f"Loading the demo data with {CUSTOMERS['sqlite']:,} customers into {path} …")
        asyncio.run(demo.create_demo_database(url, extra_customers=CUSTOMERS["sqlite"]))
        with sqlite3.connect(path) as connection:
            connection.execute(f"pragma user_version = {CUSTOMERS['sqlite']}")


def runners(backend: str, url: str) -> dict[str, Any]:
    from deskside.sources.sql import async_url
    from deskside.sources.sql_drivers import SqlAlchemyRunner, runner_for

    before = SqlAlchemyRunner(async_url(url), QUERY, 10)
    now = runner_for(async_url(url), QUERY, 10)
    assert type(now) is not SqlAlchemyRunner, "no driver path for this URL"
    return {
        "sqlalchemy": before,
        {"postgresql": "asyncpg", "mysql": "aiomysql", "sqlite": "aiosqlite"}[backend]: now,
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


async def bench(backend: str, url: str, rounds: int, per_round: int) -> dict[str, Any]:
    from deskside.lookup import Lookup

    order = list(range(CUSTOMERS[backend]))
    random.Random(18).shuffle(order)
    emails = itertools.cycle(f"customer{n}@bulk.example" for n in order)
    paths = runners(backend, url)
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
    parser.add_argument("--backend", choices=[*DATABASES, "all"], default="all")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=1000)
    args = parser.parse_args()
    backends = list(DATABASES) if args.backend == "all" else [args.backend]
    path = ROOT / "benchmarks" / "results" / "sql_source.json"
    # Each backend's figures are replaced when it is measured again; the others are kept.
    report: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    report.setdefault("backends", {})
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    for backend in backends:
        url = DATABASES[backend]
        if backend == "postgresql":
            ensure_postgres(url)
        elif backend == "sqlite":
            ensure_sqlite(url)
        else:
            asyncio.run(ensure_mysql(url))
        load_before = os.getloadavg()
        started = time.monotonic()
        figures = asyncio.run(bench(backend, url, args.rounds, args.per_round))
        report["backends"][backend] = {
            "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": "benchmarks/sql_source.py " + " ".join(sys.argv[1:]),
            "machine": {
                "cores": os.cpu_count(),
                "python": platform.python_version(),
                "deskside_commit": commit,
            },
            "rounds": args.rounds,
            "lookups_per_round": args.per_round,
            "customers": CUSTOMERS[backend],
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "run_seconds": round(time.monotonic() - started, 1),
            "figures": figures,
        }
        print(backend, "load average", report["backends"][backend]["load_average_before"])
        for scenario, figure in figures.items():
            print(
                f"  {scenario:28} {figure['cpu_us_per_lookup']:8.1f} µs CPU"
                f" ({figure['cpu_us_min']:.1f} to {figure['cpu_us_max']:.1f})"
                f" {figure['wall_us_per_lookup']:8.1f} µs wall"
            )
    report = {"backends": dict(sorted(report["backends"].items()))}
    path.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
