"""Words to vectors: a conversation's terms (folded words without stop words, plus order-free
adjacent pairs) and the fitted vocabulary (:class:`Vocabulary`) that turns texts into
unit-length TF-IDF rows whose length still counts the words the vocabulary lacks."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from scipy import sparse  # type: ignore[import-untyped]
from sklearn.feature_extraction.text import (  # type: ignore[import-untyped]
    ENGLISH_STOP_WORDS,
    CountVectorizer,
    TfidfTransformer,
)

from deskside.insights.analysis.topics.records import (
    BIGRAM_WEIGHT,
    MIN_DOCUMENT_FREQUENCY,
    FloatArray,
    SparseMatrix,
)

# --- Words → vectors ------------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")
_SUPPORT_TEXT = (  # words that say "this is a support message", not what it is about
    "hi hello hey dear thanks thank thx cheers regards please pls plz sorry hope ok okay "
    "feature bug issue problem question help support team guys folks just really also would could "
    "like love need want know let get got getting tried try trying use using seems still anyone "
    "anybody somebody someone something anything today yesterday asap urgent urgently great nice "
    "good able possible way lot lots add allow option plans roadmap wish suggestion suggest "
    "don doesn didn isn wasn aren won wouldn couldn shouldn can ll ve re im ive id dont doesnt "
    "didnt cant wont isnt"
)
_SUPPORT_WORDS = frozenset(_SUPPORT_TEXT.split())
_STOP_WORDS = frozenset(ENGLISH_STOP_WORDS) | _SUPPORT_WORDS


@lru_cache(maxsize=200_000)
def _fold(word: str) -> str:
    """A light suffix fold so that inflections are one term: export/exports/exporting/exported →
    ``export``, date/dates/dated → ``dat``, entries → ``entry``. (scikit-learn has no stemmer.)"""
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            if suffix == "s" and word[-2] in "sui":  # class, status, analysis
                continue
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":  # stopped → stop
        word = word[:-1]
    return word


def analyse(text: str) -> tuple[list[str], list[str]]:
    """The terms of a text (folded words, then order-free adjacent pairs) and, in parallel, how
    each was written (for names)."""
    words: list[str] = []
    surfaces: list[str] = []
    for token in _WORD.findall(text.lower()):
        if len(token) < 2 or token in _STOP_WORDS or (token.isdigit() and len(token) > 4):
            continue
        folded = _fold(token)
        if folded in _STOP_WORDS:
            continue
        words.append(folded)
        surfaces.append(token)
    terms = list(words)
    shown = list(surfaces)
    for i in range(len(words) - 1):
        first, second = words[i], words[i + 1]
        if first != second:
            terms.append(f"{first} {second}" if first < second else f"{second} {first}")
            shown.append(f"{surfaces[i]} {surfaces[i + 1]}")
    return terms, shown


def _identity(terms: list[str]) -> list[str]:
    return terms


class Vocabulary:
    """The fitted term space: terms, idf, each term's most common written form, and the idf an
    unseen term gets in a vector's length (that of a term seen once)."""

    def __init__(
        self, terms: list[str], idf: FloatArray, display: list[str], unseen_idf: float
    ) -> None:
        self.terms = terms
        self.idf = idf
        self.display = display
        self.unseen_idf = unseen_idf
        self.index = {term: i for i, term in enumerate(terms)}
        self._weigh()

    @classmethod
    def learn(cls, analysed: Sequence[tuple[list[str], list[str]]]) -> Vocabulary:
        term_lists = [terms for terms, _ in analysed]
        counter = CountVectorizer(
            analyzer=_identity, min_df=min(MIN_DOCUMENT_FREQUENCY, max(len(term_lists), 1))
        )
        try:
            counts = counter.fit_transform(term_lists)
        except ValueError:  # no terms at all
            return cls([], np.zeros(0), [], 1.0)
        idf = np.asarray(
            TfidfTransformer(sublinear_tf=True, norm=None).fit(counts).idf_, dtype=np.float64
        )
        terms = [str(t) for t in counter.get_feature_names_out()]
        index = {term: i for i, term in enumerate(terms)}
        written: Counter[tuple[int, str]] = Counter()
        for term_list, shown in analysed:
            for term, surface in zip(term_list, shown, strict=True):
                position = index.get(term)
                if position is not None:
                    written[(position, surface)] += 1
        display = list(terms)
        best = [0] * len(terms)
        for (position, surface), count in sorted(written.items()):
            if count > best[position]:
                best[position] = count
                display[position] = surface
        return cls(terms, idf, display, math.log((1 + len(term_lists)) / 2) + 1)

    def extend(self, analysed: Sequence[tuple[list[str], list[str]]]) -> None:
        """Add the terms these texts use that the vocabulary lacks, with the idf of a term seen
        once (the weight they already had in a vector's length), so that the second report of a
        new problem can pair with the first before the next fit."""
        added = False
        for terms, shown in analysed:
            for term, surface in zip(terms, shown, strict=True):
                if term not in self.index:
                    self.index[term] = len(self.terms)
                    self.terms.append(term)
                    self.display.append(surface)
                    added = True
        if added:
            grown = len(self.terms) - len(self.idf)
            self.idf = np.concatenate([self.idf, np.full(grown, self.unseen_idf)])
            self._weigh()

    def _weigh(self) -> None:
        self.weights = self.idf * np.where([" " in t for t in self.terms], BIGRAM_WEIGHT, 1.0)
        self._counter = CountVectorizer(analyzer=_identity, vocabulary=self.index, dtype=np.float64)

    def vectors(
        self, analysed: Sequence[tuple[list[str], list[str]]]
    ) -> tuple[SparseMatrix, FloatArray]:
        """Unit-length TF-IDF rows (the length counts out-of-vocabulary terms, which are then
        dropped) and each row's full squared length: 1, or 0 for a text without terms."""
        term_lists = [terms for terms, _ in analysed]
        if self.terms:
            counts = sparse.csr_array(self._counter.transform(term_lists))
        else:
            counts = sparse.csr_array((len(term_lists), 0), dtype=np.float64)
        counts.data = 1.0 + np.log(counts.data)
        weighted = sparse.csr_array(counts @ sparse.diags_array(self.weights))
        unseen = np.zeros(len(term_lists))
        for row, terms in enumerate(term_lists):
            for term, count in Counter(terms).items():
                if term not in self.index:
                    weight = (BIGRAM_WEIGHT if " " in term else 1.0) * self.unseen_idf
                    unseen[row] += (weight * (1.0 + math.log(count))) ** 2
        length2 = np.asarray(weighted.multiply(weighted).sum(axis=1), dtype=np.float64) + unseen
        scale = np.divide(1.0, np.sqrt(length2), out=np.zeros_like(length2), where=length2 > 0)
        vectors = sparse.csr_array(sparse.diags_array(scale) @ weighted)
        vectors.sort_indices()
        return vectors, (length2 > 0).astype(np.float64)
