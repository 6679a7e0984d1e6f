"""CPU per card build and per helpdesk answer, in-process, on the demo config:

    .venv/bin/python benchmarks/card.py                  # this tree
    .venv/bin/python benchmarks/card.py --baseline HEAD~3  # and REF, interleaved

The demo's ``[card]`` (6 badges, 13 fields, 3 sections, 3 links) is laid out for demo customers
whose rows are built in memory as the SQL source returns them (no database, no event loop):
one account (``owner@acme.example``, the headline), two accounts, the injection customer, one
with a ``billing`` record (the Stripe section shown) and one nobody knows. Each helpdesk the
demo serves then answers that sidebar: ``respond`` and the encoded body (``response``), as the
server does for an uncached request.

Figures are CPU time (``time.process_time``) per call in µs: for each measurement, ``--repeat``
batches of calls lasting about ``--batch-ms`` each; the minimum is the figure (the least
disturbed batch on a busy machine), the median is kept too. With ``--baseline REF`` the tree at
REF (``git archive``) and this tree are measured alternately in fresh processes ``--rounds``
times each, and every answer's bytes are compared (a SHA-256 per helpdesk and customer).
Writes ``benchmarks/results/card.json`` (``--no-write`` to skip).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "card.json"
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = "deskside-card-benchmark"  # noqa: S105 - a fixed secret, nothing is served
HEADLINE = "one account"


def customers() -> dict[str, tuple[list[str], bool]]:
    """Scenario → (addresses, with a billing record)."""
    return {
        "one account": (["owner@acme.example"], False),
        "two accounts": (["pat@initech.example", "pat@initrode.example"], False),
        "injection": (["mallory@evil.example"], False),
        "with billing": (["ceo@umbrella.example"], True),
        "unknown": (["nobody@nowhere.example"], False),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every figure of this process's deskside (this tree, or the one on ``sys.path``)."""
    for env in _secret_envs():
        os.environ.setdefault(env, SECRET)
    os.environ.setdefault("DESKSIDE_DEMO_DATABASE_URL", "sqlite:///:memory:")
    from deskside import demo
    from deskside.config import load_settings
    from deskside.layout import build_sidebar

    settings = load_settings(demo.demo_config_path(), extra_helpdesks=demo.demo_helpdesks())
    protocols = [_protocol(name, config) for name, config in settings.helpdesks.items()]
    figures: dict[str, Any] = {"card": {}, "answer": {}, "answers_sha256": {}}
    for scenario, (emails, billing) in customers().items():
        profile = _profile(emails, billing)
        sidebar = build_sidebar(settings.card, profile, now=NOW)
        figures["card"][scenario] = _timed(
            lambda p=profile: build_sidebar(settings.card, p, now=NOW), args
        )
        answers: dict[str, Any] = {}
        digests: dict[str, str] = {}
        for protocol in protocols:
            request = protocol.example_request(SECRET, emails)

            def answer(
                p: Any = protocol, r: Any = request, s: Any = sidebar, f: Any = profile
            ) -> bytes:
                return bytes(p.response(p.respond(s, f, r)).body)

            digests[protocol.name] = hashlib.sha256(answer()).hexdigest()
            answers[protocol.name] = _timed(answer, args)
        figures["answer"][scenario] = answers
        figures["answers_sha256"][scenario] = digests
    return figures


def _secret_envs() -> list[str]:
    from deskside import demo

    return list(demo.demo_secret_envs().values())


def _protocol(name: str, config: Any) -> Any:
    from deskside.protocols import build_protocol

    return build_protocol(name, config)


def _profile(emails: list[str], billing: bool) -> Any:
    """What the demo's ``app`` source (and a Stripe ``billing`` source) would return."""
    from deskside import demo
    from deskside.expressions import normalise_record
    from deskside.lookup import Lookup
    from deskside.resolve import Profile, SourceResult

    rows = demo.demo_rows(today=NOW.date())
    companies = {company["id"]: company for company in rows["companies"]}
    records = []
    for user in sorted(rows["users"], key=lambda u: companies[u["company_id"]]["name"]):
        if user["email"] not in emails:
            continue
        company = companies[user["company_id"]]
        record = {key: user[key] for key in ("name", "email", "role", "is_owner", "last_seen_at")}
        record |= {"company_id": company["id"], "company": company["name"]}
        record |= {
            key: company[key]
            for key in (
                "plan",
                "status",
                "mrr_cents",
                "employees",
                "employee_limit",
                "trial_ends_at",
                "renews_on",
                "stripe_customer_id",
                "modules",
            )
        }
        records.append(normalise_record(record))
    results = {"app": SourceResult(records=records, elapsed_ms=0.4)}
    labels = {"app": "App database"}
    if billing:
        record = {
            "subscription_id": "sub_demo0006",
            "plan": "Enterprise",
            "status": "active",
            "customer_mrr_cents": 240000,
            "current_period_end": date(2026, 12, 1) + timedelta(days=20),
            "customer_url": "https://dashboard.stripe.com/customers/cus_demo0006",
        }
        results["billing"] = SourceResult(records=[normalise_record(record)], elapsed_ms=150.0)
        labels["billing"] = "Billing"
    lookup = Lookup(emails=tuple(emails), context={"desk": "benchmark"})
    return Profile(lookup=lookup, results=results, labels=labels)


