"""How well and how fast the conversation classifier labels issue reports and support messages:

    .venv/bin/python benchmarks/classify.py [--quick]   # the benchmark (scores test splits)
    .venv/bin/python benchmarks/classify.py --dev       # cross-validation on train splits only

- Issue trackers (``data/trackers/*.jsonl``: four made-up projects, 300 train / 100 test
  reports each, bug / feature / question). Per project and averaged, macro-F1 on its test
  split: *learning* — its train split written to an examples file and read the way
  ``deskside classify --examples`` reads it, learnt together with the shipped examples;
  *out of the box* — the shipped examples only (``docs`` and ``other`` answers count as
  ``question``); the plain TF-IDF + logistic regression baseline trained on the train split
  and, out of the box, on the shipped examples.
  Pooled over projects (learning mode): calibration (ECE) and how many answers are "unsure"
  and how accurate the others are.
- Support messages: shipped examples only, scored on ``data/support_heldout.jsonl`` (floor
  0.95), with calibration.
- Speed: training time with one project's examples, messages per second (short messages and
  issue reports), as CPU time of the process (the floors apply to it: the work is
  single-threaded, so it holds on a shared machine) and as wall time; ``deskside classify``
  end to end.

``--encoder`` benchmarks the classifier with the optional sentence encoder stacked (the
``encoder`` extra and its weights installed; its floor is 100 messages per second, and the
encoder's own speed is reported too) and writes ``benchmarks/results/classify_encoder.json``;
``--encoder-weight`` tries another block weight. Without it, the default install's model.

``--dev`` never reads a test split: 5-fold cross-validation on each tracker project's train
split and on the older ``data/realistic`` projects (all their reports), plus out-of-the-box
scores on those same reports. Decide model changes with it. Prints a table and writes
``benchmarks/results/classify.json`` (``--dev`` writes nothing).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline

from deskside.insights.analysis import classify as classify_module
from deskside.insights.analysis.classify import (
    UNSURE_BELOW,
    Classifier,
    Example,
    Prediction,
    labels_for,
    load_shipped_examples,
    model_description,
    read_examples_file,
)
from deskside.insights.analysis.encoder import ENVIRONMENT_SWITCH, shared_encoder, threads

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
TRACKERS = DATA / "trackers"
RESULTS = HERE / "results" / "classify.json"
FLOOR_PER_SECOND = 500
ENCODER_FLOOR_PER_SECOND = 100
SUPPORT_FLOOR = 0.95
TRAIN_LIMIT_SECONDS = 120
ISSUE_LABELS = ("bug", "feature", "question")

Row = dict[str, Any]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="trackers and support only")
    parser.add_argument("--dev", action="store_true", help="cross-validation on train splits")
    parser.add_argument(
        "--encoder", action="store_true", help="with the optional sentence encoder stacked"
    )
    parser.add_argument("--encoder-weight", type=float, help="the embeddings' block weight")
    args = parser.parse_args()
    # this process's and deskside classify's
    os.environ[ENVIRONMENT_SWITCH] = "on" if args.encoder else "off"
    written_to = RESULTS.with_name("classify_encoder.json") if args.encoder else RESULTS
    if args.encoder_weight is not None:
        classify_module._ENCODER_WEIGHT = args.encoder_weight
    if args.dev:
        print(f"Model: {model_description()}")
        report_dev(dev())
        return
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": model_description(),
        "unsure_below": UNSURE_BELOW,
    }
    results["trackers"] = trackers()
    results["support"] = support()
    if not args.quick:
        results["speed"] = speed()
        written_to.parent.mkdir(parents=True, exist_ok=True)
        written_to.write_text(json.dumps(results, indent=2) + "\n")
    report(results, written_to=None if args.quick else written_to)


# --- the data -------------------------------------------------------------------------------


def _jsonl(path: Path) -> list[Row]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def projects() -> dict[str, list[Row]]:
    """The tracker projects, by name (file stem)."""
    return {path.stem: _jsonl(path) for path in sorted(TRACKERS.glob("*.jsonl"))}


def issue_text(row: Row) -> str:
    """A report as ``deskside classify`` reads a ``{"title", "body"}`` input line."""
    return "\n\n".join(part for part in (row.get("title"), row.get("body")) if part)


def as_issue_label(label: str) -> str:
    """``docs`` and ``other`` answers count as ``question`` on the issue trackers."""
    return label if label in ISSUE_LABELS else "question"


def file_examples(rows: Sequence[Row]) -> list[Example]:
    """``rows`` written to a JSON-lines examples file and read back as ``--examples`` does."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "examples.jsonl"
        path.write_text(
            "".join(
                json.dumps({"title": r["title"], "body": r.get("body", ""), "label": r["label"]})
                + "\n"
                for r in rows
            )
        )
        return read_examples_file(path)


