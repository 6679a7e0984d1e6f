"""Labelled examples the classifier learns from: the ones that ship with deskside (support
messages and issue-tracker reports), a team's own files (``--examples``), agents' corrections.

Light on purpose (no scikit-learn): reading and checking a file needs none of the model.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.resources
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from deskside.insights.analysis.labels import LABELS, canonical_label

__all__ = [
    "MIN_FILE_EXAMPLES_PER_LABEL",
    "SHIPPED_ISSUE_WEIGHT",
    "SOURCE_WEIGHTS",
    "Example",
    "ExamplesError",
    "Source",
    "labels_for",
    "load_shipped_examples",
    "read_examples_file",
]

Source = Literal["shipped", "file", "correction"]

SOURCE_WEIGHTS: Mapping[str, float] = {"shipped": 1.0, "file": 1.0, "correction": 4.0}
"""How much one example counts in training: a correction by an agent is worth several shipped
examples, so a handful of them changes how similar messages are labelled."""

MIN_FILE_EXAMPLES_PER_LABEL = 10
"""A labelled file with at least this many examples for each of two or more labels sets the
labels: only those are predicted (see :func:`labels_for`)."""


SHIPPED_ISSUE_WEIGHT = 1.0
"""The weight of each shipped issue-tracker report (``data/trackers``) next to a shipped
support message's 1.0."""


class ExamplesError(ValueError):
    """A labelled-examples file that cannot be used; the message names the file and the rows."""


@dataclass(frozen=True)
class Example:
    """A labelled text. ``label`` must be one of :data:`LABELS` (see :func:`canonical_label`)."""

    text: str
    label: str
    source: Source = "file"
    weight: float = field(default=1.0, compare=False)
    """Multiplies the source's weight (:data:`SOURCE_WEIGHTS`) in training."""

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"unknown label {self.label!r}: use one of {', '.join(LABELS)}")
        if self.source not in SOURCE_WEIGHTS:
            raise ValueError(f"unknown source {self.source!r}: shipped, file or correction")


@functools.cache
def _shipped() -> tuple[Example, ...]:
    data = importlib.resources.files("deskside.insights").joinpath("data")
    examples: list[Example] = []
    for folder, weight in (("support", 1.0), ("trackers", SHIPPED_ISSUE_WEIGHT)):
        found = data.joinpath(folder)
        for resource in sorted(found.iterdir(), key=lambda r: r.name):
            if resource.name.endswith(".jsonl"):
                text = resource.read_text(encoding="utf-8")
                name = f"shipped examples {folder}/{resource.name}"
                examples += (
                    dataclasses.replace(e, weight=weight)
                    for e in _parse_jsonl(text, name, "shipped")
                )
    return tuple(examples)


def load_shipped_examples() -> list[Example]:
    """The labelled examples that ship with deskside (``data/support``, ``data/trackers``): about
    2,230 support messages and 900 issue-tracker reports (title and body), the reports at
    :data:`SHIPPED_ISSUE_WEIGHT`."""
    return list(_shipped())


def read_examples_file(path: str | Path) -> list[Example]:
    """Labelled examples from a CSV file with ``text`` and ``label`` columns (or ``title`` and
    ``body`` instead of ``text``), or from JSON lines ``{"text": …, "label": …}``; source
    ``file``. Chosen by the extension (``.csv``; ``.jsonl``, ``.ndjson``, ``.json``), else by
    the first character. Labels go through :func:`canonical_label`.

    Raises :class:`ExamplesError` naming the row (CSV, header = row 1) or line (JSON lines) of
    each problem: an unknown label, an empty text, a missing column, a line that is not a JSON
    object. Raises ``OSError`` when the file cannot be read.
    """
    path = Path(path)
    content = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json") or (
        suffix != ".csv" and content.lstrip().startswith("{")
    ):
        return _parse_jsonl(content, str(path), "file")
    return _parse_csv(content, str(path))


def labels_for(examples: Iterable[Example]) -> tuple[str, ...]:
    """The labels to predict given these examples: when the ``file`` examples have at least
    :data:`MIN_FILE_EXAMPLES_PER_LABEL` for each of two or more labels, only their labels (a
    team's own label set); otherwise all of :data:`LABELS`. Corrections never narrow it."""
    counts = Counter(example.label for example in examples if example.source == "file")
    used = [label for label in LABELS if counts[label] >= MIN_FILE_EXAMPLES_PER_LABEL]
    return tuple(used) if len(used) >= 2 else LABELS


def _parse_jsonl(content: str, name: str, source: Source) -> list[Example]:
    examples: list[Example] = []
    problems: list[str] = []
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not JSON ({exc.msg})")
            continue
        if not isinstance(document, dict):
            problems.append(f'line {number}: not a JSON object {{"text": …, "label": …}}')
            continue
        text = _text_of(document)
        _add(examples, problems, f"line {number}", text, document.get("label"), source)
    _raise_problems(name, problems, examples)
    return examples


def _parse_csv(content: str, name: str) -> list[Example]:
    csv.field_size_limit(max(csv.field_size_limit(), 16 * 1024 * 1024))
    reader = csv.DictReader(content.splitlines(keepends=True))
    columns = {column.strip().lower(): column for column in reader.fieldnames or ()}
    if "label" not in columns or not ({"text"} <= set(columns) or {"title", "body"} & set(columns)):
        found = ", ".join(reader.fieldnames or ()) or "none"
        raise ExamplesError(
            f"{name}: the first row must name the columns text,label "
            f"(or title,body,label); found: {found}"
        )
    examples: list[Example] = []
    problems: list[str] = []
    for number, row in enumerate(reader, start=2):
        values = {key: row.get(original) for key, original in columns.items()}
        _add(examples, problems, f"row {number}", _text_of(values), values.get("label"), "file")
    _raise_problems(name, problems, examples)
    return examples


def _text_of(document: Mapping[str, Any]) -> Any:
    if document.get("text") is not None:
        return document["text"]
    title, body = document.get("title"), document.get("body")
    if isinstance(title, str) or isinstance(body, str):
        return "\n\n".join(part for part in (title, body) if isinstance(part, str) and part)
    return None


def _add(
    examples: list[Example],
    problems: list[str],
    where: str,
    text: Any,
    label: Any,
    source: Source,
) -> None:
    if not isinstance(text, str) or not text.strip():
        problems.append(f"{where}: no text")
        return
    if not isinstance(label, str) or not label.strip():
        problems.append(f"{where}: no label")
        return
    try:
        canonical = canonical_label(label)
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return
    examples.append(Example(text, canonical, source))


def _raise_problems(
    name: str, problems: list[str], examples: list[Example], *, shown: int = 10
) -> None:
    if not problems and not examples:
        raise ExamplesError(f"{name}: no labelled examples in it")
    if problems:
        more = f"\n… and {len(problems) - shown} more" if len(problems) > shown else ""
        raise ExamplesError(f"{name}:\n" + "\n".join(problems[:shown]) + more)
