"""Conversation classifier: ``bug``, ``feature``, ``docs``, ``question`` or ``other``, with a
calibrated confidence.

The model is scikit-learn only. It reads a text as a maintainer reads an issue
(:mod:`.issue_text`: template comments, bot lines, quotes and signatures dropped, long traces
and code blocks cut to their first and error lines): word (1-2) and character (2-5) TF-IDF
n-grams (with English glosses of key phrases in other languages), the title's words and the
issue template's structure as blocks of their own, and a
multinomial logistic regression (weakly regularised, labels balanced), temperature-scaled on
cross-validated scores so that a confidence of 0.8 is right about 80% of the time; below
:data:`UNSURE_BELOW` a prediction is :attr:`Prediction.unsure`. It learns from labelled
examples (:mod:`.examples`): support messages and issue reports that ship with deskside, a
team's own (a file, ``--examples``), and agents' corrections, which weigh more than the rest.
:meth:`Classifier.train` builds the new model aside and swaps it in with one assignment, so
predictions carry on, on the old model, while it trains.

Optional: sentence embeddings (:mod:`.encoder`, the ``encoder`` extra and its packaged weights)
as one more, dense, block of the same regression, used when installed (unless
``DESKSIDE_ENCODER=off``); and a nudge towards ``docs`` when a message closely matches a
help-center article title (:class:`ArticleMatcher`). Nothing here downloads anything.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse  # type: ignore[import-untyped]
from sklearn.calibration import CalibratedClassifierCV  # type: ignore[import-untyped]
from sklearn.feature_extraction.text import TfidfVectorizer  # type: ignore[import-untyped]
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.pipeline import FeatureUnion  # type: ignore[import-untyped]

from deskside.insights.analysis import encoder as sentence_encoder
from deskside.insights.analysis.examples import (
    MIN_FILE_EXAMPLES_PER_LABEL,
    SOURCE_WEIGHTS,
    Example,
    ExamplesError,
    Source,
    labels_for,
    load_shipped_examples,
    read_examples_file,
)
from deskside.insights.analysis.glossary import glossed
from deskside.insights.analysis.issue_text import readable_text, structure_tokens, title_of
from deskside.insights.analysis.labels import (
    LABEL_SYNONYMS,
    LABELS,
    UNSURE_BELOW,
    canonical_label,
    is_unsure,
)

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = [
    "LABELS",
    "LABEL_SYNONYMS",
    "MIN_FILE_EXAMPLES_PER_LABEL",
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
    "model_description",
    "prepare_text",
    "read_examples_file",
]

_SPARSE_BLOCKS = "TF-IDF words, characters, title and issue-template structure"
_CALIBRATED = "temperature-calibrated (scikit-learn)"


def model_description() -> str:
    """The model a classifier made now would use, in words: sparse only (and why), or sparse
    and sentence encoder. Checked without importing the encoder's runtime."""
    reason = sentence_encoder.unavailable_reason()
    if reason is None:
        return (
            f"multinomial logistic regression on {_SPARSE_BLOCKS} and "
            f"{sentence_encoder.ENCODER_NAME} sentence embeddings (ONNX Runtime, int8), "
            f"{_CALIBRATED}"
        )
    return (
        f"multinomial logistic regression on {_SPARSE_BLOCKS}, {_CALIBRATED}; "
        f"no sentence encoder: {reason}"
    )