def _timed(call: Callable[[], Any], args: argparse.Namespace) -> dict[str, float]:
    """µs of CPU per call: the minimum and median over ``args.repeat`` batches."""
    for _ in range(20):
        call()
    started = time.process_time()
    calls = 0
    while time.process_time() - started < 0.05:
        call()
        calls += 1
    per_batch = max(10, int(calls * args.batch_ms / 50))
    batches = []
    for _ in range(args.repeat):
        gc.collect()
        started = time.process_time()
        for _ in range(per_batch):
            call()
        batches.append((time.process_time() - started) / per_batch * 1e6)
    return {"min_us": round(min(batches), 2), "median_us": round(statistics.median(batches), 2)}


# ── Comparing with another commit ─────────────────────────────────────────────────────────────


def _export(ref: str, directory: Path) -> str:
    """``src`` and ``examples`` of ``ref`` unpacked in ``directory``; its short commit id."""
    commit = _git("rev-parse", "--short", ref)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "src", "examples"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(directory, filter="data")
    return commit


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def _child(args: argparse.Namespace, src: Path | None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", "--repeat", str(args.repeat)]
    command += ["--batch-ms", str(args.batch_ms)]
    env = {**os.environ, "PYTHONPATH": str(src)} if src else dict(os.environ)
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
    return dict(json.loads(output))


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs merged: each figure's minimum over runs, and the median of their medians."""
    merged: dict[str, Any] = {"card": {}, "answer": {}}
    for scenario in runs[0]["card"]:
        merged["card"][scenario] = _merge([run["card"][scenario] for run in runs])
        merged["answer"][scenario] = {
            desk: _merge([run["answer"][scenario][desk] for run in runs])
            for desk in runs[0]["answer"][scenario]
        }
    merged["answers_sha256"] = runs[0]["answers_sha256"]
    return merged


def _merge(figures: list[dict[str, float]]) -> dict[str, float]:
    return {
        "min_us": min(f["min_us"] for f in figures),
        "median_us": round(statistics.median(f["median_us"] for f in figures), 2),
    }


def _table(label: str, after: dict[str, Any], before: dict[str, Any] | None) -> None:
    print(f"\n{label} (µs of CPU per call, minimum of batches)")
    rows = [("card build", scenario) for scenario in after["card"]]
    for scenario in after["answer"]:
        rows += [(desk, scenario) for desk in after["answer"][scenario]]
    for what, scenario in rows:
        now = _figure(after, what, scenario)
        if before is None:
            print(f"  {what:<22} {scenario:<14} {now:>9.1f}")
            continue
        then = _figure(before, what, scenario)
        print(f"  {what:<22} {scenario:<14} {then:>9.1f} → {now:>9.1f}  {then / now:.2f}x")


def _figure(figures: dict[str, Any], what: str, scenario: str) -> float:
    if what == "card build":
        return float(figures["card"][scenario]["min_us"])
    return float(figures["answer"][scenario][what]["min_us"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", help="a git ref to compare with, measured alternately")
    parser.add_argument("--rounds", type=int, default=3, help="processes per tree (--baseline)")
    parser.add_argument("--repeat", type=int, default=7, help="batches per figure")
    parser.add_argument("--batch-ms", type=float, default=100.0, help="CPU time per batch")
    parser.add_argument("--no-write", action="store_true", help="do not write the results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        json.dump(measure(args), sys.stdout)
        return
    load_before = os.getloadavg()
    before_runs: list[dict[str, Any]] = []
    after_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as directory:
        baseline_commit = _export(args.baseline, Path(directory)) if args.baseline else None
        for _ in range(args.rounds if args.baseline else 1):
            if args.baseline:
                before_runs.append(_child(args, Path(directory) / "src"))
            after_runs.append(_child(args, None))
    after = _best(after_runs)
    before = _best(before_runs) if before_runs else None
    identical = None
    if before is not None:
        identical = before["answers_sha256"] == after["answers_sha256"]
    _table("this tree" if before is None else f"{baseline_commit} → this tree", after, before)
    if identical is not None:
        print(f"\nevery answer byte-identical to {baseline_commit}: {identical}")
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "commit": _git("describe", "--always", "--dirty"),
        "baseline_commit": baseline_commit,
        "rounds": args.rounds if args.baseline else 1,
        "repeat": args.repeat,
        "batch_ms": args.batch_ms,
        "answers_identical_to_baseline": identical,
        "after": after,
        "before": before,
    }
    if not args.no_write:
        RESULTS.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(f"written: {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
