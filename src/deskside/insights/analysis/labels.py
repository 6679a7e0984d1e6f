"""The labels a conversation can have, and the names other trackers give them.

Light on purpose (no scikit-learn): the web UI, the API and the commands that only show labels
import this, not :mod:`deskside.insights.analysis.classify`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["LABELS", "LABEL_SYNONYMS", "UNSURE", "UNSURE_BELOW", "canonical_label", "is_unsure"]

LABELS: tuple[str, ...] = ("bug", "feature", "docs", "question", "other")
"""Every label the classifier knows, in display order."""

UNSURE_BELOW = 0.5
"""A machine's label less confident than this is *unsure*: people review those first (the
classifier's confidences are calibrated, so about half of them are wrong)."""

UNSURE = "unsure"
"""The name of the filter listing unsure labels, least confident first."""


def is_unsure(confidence: float | None, by: str | None) -> bool:
    """Whether a label given ``by`` ``model``, ``llm`` or ``agent`` with ``confidence`` should be
    checked by a person: a machine's below :data:`UNSURE_BELOW`; an agent's never."""
    return by not in (None, "agent") and confidence is not None and confidence < UNSURE_BELOW


LABEL_SYNONYMS: Mapping[str, str] = {
    "defect": "bug",
    "bug report": "bug",
    "regression": "bug",
    "crash": "bug",
    "problem": "bug",
    "enhancement": "feature",
    "feature request": "feature",
    "improvement": "feature",
    "suggestion": "feature",
    "idea": "feature",
    "request": "feature",
    "documentation": "docs",
    "doc": "docs",
    "support": "question",
    "how to": "question",
    "howto": "question",
    "usage": "question",
    "help": "question",
    "misc": "other",
    "spam": "other",
    "none": "other",
}
"""Labels other trackers use, and the label each one means here (matched case-insensitively,
with ``-``/``_`` as spaces and a ``type:``/``kind/`` prefix ignored)."""


def canonical_label(raw: str) -> str:
    """``raw`` as one of :data:`LABELS`, via :data:`LABEL_SYNONYMS` (``enhancement`` →
    ``feature``, ``documentation`` → ``docs``, ``support`` → ``question``, …).

    Raises ``ValueError`` naming the known labels when ``raw`` is none of them.
    """
    name = re.sub(r"[\s_-]+", " ", raw.strip().lower())
    name = re.sub(r"^(type|kind|label|category)\s*[:/]\s*", "", name)
    if name in LABELS:
        return name
    if name.endswith("s") and name[:-1] in LABELS:  # bugs, features, questions
        return name[:-1]
    if name in LABEL_SYNONYMS:
        return LABEL_SYNONYMS[name]
    synonyms = ", ".join(f"{k}→{v}" for k, v in LABEL_SYNONYMS.items())
    raise ValueError(
        f"unknown label {raw!r}: use one of {', '.join(LABELS)} (or a synonym: {synonyms})"
    )