def learning(train: Sequence[Row]) -> Classifier:
    """A classifier trained as ``deskside classify --examples FILE`` trains."""
    everything = [*load_shipped_examples(), *file_examples(train)]
    classifier = Classifier()
    classifier.train(everything, labels=labels_for(everything))
    return classifier


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    return float(f1_score(list(truth), [as_issue_label(p) for p in predicted], average="macro"))


def baseline(train: Sequence[Row], test: Sequence[Row]) -> float:
    """Plain TF-IDF (scikit-learn defaults) + logistic regression, on the raw texts."""
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=2000))
    model.fit([issue_text(r) for r in train], [r["label"] for r in train])
    return macro_f1([r["label"] for r in test], model.predict([issue_text(r) for r in test]))


# --- the benchmark --------------------------------------------------------------------------


def trackers() -> dict[str, Any]:
    """Learning, out-of-the-box and baseline macro-F1 per tracker project, on its test split."""
    shipped = Classifier.default()
    shipped_rows = [{"title": e.text, "label": e.label} for e in load_shipped_examples()]
    found: dict[str, Any] = {}
    pooled: list[tuple[Prediction, str]] = []
    for name, rows in projects().items():
        train = [r for r in rows if r["split"] == "train"]
        test = [r for r in rows if r["split"] == "test"]
        texts, truth = [issue_text(r) for r in test], [r["label"] for r in test]
        started = time.perf_counter()
        model = learning(train)
        seconds = time.perf_counter() - started
        predictions = model.predict(texts)
        pooled += zip(predictions, truth, strict=True)
        found[name] = {
            "train": len(train),
            "test": len(test),
            "learning": round(macro_f1(truth, [p.label for p in predictions]), 3),
            "out_of_the_box": round(macro_f1(truth, [p.label for p in shipped.predict(texts)]), 3),
            "baseline": round(baseline(train, test), 3),
            "baseline_out_of_the_box": round(baseline(shipped_rows, test), 3),
            "train_seconds": round(seconds, 2),
        }
    kinds = ("learning", "out_of_the_box", "baseline", "baseline_out_of_the_box")
    mean = {k: round(float(np.mean([p[k] for p in found.values()])), 3) for k in kinds}
    predictions = [p for p, _ in pooled]
    truth = [t for _, t in pooled]
    return {
        "projects": found,
        "mean": mean,
        "calibration": calibration(predictions, truth),
        "abstention": abstention(predictions, truth),
    }


def support() -> dict[str, Any]:
    """Macro-F1 on the held-out support messages, shipped examples only; calibration."""
    held = _jsonl(DATA / "support_heldout.jsonl")
    texts, truth = [row["text"] for row in held], [row["label"] for row in held]
    shipped = load_shipped_examples()
    plain = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=2000))
    plain.fit([e.text for e in shipped], [e.label for e in shipped])
    predictions = Classifier.default().predict(texts)
    return {
        "examples": len(shipped),
        "held_out": len(held),
        "macro_f1": round(
            float(f1_score(truth, [p.label for p in predictions], average="macro")), 3
        ),
        "baseline": round(float(f1_score(truth, plain.predict(texts), average="macro")), 3),
        "floor": SUPPORT_FLOOR,
        "calibration": calibration(predictions, truth, issues=False),
        "abstention": abstention(predictions, truth, issues=False),
    }


