"""Conversation classifier: ``bug``, ``feature``, ``docs``, ``question`` or ``other``, with a
calibrated confidence.

The model is scikit-learn only: word (1-2) and character (2-5) TF-IDF n-grams of what the
customer wrote (:mod:`.customer_text`), a linear SVM, and temperature scaling
fitted on cross-validated scores so that a confidence of 0.8 is right about 80% of the time.
It learns from labelled examples: the ones that ship with deskside, a team's own (a file,
``--examples``), and agents' corrections, which weigh more than the rest. Training ~2,000
examples takes a few seconds; :meth:`Classifier.train` builds the new model aside and swaps it
in with one assignment, so predictions carry on, on the old model, while it trains.

Optional: a nudge towards ``docs`` when a message closely matches a help-center article title
(:class:`ArticleMatcher`). Nothing here downloads anything.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
import importlib.util
import json
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sklearn.calibration import CalibratedClassifierCV  # type: ignore[import-untyped]
from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.pipeline import FeatureUnion  # type: ignore[import-untyped]
from sklearn.svm import LinearSVC  # type: ignore[import-untyped]

from deskside.insights.analysis.customer_text import message_text
from deskside.insights.analysis.labels import LABEL_SYNONYMS, LABELS, canonical_label

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "LABELS",
    "LABEL_SYNONYMS",
    "MODEL_DESCRIPTION",
    "SOURCE_WEIGHTS",
    "UNSURE_BELOW",
    "ArticleMatcher",
    "Classifier",
    "Example",
    "ExamplesError",
    "Prediction",
    "Source",
    "canonical_label",
    "labels_for",
    "load_shipped_examples",
    "prepare_text",
    "read_examples_file",
]

Source = Literal["shipped", "file", "correction"]

SOURCE_WEIGHTS: Mapping[str, float] = {"shipped": 1.0, "file": 1.0, "correction": 4.0}
"""How much one example counts in training: a correction by an agent is worth several shipped
examples, so a handful of them changes how similar messages are labelled."""

MIN_FILE_EXAMPLES_PER_LABEL = 10
"""A labelled file with at least this many examples for each of two or more labels sets the
labels: only those are predicted (see :func:`labels_for`)."""

MODEL_DESCRIPTION = "words+chars TF-IDF, linear SVM with temperature scaling (scikit-learn)"
"""The model in use, in words (``deskside classify --help`` shows it)."""

UNSURE_BELOW = 0.5
"""A prediction less confident than this is :attr:`Prediction.unsure`: review it first."""

_MAX_CHARS = 6000
_CHARS_SPAN = 1500  # how much of a text its character n-grams read
_CV_FOLDS = 5
_SVM_C = 0.5


class ExamplesError(ValueError):
    """A labelled-examples file that cannot be used; the message names the file and the rows."""


@dataclass(frozen=True)
class Example:
    """A labelled text. ``label`` must be one of :data:`LABELS` (see :func:`canonical_label`)."""

    text: str
    label: str
    source: Source = "file"

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"unknown label {self.label!r}: use one of {', '.join(LABELS)}")
        if self.source not in SOURCE_WEIGHTS:
            raise ValueError(f"unknown source {self.source!r}: shipped, file or correction")


@dataclass(frozen=True)
class Prediction:
    """A label and the probability that it is right (calibrated on held-out folds).

    ``scores`` has the probability of every label the model was trained on; ``by`` says who
    answered: ``model`` (the local classifier) or ``llm`` (:mod:`.llm`)."""

    label: str
    confidence: float
    scores: Mapping[str, float] = field(default_factory=dict, compare=False)
    by: str = "model"

    @property
    def unsure(self) -> bool:
        """Whether the confidence is below :data:`UNSURE_BELOW` (a person should check it)."""
        return self.confidence < UNSURE_BELOW


@functools.cache
def _shipped() -> tuple[Example, ...]:
    resource = importlib.resources.files("deskside.insights").joinpath("data/examples.jsonl")
    examples = _parse_jsonl(resource.read_text(encoding="utf-8"), "shipped examples", "shipped")
    return tuple(examples)


def load_shipped_examples() -> list[Example]:
    """The labelled examples that ship with deskside (a few hundred support messages)."""
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


_URL = re.compile(r"https?://\S+|www\.\S+")
_VERSION = re.compile(r"\bv?\d+(?:\.\d+){1,3}(?:[-+.]?[a-z]+\d*)?\b", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_FENCE = re.compile(r"(```|~~~)[^\n]*\n(.*?)(?:\1|\Z)", re.DOTALL)
_FAILURE_WORDS = re.compile(r"error|exception|traceback|fatal|panic|failed|warn", re.IGNORECASE)
_CODE_LINES = 6
_WORDS = r"(?u)\b\w+\b|[?!]"  # words, and ? and ! as tokens of their own


def prepare_text(text: str) -> str:
    """What the model reads of a message: the customer's own words (:func:`message_text`),
    long code blocks cut to their first lines and error lines, URLs, e-mail addresses and
    version numbers replaced by placeholder words, at most a few thousand characters."""
    text = message_text(text)
    text = _FENCE.sub(_shorten_code, text)
    text = _URL.sub(" urltoken ", text)
    text = _EMAIL.sub(" emailtoken ", text)
    text = _VERSION.sub(" versiontoken ", text)
    return text[:_MAX_CHARS]


def _shorten_code(match: re.Match[str]) -> str:
    lines = [line for line in match.group(2).splitlines() if line.strip()]
    kept = (
        lines[:_CODE_LINES]
        + [line for line in lines[_CODE_LINES:] if _FAILURE_WORDS.search(line)][:_CODE_LINES]
    )
    return "\n codetoken \n" + "\n".join(kept) + "\n"


class ArticleMatcher:
    """How closely a text matches the closest of some help-center article titles (word TF-IDF
    cosine, 0 to 1). With titles, :class:`Classifier` moves probability towards ``docs`` for a
    message that closely matches one: ``docs`` gains ``boost * (similarity - threshold) /
    (1 - threshold)`` before the scores are normalised again."""

    def __init__(
        self, titles: Iterable[str], *, threshold: float = 0.45, boost: float = 0.35
    ) -> None:

        self.titles = [title.strip() for title in titles if title and title.strip()]
        self.threshold = threshold
        self.boost = boost
        self._vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
        self._matrix: Any = None
        if self.titles:
            self._matrix = self._vectorizer.fit_transform(self.titles)

    def best(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        """For each text, the closest title and its similarity (``None``, 0.0 without titles)."""
        if self._matrix is None or not texts:
            return [(None, 0.0) for _ in texts]
        similarity = (self._vectorizer.transform(list(texts)) @ self._matrix.T).toarray()
        found: list[tuple[str | None, float]] = []
        for row in similarity:
            index = int(row.argmax())
            found.append((self.titles[index], float(row[index])))
        return found

    def adjust(self, texts: Sequence[str], probabilities: NDArray[np.float64], docs: int) -> None:
        """Move probability in place towards column ``docs`` for texts close to a title."""
        for row, (_, similarity) in enumerate(self.best(texts)):
            if similarity > self.threshold:
                gain = self.boost * (similarity - self.threshold) / (1 - self.threshold)
                probabilities[row, docs] += gain
                probabilities[row] /= probabilities[row].sum()


@dataclass(frozen=True)
class _Model:
    features: Any  # a fitted FeatureUnion of TF-IDF vectorizers
    estimator: Any  # a fitted classifier with predict_proba
    labels: tuple[str, ...]
    """The estimator's columns, in its order."""
    examples: int