_MAX_CHARS = 6000
_CHARS_SPAN = 1500  # how much of a text its character n-grams read
_CV_FOLDS = 5
_FITTED: dict[tuple[Any, ...], _Model] = {}
"""Models fitted in this process by the examples they learnt from (a model is never changed
once fitted): workspaces, and servers started one after another, that learn from the same
examples share one fit instead of spending seconds on another."""
_FITTED_KEPT = 4
_FITTED_LOCK = threading.Lock()
_LR_C = 20.0
_CALIBRATE = True
_DOCS_AS_QUESTION = False
_CLASS_WEIGHT: str | None = "balanced"
_BLOCK_WEIGHTS = {"words": 1.0, "chars": 0.7, "title": 0.5, "structure": 0.5}
_ENCODER_WEIGHT = 0.25
"""The sentence embeddings' block weight (an embedding has norm 1), chosen by
``benchmarks/classify.py --dev --encoder --encoder-weight W``: 0.25 improved every dev set;
0.5 lost on one project's learning, 1 and 2 on several."""


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
        """Whether a person should check it: confidence below :data:`UNSURE_BELOW` (0.5)."""
        return is_unsure(self.confidence, self.by)


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
    text = readable_text(text)
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
    return "\n```\n codetoken \n" + "\n".join(kept) + "\n```\n"


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
    encoder: sentence_encoder.SentenceEncoder | None = None
    """The sentence encoder whose embeddings are the last block, if the model has one."""

    def matrix(self, texts: Sequence[str]) -> Any:
        """The features of prepared texts: the sparse blocks, then the embeddings if any."""
        return _with_embeddings(self.features.transform(list(texts)), texts, self.encoder)


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
        encoder: bool | None = None,
    ) -> None:
        """``article_titles``: help-center titles that make ``docs`` likelier for close matches;
        ``source_weights``: how much an example of each source counts (:data:`SOURCE_WEIGHTS`);
        ``encoder``: stack sentence embeddings (``None``: when installed, unless
        ``DESKSIDE_ENCODER=off``; ``True``: always, training raises ``RuntimeError`` without
        it; ``False``: never)."""
        self._weights = {**SOURCE_WEIGHTS, **source_weights}
        self._use_encoder = encoder
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
        if _DOCS_AS_QUESTION and "docs" not in wanted and "question" in wanted:
            # Without a docs label, a request for documentation is a question.
            examples = (
                dataclasses.replace(e, label="question")
                if e.label == "docs" and e.source == "shipped"
                else e
                for e in examples
            )
        chosen = _deduplicate(e for e in examples if e.label in wanted)
        counts = Counter(example.label for example in chosen)
        if len(counts) < 2:
            raise ValueError("training needs examples of at least two labels")
        texts = [prepare_text(example.text) for example in chosen]
        targets = np.array([example.label for example in chosen])
        weights = np.array([self._weights[e.source] * e.weight for e in chosen])
        # A correction's words always reach the vocabulary (terms of two examples or more):
        # it is about this message, not only the words it shares with others.
        corrected = [
            text for text, e in zip(texts, chosen, strict=True) if e.source == "correction"
        ]
        embedder = self._encoder()
        key = (
            tuple(texts),
            tuple(corrected),
            tuple(targets.tolist()),
            tuple(weights.tolist()),
            embedder is not None,
        )
        with self._training:
            with _FITTED_LOCK:
                fitted = _FITTED.get(key)
            if fitted is None:
                features = _feature_union()
                matrix = features.fit_transform([*texts, *corrected])[: len(texts)]
                matrix = _with_embeddings(matrix, texts, embedder)
                estimator = _estimator(min(counts.values()))
                estimator.fit(matrix, targets, sample_weight=weights)
                fitted = _Model(
                    features=features,
                    estimator=estimator,
                    labels=tuple(str(label) for label in estimator.classes_),
                    examples=len(chosen),
                    encoder=embedder,
                )
                with _FITTED_LOCK:
                    _FITTED[key] = fitted
                    while len(_FITTED) > _FITTED_KEPT:
                        del _FITTED[next(iter(_FITTED))]
            self._model = fitted

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order. Raises ``RuntimeError`` before training."""
        model = self._model
        if model is None:
            raise RuntimeError("the classifier is not trained yet")
        if not texts:
            return []
        prepared = [prepare_text(text) for text in texts]
        matrix = model.matrix(prepared)
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

    @property
    def uses_encoder(self) -> bool:
        """Whether the current model stacks sentence embeddings."""
        return self._model is not None and self._model.encoder is not None

    def _encoder(self) -> sentence_encoder.SentenceEncoder | None:
        if self._use_encoder is False:
            return None
        found = sentence_encoder.shared_encoder(wanted=bool(self._use_encoder))
        if found is None and self._use_encoder:
            reason = sentence_encoder.installation_problem() or "it failed to load (see the log)"
            raise RuntimeError(f"no sentence encoder: {reason}")
        return found


def _with_embeddings(
    matrix: Any, texts: Sequence[str], encoder: sentence_encoder.SentenceEncoder | None
) -> Any:
    """``matrix`` with the texts' embeddings (times their block weight) as more columns."""
    if encoder is None:
        return matrix
    dense = encoder.embed(texts) * np.float32(_ENCODER_WEIGHT)
    return sparse.hstack([matrix, sparse.csr_matrix(dense)], format="csr")


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
    the most time. The title's words and the template's structure
    (:func:`~.issue_text.structure_tokens`) are blocks of their own. The words block also reads
    English glosses of a non-English message's key phrases (:func:`.glossary.glossed`)."""
    words = _word_grams(glossed)
    chars = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        sublinear_tf=True,
        min_df=2,
        dtype=np.float32,
        preprocessor=_opening,
    )
    blocks: list[tuple[str, Any]] = [("words", words), ("chars", chars)]
    if _BLOCK_WEIGHTS.get("title"):
        blocks.append(("title", _word_grams(_title)))
    if _BLOCK_WEIGHTS.get("structure"):
        structure = TfidfVectorizer(
            analyzer=structure_tokens, sublinear_tf=True, min_df=2, dtype=np.float32
        )
        blocks.append(("structure", structure))
    return FeatureUnion(blocks, transformer_weights=dict(_BLOCK_WEIGHTS))


def _word_grams(preprocessor: Callable[[str], str]) -> TfidfVectorizer:
    """Word 1-2-grams of what ``preprocessor`` makes of a text, seen in two examples or more."""
    return TfidfVectorizer(
        ngram_range=(1, 2),
        sublinear_tf=True,
        token_pattern=_WORDS,
        min_df=2,
        dtype=np.float32,
        preprocessor=preprocessor,
    )


def _title(text: str) -> str:
    """The title of a report with a body (its first line, then a blank line); a message of
    one paragraph has none: its words are all in the words block already."""
    head, _, body = text.strip().partition("\n\n")
    return title_of(head).lower() if body.strip() else ""


def _estimator(fewest: int) -> Any:
    """Multinomial logistic regression, weakly regularised; its probabilities are
    temperature-scaled on cross-validated scores when every label has two examples or more."""
    model = LogisticRegression(
        C=_LR_C, solver="newton-cg", max_iter=500, class_weight=_CLASS_WEIGHT
    )
    if fewest < 2 or not _CALIBRATE:
        return model
    return CalibratedClassifierCV(
        model, method="temperature", cv=min(_CV_FOLDS, fewest), ensemble=False
    )