def speed() -> dict[str, Any]:
    """Training time with a project's 300 examples and messages per second, each as CPU time
    of this process (the work is single-threaded: a fair figure on a shared machine) and as
    wall time, and ``deskside classify`` end to end (wall time) with a project's examples."""
    rng = random.Random(5)
    rows = [r for rs in projects().values() for r in rs]
    train = [r for r in rows if r["split"] == "train"][:300]
    short = [row["text"] for row in _jsonl(DATA / "support_heldout.jsonl")]
    inputs = [f"{rng.choice(short)} ({n})" for n in range(5000)]
    reports = [issue_text(r) for r in rows]
    long_inputs = [f"{rng.choice(reports)} ({n})" for n in range(3000)]
    model, train_timing = _timed(lambda: learning(train))
    _, short_timing = _timed(lambda: model.predict(inputs))
    _, long_timing = _timed(lambda: model.predict(long_inputs))
    encoder = encoder_speed(inputs[:1000], long_inputs[:500]) if model.uses_encoder else None
    with tempfile.TemporaryDirectory() as scratch:
        examples = Path(scratch) / "examples.jsonl"
        examples.write_text("".join(json.dumps(r) + "\n" for r in train))
        lines, cli_timing = _timed(
            lambda: _cli(
                ["--examples", str(examples)],
                [{"id": n, "text": t} for n, t in enumerate(long_inputs)],
            )
        )
    assert len(lines) == len(long_inputs), "deskside classify lost inputs"
    return {
        "train_cpu_seconds": round(train_timing[0], 2),
        "train_wall_seconds": round(train_timing[1], 2),
        "train_limit_seconds": TRAIN_LIMIT_SECONDS,
        "messages_per_cpu_second": round(len(inputs) / short_timing[0]),
        "messages_per_wall_second": round(len(inputs) / short_timing[1]),
        "reports_per_cpu_second": round(len(long_inputs) / long_timing[0]),
        "reports_per_wall_second": round(len(long_inputs) / long_timing[1]),
        "reports_mean_chars": round(sum(map(len, reports)) / max(1, len(reports))),
        "floor": ENCODER_FLOOR_PER_SECOND if encoder else FLOOR_PER_SECOND,
        "encoder": encoder,
        "cli_3000_reports_wall_seconds": round(cli_timing[1], 2),
        "load_average": round(os.getloadavg()[0], 1),
    }


def encoder_speed(messages: Sequence[str], reports: Sequence[str]) -> dict[str, Any]:
    """The sentence encoder alone: messages and reports per CPU second of this process (all
    its threads) and per wall second, new texts each time (none remembered)."""
    encoder = shared_encoder()
    assert encoder is not None, "the encoder is not available"
    found: dict[str, Any] = {"threads": threads()}
    for kind, texts in (("messages", messages), ("reports", reports)):
        fresh = [f"{text} [{random.random()}]" for text in texts]
        _, (cpu, wall) = _timed(lambda fresh=fresh: encoder.embed(fresh))
        found[f"{kind}_per_cpu_second"] = round(len(texts) / cpu)
        found[f"{kind}_per_wall_second"] = round(len(texts) / wall)
    return found


