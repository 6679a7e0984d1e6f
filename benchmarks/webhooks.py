"""How many Help Scout webhooks per second ``deskside serve`` stores durably:

    .venv/bin/python benchmarks/webhooks.py

For SQLite (one server process, the default insights database) and PostgreSQL (two processes),
it serves a config with ``[insights]`` (the worker on, as in production), sends distinct,
correctly signed ``convo.customer.reply.created`` deliveries (a conversation with three
threads, ~1.5 KB) with wrk for a fixed time, then counts the events on disk: the rate is
*stored* deliveries per second, each committed before its 200 was sent. It prints a table and
writes ``benchmarks/results/webhooks.json``. "applied by": how long after the burst the
server's own worker, which yields to acknowledging while deliveries arrive, has applied them all.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from run import ROOT, ensure_tools, serving

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "webhooks.json"
SECRET = "bench-webhook-secret"  # noqa: S105 - the benchmark signs its own requests
FLOOR = 1000  # stored deliveries per second on SQLite
DELIVERIES = 150_000  # more than a run sends: every delivery is new


def delivery(n: int) -> tuple[str, bytes]:
    """The signature and body of delivery ``n``: a new message in conversation ``n``."""
    email = f"customer{n % 5000}@example.com"
    threads = [
        {
            "id": n * 10 + t,
            "type": "customer" if t % 2 == 0 else "message",
            "body": f"<p>Hello, the export of report {n} fails with error {t}.</p>"
            "<p>Steps: open Reports, choose CSV, press Export.</p><p>Thanks!</p>",
            "createdBy": {"id": n % 5000, "type": "customer" if t % 2 == 0 else "user"},
            "createdAt": "2026-11-20T09:00:00Z",
        }
        for t in range(3)
    ]
    document = {
        "id": n,
        "number": n + 1000,
        "subject": f"Export fails for report {n}",
        "status": "active",
        "state": "published",
        "type": "email",
        "mailboxId": 1,
        "createdAt": "2026-11-20T09:00:00Z",
        "userUpdatedAt": "2026-11-20T09:10:00Z",
        "primaryCustomer": {"id": n % 5000, "email": email, "first": "Cora"},
        "_embedded": {"threads": threads},
    }
    body = json.dumps(document, separators=(",", ":")).encode()
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha1).digest())
    return signature.decode(), body


def write_deliveries(path: Path, offset: int) -> None:
    with path.open("wb") as out:
        for n in range(offset, offset + DELIVERIES):
            signature, body = delivery(n)
            out.write(signature.encode() + b"\tconvo.customer.reply.created\t" + body + b"\n")


def config(path: Path, database: str) -> None:
    path.write_text(
        f"""
[sources.app]
kind = "sql"
url = "sqlite:///{path.parent / "unused.db"}"
query = "select 1 as one where :email is not null"

[insights]
database = "{database}"

[insights.helpscout]
webhook_secret = "{SECRET}"
""",
        encoding="utf-8",
    )


def event_counts(database: str) -> dict[str, int]:
    """Events on disk by status, read with the deskside command (its own process)."""
    command = [sys.executable, "-m", "deskside", "events", "--json", "--database", database]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    counts: dict[str, int] = json.loads(output)["counts"]
    return counts


def drain_seconds(database: str, limit: float = 300) -> float:
    """How long after the burst the server's worker needs to apply every stored event."""
    started = time.monotonic()
    while event_counts(database)["pending"] and time.monotonic() - started < limit:
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def measure(name: str, database: str, workers: int, seconds: float, work: Path) -> dict[str, Any]:
    print(f"  {name} …", flush=True)
    cfg = work / f"{name}.toml"
    config(cfg, database)
    deliveries = work / f"{name}.tsv"
    write_deliveries(deliveries, offset=int(time.time()) * 1000)
    env = {**os.environ, "DESKSIDE_LOG_LEVEL": "warning"}
    command = [sys.executable, "-m", "deskside", "serve", "--config", str(cfg)]
    with serving(name, lambda port: [*command, "--port", str(port), "--workers", str(workers)],
                 env, work) as (_pid, port):  # fmt: skip
        before = sum(event_counts(database).values())
        wrk = [
            "wrk", "-t1", "-c32", f"-d{seconds:g}s", "--timeout", "10s",
            "-s", str(HERE / "webhooks.lua"), f"http://127.0.0.1:{port}/webhooks/helpscout",
            "--", str(deliveries),
        ]  # fmt: skip
        output = subprocess.run(wrk, capture_output=True, text=True, check=True).stdout
        summary = next(line for line in output.splitlines() if line.startswith("BENCH "))
        run = json.loads(summary.removeprefix("BENCH "))
        stored = sum(event_counts(database).values()) - before
        drained = drain_seconds(database)
    elapsed = run["duration_us"] / 1e6
    result = {
        "scenario": name,
        "workers": workers,
        "requests": run["requests"],
        "refused": run["errors"] + run["non_2xx"],
        "stored": stored,
        "seconds": round(elapsed, 2),
        "stored_per_second": round(stored / elapsed),
        "drained_after_seconds": drained,
        "p50_ms": run["p50_us"] / 1000,
        "p99_ms": run["p99_us"] / 1000,
    }
    if run["requests"] > DELIVERIES:
        raise SystemExit("more requests than distinct deliveries: raise DELIVERIES")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument(
        "--postgres",
        default=os.environ.get("DESKSIDE_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1/test"),
        help="a PostgreSQL database to store into (tables are created; events accumulate)",
    )
    parser.add_argument("--yes", action="store_true", help="install wrk without asking")
    args = parser.parse_args()
    ensure_tools(args.yes)
    with tempfile.TemporaryDirectory(prefix="deskside-webhooks-") as tmp:
        work = Path(tmp)
        results = [
            measure("sqlite", f"sqlite:///{work / 'insights.db'}", 1, args.seconds, work),
            measure("postgresql", args.postgres, 2, args.seconds, work),
        ]
    header = ("scenario", "stored/s", "stored", "refused", "p50 ms", "p99 ms", "applied by")
    print("\n" + "".join(f"{h:>12}" for h in header))
    for r in results:
        print(
            f"{r['scenario']:>12}{r['stored_per_second']:>12}{r['stored']:>12}{r['refused']:>12}"
            f"{r['p50_ms']:>12.1f}{r['p99_ms']:>12.1f}{r['drained_after_seconds']:>11.1f}s"
        )
    sqlite = results[0]["stored_per_second"]
    print(f"\nSQLite floor {FLOOR}/s: {'PASS' if sqlite >= FLOOR else 'MISS'} ({sqlite}/s)")
    RESULTS.write_text(
        json.dumps({"floor_per_second": FLOOR, "results": results}, indent=2) + "\n",
        encoding="utf-8",
    )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
