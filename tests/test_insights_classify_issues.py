"""The classifier on issue reports: out of the box, unsure answers, the default install
offline, and learning a project's reports through ``deskside classify --examples``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from classify_cli import cli_app, run_classify
from deskside.insights.analysis.classify import UNSURE_BELOW, Classifier

BENCHMARKS = Path(__file__).parent.parent / "benchmarks" / "data"


@pytest.fixture(scope="module")
def shipped_model() -> Classifier:
    return Classifier.default()


def output_lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


ISSUES = [
    (
        "How to set a default region for every command?\n\n"
        "**Describe the bug**\n"
        "I have to pass --region eu-west every time I run `skiff deploy`. Is there a way to "
        "put it in a config file or an environment variable instead? Could not find it in "
        "the docs.\n\n**Expected behavior**\nN/A\n\n- [x] I searched existing issues",
        "question",
    ),
    (
        "Add a --json flag to `skiff status`\n\n"
        "**Is your feature request related to a problem? Please describe.**\n"
        "Our CI parses the table output of skiff status with awk and it breaks on every "
        "release.\n\n**Describe the solution you'd like**\nA --json flag that prints the same "
        "fields as JSON.\n\n**Alternatives considered**\nParsing the table.",
        "feature",
    ),
    (
        "skiff deploy crashes with KeyError after upgrading to 2.4\n\n"
        "**Describe the bug**\nSince 2.4.0 every deploy stops right after the upload step.\n\n"
        "**To Reproduce**\n1. skiff deploy --stage prod\n2. See error\n\n"
        "```\nTraceback (most recent call last):\n"
        '  File "/usr/lib/skiff/deploy.py", line 88, in run\n'
        "KeyError: 'artifact_id'\n```\n\n**Expected behavior**\nThe deploy finishes like in "
        "2.3.",
        "bug",
    ),
]


@pytest.mark.parametrize(("text", "label"), ISSUES)
def test_issue_reports_get_their_label_out_of_the_box(
    shipped_model: Classifier, text: str, label: str
) -> None:
    """The shipped issue-style examples: a how-to question filed through the bug template is
    a question, a request in the feature template a feature, a traceback after an upgrade a
    bug."""
    assert shipped_model.predict_one(text).label == label


def test_vague_messages_are_unsure_and_clear_ones_are_not(shipped_model: Classifier) -> None:
    vague = shipped_model.predict(["following up", "see above"])
    clear = shipped_model.predict(
        ["The app crashes with an error every time I upload a file, please fix this bug"]
    )
    assert all(p.unsure for p in vague)
    assert not any(p.unsure for p in clear)
    assert all(p.unsure == (p.confidence < UNSURE_BELOW) for p in [*vague, *clear])


def test_cli_marks_unsure_answers_and_help_names_the_model() -> None:
    result = run_classify([], [{"id": 1, "text": "following up"}, {"id": 2, "text": ISSUES[2][0]}])
    assert result.exit_code == 0, result.output
    assert [line["unsure"] for line in output_lines(result)] == [True, False]
    usage = CliRunner().invoke(cli_app(), ["classify", "--help"], env={"COLUMNS": "200"})
    assert "Model: multinomial logistic regression" in usage.stdout


def test_the_default_install_classifies_offline_without_extras(tmp_path: Path) -> None:
    """No encoder package, no network: the shipped model trains and labels from what the
    install holds (imports of torch, ONNX Runtime and sentence encoders fail, sockets
    refuse to connect)."""
    script = tmp_path / "offline.py"
    script.write_text(
        "import importlib.abc, json, socket, sys\n"
        "class Blocked(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'torch', 'onnxruntime', 'sentence_transformers',"
        " 'transformers', 'tokenizers'}:\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Blocked())\n"
        "def refuse(*args, **kwargs):\n"
        "    raise OSError('no network in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from deskside.insights.analysis.classify import Classifier\n"
        "texts = json.loads(sys.stdin.read())\n"
        "print(json.dumps([p.label for p in Classifier.default().predict(texts)]))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        input=json.dumps([text for text, _ in ISSUES]),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [label for _, label in ISSUES]


def test_examples_of_a_project_teach_its_reports(tmp_path: Path) -> None:
    """A project the shipped examples know nothing of: with 100 of its labelled reports as
    ``--examples`` (title, body, label), its other 50 reports are labelled better than out
    of the box."""
    rows = [
        json.loads(line)
        for line in (BENCHMARKS / "realistic" / "vision.jsonl").read_text().splitlines()
    ]
    learn, held = rows[:100], rows[100:]
    examples = tmp_path / "vision.jsonl"
    examples.write_text(
        "".join(
            json.dumps({"title": r["title"], "body": r["body"], "label": r["label"]}) + "\n"
            for r in learn
        )
    )
    inputs = [{"id": n, "title": r["title"], "body": r["body"]} for n, r in enumerate(held)]
    before = run_classify([], inputs)
    after = run_classify(["--examples", str(examples)], inputs)
    assert before.exit_code == after.exit_code == 0, before.output + after.output
    assert "labels: bug, feature, question" in after.stderr
    truth = [r["label"] for r in held]

    def right(result: Result) -> int:
        labels = [line["label"] for line in output_lines(result)]
        return sum(label == t for label, t in zip(labels, truth, strict=True))

    assert right(after) >= right(before) + 3