def _timed(work: Callable[[], Any]) -> tuple[Any, tuple[float, float]]:
    """``work()``, and the CPU seconds of this process and the wall seconds it took."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = work()
    return result, (time.process_time() - cpu, time.perf_counter() - wall)


def _right(predictions: Sequence[Prediction], truth: Sequence[str], issues: bool) -> Any:
    same = as_issue_label if issues else str
    return np.array([same(p.label) == same(t) for p, t in zip(predictions, truth, strict=True)])


def calibration(
    predictions: Sequence[Prediction], truth: Sequence[str], *, issues: bool = True
) -> dict[str, Any]:
    """Expected calibration error over ten equal-width confidence bins, and the bins (on
    issues, ``docs`` and ``other`` count as ``question``)."""
    confidence = np.array([p.confidence for p in predictions])
    right = _right(predictions, truth, issues)
    edges = np.linspace(0, 1, 11)
    edges[-1] = 1.0001
    bins, ece = [], 0.0
    for low, high in itertools.pairwise(edges):
        inside = (confidence >= low) & (confidence < high)
        if inside.any():
            ece += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
            bins.append(
                {
                    "range": f"{low:.1f}-{min(high, 1):.1f}",
                    "count": int(inside.sum()),
                    "accuracy": round(float(right[inside].mean()), 3),
                    "confidence": round(float(confidence[inside].mean()), 3),
                }
            )
    return {"ece": round(float(ece), 4), "accuracy": round(float(right.mean()), 3), "bins": bins}


def abstention(
    predictions: Sequence[Prediction], truth: Sequence[str], *, issues: bool = True
) -> dict[str, Any]:
    """How many predictions are unsure, and how accurate the sure ones and the unsure ones are."""
    unsure = np.array([p.unsure for p in predictions])
    right = _right(predictions, truth, issues)
    return {
        "unsure_rate": round(float(unsure.mean()), 3),
        "accuracy_sure": round(float(right[~unsure].mean()), 3) if (~unsure).any() else None,
        "accuracy_unsure": round(float(right[unsure].mean()), 3) if unsure.any() else None,
    }


def _cli(args: Sequence[str], inputs: Sequence[Row]) -> list[Row]:
    """Run ``deskside classify`` with ``args``, ``inputs`` as its stdin; its output lines."""
    environment = {**os.environ, "DESKSIDE_DATABASE": ""}
    environment.pop("DESKSIDE_LLM_URL", None)
    environment.pop("DESKSIDE_HELPSCOUT_DOCS_API_KEY", None)
    config = str(Path(tempfile.gettempdir()) / "no-deskside.toml")
    done = subprocess.run(
        [sys.executable, "-m", "deskside", "classify", "--config", config, *args],
        input="".join(json.dumps(item) + "\n" for item in inputs),
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        cwd=ROOT,
    )
    if done.returncode != 0:
        sys.exit(f"deskside classify failed ({done.returncode}):\n{done.stderr}")
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


# --- cross-validation on train splits -------------------------------------------------------


def dev_sets() -> dict[str, list[Row]]:
    """What ``--dev`` tunes on: each tracker's train split and every ``data/realistic`` report."""
    sets = {name: [r for r in rows if r["split"] == "train"] for name, rows in projects().items()}
    for path in sorted((DATA / "realistic").glob("*.jsonl")):
        sets[f"realistic/{path.stem}"] = _jsonl(path)
    return sets


def cross_validate(
    rows: Sequence[Row], fit: Callable[[Sequence[Row]], Classifier], folds: int = 5
) -> float:
    """Mean macro-F1 over stratified folds, ``fit`` trained on the other folds."""
    labels = [r["label"] for r in rows]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    scores = []
    for train_at, test_at in splitter.split(np.zeros(len(rows)), labels):
        model = fit([rows[i] for i in train_at])
        test = [rows[i] for i in test_at]
        predicted = [p.label for p in model.predict([issue_text(r) for r in test])]
        scores.append(macro_f1([r["label"] for r in test], predicted))
    return float(np.mean(scores))


def dev() -> dict[str, Any]:
    """Cross-validated learning, out-of-the-box and support scores, no test split read."""
    shipped = Classifier.default()
    found: dict[str, Any] = {}
    for name, rows in dev_sets().items():
        truth = [r["label"] for r in rows]
        found[name] = {
            "learning": round(cross_validate(rows, learning), 3),
            "out_of_the_box": round(
                macro_f1(truth, [p.label for p in shipped.predict([issue_text(r) for r in rows])]),
                3,
            ),
        }
    trackers_only = [v for k, v in found.items() if not k.startswith("realistic/")]
    mean = {}
    for kind in ("learning", "out_of_the_box"):
        mean[kind] = round(float(np.mean([p[kind] for p in found.values()])), 3)
        if trackers_only:
            mean[f"{kind}_trackers"] = round(float(np.mean([p[kind] for p in trackers_only])), 3)
    results = {"sets": found, "mean": mean, "support_cv": support_cv()}
    if shipped.uses_encoder:
        reports = [issue_text(r) for rows in dev_sets().values() for r in rows][:500]
        messages = [e.text for e in load_shipped_examples() if "\n\n" not in e.text][:1000]
        results["encoder_speed"] = encoder_speed(messages, reports)
    return results


