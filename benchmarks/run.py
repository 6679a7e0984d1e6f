"""deskside's sidebar benchmarks, in one command (from the repository root):

    .venv/bin/python benchmarks/run.py                       # everything (about 7 minutes)
    .venv/bin/python benchmarks/run.py --scenario realistic  # one scenario
    .venv/bin/python benchmarks/run.py --quick               # shorter runs, rougher figures

It installs the ``bench`` extra if missing, asks to install wrk if missing (the loopback
scenario needs it), loads the demo HR SaaS data with 100,000 generated customers into
PostgreSQL (database ``deskside_bench``, created when missing, reloaded only when ``demo.py``
changes), then measures:

- ``loopback`` (``sidebar/loopback.py``): a bare ASGI app (the ceiling), the hand-written
  endpoint and ``deskside serve``, uncached, cached, at a constant rate and with a source that
  hangs, next to PostgreSQL on the same host, loaded with wrk; written to
  ``benchmarks/results/latest.json``;
- ``realistic`` (``sidebar/realistic.py``): the hand-written endpoint and deskside with the
  database behind a slow proxy and a 150 ms billing API, 1,000 customers with a Zipf-like
  popularity, 32 and 256 connections; written to ``benchmarks/results/realistic.json``.

Each prints a table and the issue's floors (met/missed). Every request is a correctly signed
Help Scout request, built before the measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sidebar import loopback, realistic
from sidebar.common import (
    COMMAND,
    DEFAULT_DATABASE,
    RESULTS,
    ROOT,
    SECRET,
    ensure_database,
    ensure_tools,
    machine,
)

SCENARIOS = {"loopback": "latest.json", "realistic": "realistic.json"}


def write(name: str, report: dict[str, Any]) -> None:
    path = RESULTS / SCENARIOS[name]
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nWritten to {path.relative_to(ROOT)} ({report['run_seconds']} s of measuring).")


def checkout(ref: str, into: Path) -> str:
    """Extract ``src/`` and ``examples/`` of commit ``ref`` into ``into`` and import deskside
    from there from now on (this process and the servers); returns the commit's short hash."""
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run(
        [*git, "rev-parse", "--short", f"{ref}^{{commit}}"], capture_output=True, text=True
    )
    if commit.returncode != 0:
        sys.exit(f"--checkout: no commit {ref!r} in this repository")
    archive = subprocess.Popen([*git, "archive", ref, "src", "examples"], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    if archive.wait() != 0:
        sys.exit(f"--checkout: git archive {ref} failed")
    source = str(into / "src")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, source)
    return commit.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description="deskside's sidebar benchmarks.")
    parser.add_argument(
        "--scenario", choices=["all", *SCENARIOS], default="all", help="what to measure"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DESKSIDE_BENCH_DATABASE_URL", DEFAULT_DATABASE),
        help="PostgreSQL database for the benchmark data (created if missing)",
    )
    parser.add_argument(
        "--seconds", type=float, help="each measurement (default 15, realistic 20; quick 5)"
    )
    parser.add_argument("--quick", action="store_true", help="short runs: a rough look")
    parser.add_argument(
        "--checkout",
        metavar="REF",
        help="measure deskside as committed at REF (e.g. HEAD), not the working tree",
    )
    parser.add_argument("--reload", action="store_true", help="reload the data even if present")
    parser.add_argument("--yes", action="store_true", help="install wrk without asking")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    chosen = list(SCENARIOS) if args.scenario == "all" else [args.scenario]

    ensure_tools(args.yes, wrk="loopback" in chosen)
    measured_tree = tempfile.TemporaryDirectory(prefix="deskside-bench-tree-")
    commit = checkout(args.checkout, Path(measured_tree.name)) if args.checkout else None
    postgres = ensure_database(args.database_url, args.reload)
    env = {
        **os.environ,
        "HELPSCOUT_SECRET": SECRET,
        "DATABASE_URL": args.database_url,  # the hand-written app's
        "DESKSIDE_DEMO_DATABASE_URL": args.database_url,  # the demo config's
    }
    for name in chosen:
        started = time.monotonic()
        about = machine(postgres, commit)  # with the load average before the run
        default_seconds = 5.0 if args.quick else {"loopback": 15.0, "realistic": 20.0}[name]
        seconds = args.seconds or default_seconds
        with tempfile.TemporaryDirectory(prefix="deskside-bench-") as scratch:
            if name == "loopback":
                measured = loopback.run(Path(scratch), env, seconds, args.quick)
            else:
                measured = realistic.run(Path(scratch), env, args.database_url, seconds, args.quick)
        report = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": COMMAND
            + ("" if args.scenario == "all" else f" --scenario {name}")
            + (" --quick" if args.quick else "")
            + (f" --checkout {args.checkout}" if args.checkout else ""),
            "machine": about,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            **measured,
            "run_seconds": round(time.monotonic() - started),
        }
        write(name, report)
    measured_tree.cleanup()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit("Interrupted; every server was stopped.")
