"""The conversation classifier: shipped examples, corrections, example files, calibrated
confidences, and ``deskside classify`` end to end."""

from __future__ import annotations

import csv
import json
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import Result

from classify_cli import run_classify
from deskside.insights.analysis.classify import (
    LABELS,
    Classifier,
    Example,
    ExamplesError,
    canonical_label,
    labels_for,
    load_shipped_examples,
    read_examples_file,
)

BENCHMARKS = Path(__file__).parent.parent / "benchmarks" / "data"
HELDOUT = BENCHMARKS / "support_heldout.jsonl"


@pytest.fixture(scope="module")
def shipped_model() -> Classifier:
    return Classifier.default()


def output_lines(result: Result) -> list[dict[str, object]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_shipped_examples_cover_every_label() -> None:
    examples = load_shipped_examples()
    counts = Counter(example.label for example in examples)
    assert set(counts) == set(LABELS)
    assert min(counts.values()) >= 50
    assert len({example.text for example in examples}) == len(examples)


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Since the update the mobile app crashes whenever I open a photo.", "bug"),
        ("Could you please add an export to Google Sheets? That would save us hours.", "feature"),
        (
            "Your help article about webhooks describes a settings page that no longer exists.",
            "docs",
        ),
        ("How can I add a second admin to our workspace?", "question"),
        ("Thanks a lot, have a nice weekend!", "other"),
    ],
)
def test_clear_messages_get_their_label(shipped_model: Classifier, text: str, label: str) -> None:
    assert shipped_model.predict_one(text).label == label


def test_confidences_are_probabilities(shipped_model: Classifier) -> None:
    predictions = shipped_model.predict(["The invoice total is wrong", "hmm", ""])
    for prediction in predictions:
        assert 0 <= prediction.confidence <= 1
        assert set(prediction.scores) == set(LABELS)
        assert sum(prediction.scores.values()) == pytest.approx(1, abs=1e-3)
        assert prediction.confidence == max(prediction.scores.values())


def test_clear_messages_are_more_confident_than_vague_ones(shipped_model: Classifier) -> None:
    clear = shipped_model.predict(
        [
            "The app crashes with an error every time I upload a file, please fix this bug",
            "Feature request: please add a dark mode, it would be great to have",
        ]
    )
    vague = shipped_model.predict(["hmm", "see above", "regarding my earlier message"])
    assert min(p.confidence for p in clear) > max(p.confidence for p in vague)