def support_cv(folds: int = 5) -> float:
    """Macro-F1 over folds of the shipped support messages, each fold labelled by a model
    trained on everything else that ships (the issue-style examples included)."""
    shipped = load_shipped_examples()
    mail = ROOT / "src" / "deskside" / "insights" / "data" / "support"
    texts = {row["text"] for path in mail.glob("*.jsonl") for row in _jsonl(path)}
    messages = [e for e in shipped if e.text in texts]
    others = [e for e in shipped if e.text not in texts]
    labels = [e.label for e in messages]
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    scores = []
    for train_at, test_at in splitter.split(np.zeros(len(messages)), labels):
        model = Classifier()
        model.train([*others, *(messages[i] for i in train_at)])
        predicted = model.predict([messages[i].text for i in test_at])
        truth = [labels[i] for i in test_at]
        scores.append(f1_score(truth, [p.label for p in predicted], average="macro"))
    return round(float(np.mean(scores)), 3)


# --- the report -----------------------------------------------------------------------------


def report_dev(results: dict[str, Any]) -> None:
    print("Cross-validation on train splits (5 folds): learning / out of the box")
    for name, scores in results["sets"].items():
        print(f"  {scores['learning']:.3f} / {scores['out_of_the_box']:.3f}  {name}")
    print("  " + json.dumps(results["mean"]))
    print(f"Support: cross-validated {results['support_cv']:.3f} (the held-out set is not read)")
    if "encoder_speed" in results:
        print(f"Encoder alone, dev texts (per CPU s / wall s): {results['encoder_speed']}")


def report(results: dict[str, Any], *, written_to: Path | None) -> None:
    print(f"Model: {results['model']}")
    tracked = results["trackers"]
    print("\nIssue trackers, test splits: macro-F1 learning / out of the box / baseline")
    for name, p in tracked["projects"].items():
        print(
            f"  {p['learning']:.3f} / {p['out_of_the_box']:.3f} / {p['baseline']:.3f}  {name} "
            f"({p['train']} learnt in {p['train_seconds']} s, {p['test']} labelled)"
        )
    m = tracked["mean"]
    print(f"  {m['learning']:.3f} / {m['out_of_the_box']:.3f} / {m['baseline']:.3f}  mean")
    print(f"  baseline out of the box (shipped examples): {m['baseline_out_of_the_box']:.3f}")
    _print_confidence(tracked, results["unsure_below"])
    held = results["support"]
    print(
        f"\nSupport messages ({held['held_out']} held out, {held['examples']} shipped examples):"
        f" macro-F1 {held['macro_f1']:.3f} (floor {held['floor']}), baseline {held['baseline']:.3f}"
    )
    _print_confidence(held, results["unsure_below"])
    failed = held["macro_f1"] < held["floor"]
    if "speed" in results:
        s = results["speed"]
        print(
            f"\nSpeed (CPU time / wall time, load average {s['load_average']}): trained with "
            f"300 examples + shipped in {s['train_cpu_seconds']} / {s['train_wall_seconds']} s "
            f"(limit {s['train_limit_seconds']} s); {s['messages_per_cpu_second']} / "
            f"{s['messages_per_wall_second']} messages/s, {s['reports_per_cpu_second']} / "
            f"{s['reports_per_wall_second']} reports/s of {s['reports_mean_chars']} characters "
            f"(floor {s['floor']}); deskside classify, 3,000 reports: "
            f"{s['cli_3000_reports_wall_seconds']} s"
        )
        if s.get("encoder"):
            print(f"  encoder alone (per CPU s / wall s): {s['encoder']}")
        failed |= min(s["messages_per_cpu_second"], s["reports_per_cpu_second"]) < s["floor"]
        failed |= s["train_cpu_seconds"] > s["train_limit_seconds"]
    if written_to is not None:
        print(f"\nWritten to {written_to.relative_to(ROOT)}")
    if failed:
        sys.exit("below a floor")


def _print_confidence(results: dict[str, Any], threshold: float) -> None:
    c, a = results["calibration"], results["abstention"]
    print(
        f"  calibration: ECE {c['ece']:.3f}; unsure (< {threshold}): {a['unsure_rate']:.0%}, "
        f"accuracy of the others {a['accuracy_sure']}, of the unsure {a['accuracy_unsure']}"
    )


if __name__ == "__main__":
    main()