class Classifier:
    """Labels texts; train it (again) with :meth:`train`, predict with :meth:`predict`.

    Safe to share between threads: a prediction uses the model that was current when it
    started, and training swaps in the new model only once it is complete. Trainings run one at
    a time.
    """

    def __init__(
        self,
        *,
        article_titles: Iterable[str] = (),
        source_weights: Mapping[str, float] = SOURCE_WEIGHTS,
    ) -> None:
        """``article_titles``: help-center titles that make ``docs`` likelier for close matches;
        ``source_weights``: how much an example of each source counts (:data:`SOURCE_WEIGHTS`)."""
        self._weights = {**SOURCE_WEIGHTS, **source_weights}
        self._matcher = ArticleMatcher(article_titles)
        self._model: _Model | None = None
        self._training = threading.Lock()

    @classmethod
    def default(cls, extra: Iterable[Example] = (), **options: Any) -> Classifier:
        """A classifier trained on the shipped examples plus ``extra``, the labels chosen by
        :func:`labels_for`; ``options`` go to the constructor."""
        classifier = cls(**options)
        examples = [*load_shipped_examples(), *extra]
        classifier.train(examples, labels=labels_for(examples))
        return classifier

    @property
    def trained(self) -> bool:
        """Whether a model has been trained (predictions raise until then)."""
        return self._model is not None

    @property
    def examples(self) -> int:
        """How many examples the current model learnt from (after deduplication)."""
        return self._model.examples if self._model else 0

    @property
    def labels(self) -> tuple[str, ...]:
        """The labels the current model predicts, in :data:`LABELS` order (empty before
        training)."""
        model = self._model
        return tuple(label for label in LABELS if model and label in model.labels)

    def use_article_titles(self, titles: Iterable[str]) -> None:
        """Use these help-center article titles from now on (replacing earlier ones); no
        retraining needed."""
        self._matcher = ArticleMatcher(titles)

    def train(self, examples: Iterable[Example], labels: Iterable[str] | None = None) -> None:
        """Fit a new model on ``examples`` and swap it in.

        ``labels``: predict only these (examples with other labels are left out); default:
        every label the examples use. The same text labelled twice counts once, with the label
        of the later example of the weightiest source (a correction beats a file beats the
        shipped examples). Raises ``ValueError`` when fewer than two labels have examples.
        """
        wanted = set(LABELS if labels is None else labels)
        unknown = wanted - set(LABELS)
        if unknown:
            raise ValueError(f"unknown labels: {', '.join(sorted(unknown))}")
        chosen = _deduplicate(e for e in examples if e.label in wanted)
        counts = Counter(example.label for example in chosen)
        if len(counts) < 2:
            raise ValueError("training needs examples of at least two labels")
        texts = [prepare_text(example.text) for example in chosen]
        targets = np.array([example.label for example in chosen])
        weights = np.array([self._weights[example.source] for example in chosen])
        # A correction's words always reach the vocabulary (terms of two examples or more):
        # it is about this message, not only the words it shares with others.
        corrected = [
            text for text, e in zip(texts, chosen, strict=True) if e.source == "correction"
        ]
        with self._training:
            features = _feature_union()
            features.fit([*texts, *corrected])
            matrix = features.transform(texts)
            estimator = _estimator(min(counts.values()))
            estimator.fit(matrix, targets, sample_weight=weights)
            self._model = _Model(
                features=features,
                estimator=estimator,
                labels=tuple(str(label) for label in estimator.classes_),
                examples=len(chosen),
            )

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order. Raises ``RuntimeError`` before training."""
        model = self._model
        if model is None:
            raise RuntimeError("the classifier is not trained yet")
        if not texts:
            return []
        prepared = [prepare_text(text) for text in texts]
        matrix = model.features.transform(prepared)
        probabilities = np.asarray(model.estimator.predict_proba(matrix), dtype=np.float64)
        if "docs" in model.labels and self._matcher.titles:
            self._matcher.adjust(prepared, probabilities, model.labels.index("docs"))
        predictions = []
        for row in probabilities:
            best = int(row.argmax())
            scores = {label: round(float(p), 4) for label, p in zip(model.labels, row, strict=True)}
            predictions.append(Prediction(model.labels[best], round(float(row[best]), 4), scores))
        return predictions

    def predict_one(self, text: str) -> Prediction:
        """:meth:`predict` for one text."""
        return self.predict([text])[0]


def _deduplicate(examples: Iterable[Example]) -> list[Example]:
    rank = {"shipped": 0, "file": 1, "correction": 2}
    kept: dict[str, Example] = {}
    for example in examples:
        key = " ".join(example.text.split()).lower()
        if not key:
            continue
        held = kept.get(key)
        if held is None or rank[example.source] >= rank[held.source]:
            kept.pop(key, None)  # re-insert: order follows the latest example
            kept[key] = example
    return list(kept.values())


def _opening(text: str) -> str:
    return text[:_CHARS_SPAN].lower()


def _feature_union() -> Any:
    """Word (1-2) n-grams of the whole text and character (2-5) n-grams of its opening, seen in
    at least two examples: a term of one example only (a name, a path, a log line) teaches
    nothing about the others. Characters weigh less than words, and read only the title and
    first paragraphs: over long pasted logs they would outvote what the writer says, and cost
    the most time (measured on the issue sets in ``benchmarks/data/realistic``)."""
    words = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, token_pattern=_WORDS, min_df=2, dtype=np.float32
    )
    chars = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        sublinear_tf=True,
        min_df=2,
        dtype=np.float32,
        preprocessor=_opening,
    )
    return FeatureUnion(
        [("words", words), ("chars", chars)], transformer_weights={"words": 1.0, "chars": 0.7}
    )


def _estimator(fewest: int) -> Any:
    """A linear SVM with temperature scaling fitted on cross-validated scores; with fewer than
    two examples of some label there is nothing to cross-validate: plain logistic regression."""

    if fewest < 2:
        return LogisticRegression(C=10.0, max_iter=2000)
    return CalibratedClassifierCV(
        LinearSVC(C=_SVM_C),
        method="temperature",
        cv=min(_CV_FOLDS, fewest),
        ensemble=False,
    )


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