def test_confidence_tracks_accuracy_on_held_out_messages(shipped_model: Classifier) -> None:
    """Reliability: the more confident half is right more often, and confidence is about as
    high as accuracy overall (the held-out messages are not among the shipped examples)."""
    rows = [json.loads(line) for line in HELDOUT.read_text().splitlines()]
    predictions = shipped_model.predict([row["text"] for row in rows])
    right = np.array([p.label == row["label"] for p, row in zip(predictions, rows, strict=True)])
    confidence = np.array([p.confidence for p in predictions])
    order = np.argsort(confidence)
    low, high = order[: len(order) // 2], order[len(order) // 2 :]
    assert right[high].mean() >= right[low].mean()
    assert right.mean() > 0.8
    assert abs(confidence.mean() - right.mean()) < 0.12


def test_corrections_change_later_predictions() -> None:
    classifier = Classifier.default()
    asked = "Where can I find the invoice settings?"
    assert classifier.predict_one(asked).label == "question"
    corrections = [
        Example("Where can I find the webhook settings?", "docs", "correction"),
        Example("Where can I find the tax settings page?", "docs", "correction"),
        Example("where do I find the branding settings", "docs", "correction"),
    ]
    classifier.train([*load_shipped_examples(), *corrections])
    assert classifier.predict_one(asked).label == "docs"
    # Unrelated messages keep their labels.
    assert classifier.predict_one("The app crashes when I open the settings.").label == "bug"
    assert classifier.predict_one("How do I change my password?").label == "question"


def test_one_correction_teaches_its_own_words() -> None:
    """Words no other example has (a product's name) count once an agent corrects a message
    with them, though the vocabulary keeps only terms of two examples or more."""
    before = Classifier.default().predict_one("Zorbix at reception")
    classifier = Classifier()
    correction = Example(
        "Zorbix tablets at reception: please can we get this", "feature", "correction"
    )
    classifier.train([*load_shipped_examples(), correction])
    after = classifier.predict_one("Zorbix at reception")
    assert before.label != "feature"
    assert (after.label, after.unsure) == ("feature", False)


def test_a_correction_of_a_shipped_example_wins() -> None:
    shipped = load_shipped_examples()
    victim = next(example for example in shipped if example.label == "feature")
    classifier = Classifier()
    classifier.train([*shipped, Example(victim.text, "other", "correction")])
    assert classifier.predict_one(victim.text).label == "other"


def test_training_swaps_the_model_in_and_keeps_predicting() -> None:
    classifier = Classifier()
    with pytest.raises(RuntimeError, match="not trained"):
        classifier.predict(["x"])
    classifier.train(load_shipped_examples(), labels=["bug", "feature"])
    assert classifier.labels == ("bug", "feature")
    assert {p.label for p in classifier.predict(["Thanks!", "How do I log in?"])} <= {
        "bug",
        "feature",
    }
    with pytest.raises(ValueError, match="two labels"):
        classifier.train([Example("it is broken", "bug")])
    assert classifier.labels == ("bug", "feature")  # a failed training keeps the old model


def test_labels_and_synonyms() -> None:
    assert canonical_label("Enhancement") == "feature"
    assert canonical_label("documentation") == "docs"
    assert canonical_label("support") == "question"
    assert canonical_label("type: bug") == "bug"
    assert canonical_label("kind/feature") == "feature"
    assert canonical_label("Questions") == "question"
    with pytest.raises(ValueError, match="unknown label 'wontfix'"):
        canonical_label("wontfix")


def test_read_csv_and_jsonl_examples(tmp_path: Path) -> None:
    csv_file = tmp_path / "examples.csv"
    with csv_file.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Label", "Text"])
        writer.writerow(["enhancement", "Please add\na dark mode"])
        writer.writerow(["bug", 'It crashes, says "error 5"'])
    assert read_examples_file(csv_file) == [
        Example("Please add\na dark mode", "feature"),
        Example('It crashes, says "error 5"', "bug"),
    ]
    jsonl = tmp_path / "examples.jsonl"
    jsonl.write_text('{"text": "How do I log in?", "label": "question"}\n\n')
    assert read_examples_file(jsonl) == [Example("How do I log in?", "question")]
    issues = tmp_path / "issues.csv"
    issues.write_text("title,body,label\nCrash on save,Stack trace below,bug\n")
    assert read_examples_file(issues) == [Example("Crash on save\n\nStack trace below", "bug")]


def test_bad_example_files_name_the_rows(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nfine,bug\n,feature\nsomething,wontfix\nok,\n")
    with pytest.raises(ExamplesError) as caught:
        read_examples_file(bad)
    message = str(caught.value)
    assert "row 3: no text" in message
    assert "row 4: unknown label 'wontfix'" in message
    assert "row 5: no label" in message
    assert "row 2" not in message

    columns = tmp_path / "columns.csv"
    columns.write_text("message,category\nhello,bug\n")
    with pytest.raises(ExamplesError, match="text,label"):
        read_examples_file(columns)

    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"text": "a", "label": "bug"}\nnot json\n["a", "bug"]\n')
    with pytest.raises(ExamplesError) as caught:
        read_examples_file(jsonl)
    assert "line 2: not JSON" in str(caught.value)
    assert "line 3: not a JSON object" in str(caught.value)

    empty = tmp_path / "empty.csv"
    empty.write_text("text,label\n")
    with pytest.raises(ExamplesError, match="no labelled examples"):
        read_examples_file(empty)


def test_a_file_with_its_own_label_set_narrows_the_labels() -> None:
    mine = [Example(f"bug {i}", "bug") for i in range(10)] + [
        Example(f"idea {i}", "feature") for i in range(12)
    ]
    assert labels_for([*load_shipped_examples(), *mine]) == ("bug", "feature")
    # A few examples of one label only add to the five labels.
    assert labels_for([Example(f"doc {i}", "docs") for i in range(30)]) == LABELS
    # Corrections never narrow it.
    corrections = [Example(e.text, e.label, "correction") for e in mine]
    assert labels_for(corrections) == LABELS


def test_cli_classifies_json_lines_with_shipped_examples() -> None:
    result = run_classify(
        [],
        [
            {"id": 1, "text": "The export button throws an error and nothing downloads."},
            {"id": "b", "text": "How do I invite a colleague?"},
        ],
    )
    assert result.exit_code == 0, result.output
    lines = output_lines(result)
    assert [line["id"] for line in lines] == [1, "b"]
    assert [line["label"] for line in lines] == ["bug", "question"]
    assert all(set(line) == {"id", "label", "confidence", "unsure"} for line in lines)
    assert "Trained on" in result.stderr


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_cli_examples_file_adapts_the_model(tmp_path: Path, suffix: str) -> None:
    """A team's own label set: 'approval' messages are what they call 'bug' (their queue of
    blockers) and anything about pricing is a 'feature' request for them."""
    rows = [(f"Please approve order {i} for the warehouse team", "bug") for i in range(12)]
    rows += [(f"Pricing tier {i} should include more seats", "enhancement") for i in range(12)]
    path = tmp_path / f"mine.{suffix}"
    if suffix == "csv":
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([("text", "label"), *rows])
    else:
        path.write_text("".join(json.dumps({"text": t, "label": lb}) + "\n" for t, lb in rows))
    result = run_classify(
        ["--examples", str(path)],
        [
            {"id": 1, "text": "please approve order 99 for the warehouse"},
            {"id": 2, "text": "Thanks so much!"},
        ],
    )
    assert result.exit_code == 0, result.output
    lines = output_lines(result)
    assert lines[0]["label"] == "bug"
    assert lines[1]["label"] in ("bug", "feature")  # only the file's labels are predicted
    assert "labels: bug, feature" in result.stderr


def test_cli_reports_bad_example_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("text,label\nok,bug\nhmm,wontfix\n")
    result = run_classify(["--examples", str(path)], [{"id": 1, "text": "x"}])
    assert result.exit_code == 2
    assert "row 3: unknown label 'wontfix'" in result.stderr
    assert result.stdout == ""


def test_cli_answers_bad_input_lines_with_errors_and_goes_on() -> None:
    private = "Refund for order 4711, card 4242 4242 4242 4242"
    stdin = "\n".join(
        [
            json.dumps({"id": 1, "text": "The export button throws an error."}),
            f'{{"id": 2, "text": "{private}"',  # cut short
            "",  # blank lines are skipped, and counted
            json.dumps([private]),
            json.dumps({"id": 5, "subject": private}),
            json.dumps(private),
            json.dumps({"id": 7, "title": "How do I invite a colleague?"}),
        ]
    )
    result = run_classify([], stdin.encode() + b"\n" + private.encode("utf-16") + b"\n")
    assert result.exit_code == 1, result.output
    lines = output_lines(result)
    assert lines[0]["id"] == 1 and lines[0]["label"] == "bug"
    assert lines[1:5] == [
        {"line": 2, "error": "not JSON (Expecting ',' delimiter)"},
        {"line": 4, "error": 'not a JSON object: expected {"id": …, "text": …}'},
        {"line": 5, "id": 5, "error": 'no "text" string'},
        {"line": 6, "error": 'not a JSON object: expected {"id": …, "text": …}'},
    ]
    assert lines[5]["id"] == 7 and lines[5]["label"] == "question"
    assert lines[6] == {"line": 8, "error": "not UTF-8 text"}
    assert len(lines) == 7
    assert "2 labelled" in result.stderr
    assert "5 line(s) could not be labelled (line 2, 4, 5, 6, 8)" in result.stderr
    assert "4711" not in result.output  # the input is a customer's: no message quotes it


def test_cli_input_that_is_all_bad_is_answered_line_by_line() -> None:
    result = run_classify([], "not json\n{}\n")
    assert result.exit_code == 1
    assert output_lines(result) == [
        {"line": 1, "error": "not JSON (Expecting value)"},
        {"line": 2, "error": 'no "text" string'},
    ]


def test_cli_labels_option() -> None:
    result = run_classify(["--labels", "bug,enhancement"], [{"id": 1, "text": "Add SSO please"}])
    assert result.exit_code == 0, result.output
    assert output_lines(result)[0]["label"] == "feature"
    bad = run_classify(["--labels", "bug,wontfix"], [{"id": 1, "text": "x"}])
    assert bad.exit_code == 2
    assert "unknown label 'wontfix'" in bad.stderr


def test_the_customers_words_decide_not_the_quoted_reply() -> None:
    quoted_idea = (
        "It would be great if you added a dark mode, a Gantt chart view, keyboard shortcuts "
        "and an integration with Microsoft Teams. Please consider adding these features, they "
        "would be really nice to have and would make the product so much better."
    )
    reply = (
        "The report export crashes with an error since this morning.\n\n"
        "On Mon, 3 Jun 2024 at 10:02, Dana <dana@customer.example> wrote:\n"
        + "\n".join(f"> {line}" for line in [quoted_idea] * 3)
    )
    result = run_classify([], [{"id": "idea", "text": quoted_idea}, {"id": "reply", "text": reply}])
    assert result.exit_code == 0, result.output
    labels = {line["id"]: line["label"] for line in output_lines(result)}
    assert labels == {"idea": "feature", "reply": "bug"}


def test_cli_learns_from_stored_corrections(tmp_path: Path) -> None:
    database = tmp_path / "insights.db"
    with sqlite3.connect(database) as connection:
        connection.execute("create table labelled_examples (text text, label text)")
        connection.executemany(
            "insert into labelled_examples values (?, ?)",
            [
                ("Where can I find the webhook settings?", "docs"),
                ("Where can I find the tax settings page?", "docs"),
                ("where do I find the branding settings", "docs"),
            ],
        )
    asked = [{"id": 1, "text": "Where can I find the invoice settings?"}]
    before = run_classify([], asked)
    after = run_classify(["--database", f"sqlite:///{database}"], asked)
    assert before.exit_code == 0, before.output
    assert after.exit_code == 0, after.output
    assert output_lines(before)[0]["label"] == "question"
    assert output_lines(after)[0]["label"] == "docs"
    assert "(3 yours)" in after.stderr
