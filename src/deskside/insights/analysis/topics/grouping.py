"""Grouping one label's conversations (:class:`LabelGroup`): placement, refinement, merge and the
split check, on sparse vectors in time order, as the package docstring describes. Knows
nothing of ids, people or persistence: :class:`~.model.TopicModel` maps its local topics."""

from __future__ import annotations

import math
import warnings
from collections import defaultdict

import numpy as np
from scipy import sparse  # type: ignore[import-untyped]
from sklearn.cluster import KMeans  # type: ignore[import-untyped]
from sklearn.exceptions import ConvergenceWarning  # type: ignore[import-untyped]

from deskside.insights.analysis.topics.records import (
    REFINE_ROUNDS,
    SPLIT_MIN_CONVERSATIONS,
    FloatArray,
    IntArray,
    SparseMatrix,
    TopicSettings,
)

# --- Grouping one label's conversations -----------------------------------------------------


_CHUNK = 256  # conversations per sparse product while placing (bounds a chunk-by-topics matrix)
_REFINE_CHUNK = 1024
_SPLIT_SAMPLE = 600  # the 2-means of a bigger topic is fitted on this many of its conversations


def _row_terms(matrix: SparseMatrix, row: int) -> IntArray:
    return np.asarray(matrix.indices[matrix.indptr[row] : matrix.indptr[row + 1]], dtype=np.int64)


class LabelGroup:
    """One label's conversations while grouping. Rows are in time order; ``topic`` holds a local
    topic index per row (-1: not placed yet). ``fixed`` rows only a person moves; ``old`` topics
    existed before this run: they keep their id, are never split and never merged with each other.
    """

    def __init__(
        self,
        vectors: SparseMatrix,
        self2: FloatArray,
        topic: IntArray,
        old: list[bool],
        settings: TopicSettings,
    ) -> None:
        self.vectors = vectors
        self.self2 = self2
        self.topic = topic
        self.fixed = topic >= 0
        self.old = old
        self.settings = settings
        self.self_dots = np.asarray(vectors.multiply(vectors).sum(axis=1), dtype=np.float64)

    def sums(self) -> tuple[SparseMatrix, FloatArray, IntArray]:
        """Each topic's sum of member vectors, its full squared length (the out-of-vocabulary parts
        of different messages are orthogonal, so they add up), and its size."""
        count = len(self.old)
        placed = np.flatnonzero(self.topic >= 0)
        membership = sparse.csr_array(
            (np.ones(len(placed)), (self.topic[placed], placed)),
            shape=(count, self.vectors.shape[0]),
        )
        sums = sparse.csr_array(membership @ self.vectors)
        sums.sort_indices()
        unseen = self.self2 - self.self_dots
        norm2 = np.asarray(sums.multiply(sums).sum(axis=1), dtype=np.float64) + np.bincount(
            self.topic[placed], weights=unseen[placed], minlength=count
        )
        size = np.bincount(self.topic[placed], minlength=count).astype(np.int64)
        return sums, norm2, size

    def place(self, rows: IntArray) -> None:
        """Leader clustering of ``rows`` (unplaced, in time order) against the topics so far, a
        chunk at a time: the chunk's similarities to the topics as they were plus to each other
        (``within``) give exactly what placing them one by one would see."""
        settings = self.settings
        sums, norm2, size = self.sums()
        vocabulary: dict[int, set[int]] = {}  # topic → its terms, filled as needed
        for start in range(0, len(rows), _CHUNK):
            chunk = rows[start : start + _CHUNK]
            block = self.vectors[chunk]
            known = len(self.old)
            before = np.zeros((len(chunk), known))
            if known:
                before = np.asarray((sums @ block.T).T.toarray(), dtype=np.float64)
            within = np.asarray((block @ block.T).toarray(), dtype=np.float64)
            norm2 = np.concatenate([norm2, np.zeros(len(chunk))])
            size = np.concatenate([size, np.zeros(len(chunk), dtype=np.int64)])
            local = np.full(len(chunk), -1, dtype=np.int64)
            count = known
            for b, row in enumerate(chunk):
                terms = _row_terms(self.vectors, int(row))
                dots = np.zeros(count)
                dots[:known] = before[b]
                chosen = -1
                if self.self2[row] > 0 and count:
                    if b:
                        dots += np.bincount(local[:b], weights=within[b, :b], minlength=count)
                    sims = np.divide(
                        dots, np.sqrt(norm2[:count]), out=np.zeros(count), where=norm2[:count] > 0
                    )
                    limits = np.where(
                        size[:count] >= 2, settings.join_similarity, settings.pair_similarity
                    )
                    candidates = np.flatnonzero(sims >= limits)
                    for candidate in candidates[np.argsort(-sims[candidates])][:3]:
                        topic = int(candidate)
                        if topic not in vocabulary:
                            vocabulary[topic] = set(_row_terms(sums, topic).tolist())
                        shared = sum(1 for t in terms.tolist() if t in vocabulary[topic])
                        if shared >= settings.min_shared_terms:
                            chosen = topic
                            break
                if chosen < 0:
                    chosen = count
                    count += 1
                    self.old.append(False)
                    dots = np.zeros(count)
                    vocabulary[chosen] = set()
                norm2[chosen] += 2 * dots[chosen] + self.self2[row]
                size[chosen] += 1
                vocabulary[chosen].update(terms.tolist())
                local[b] = chosen
                self.topic[row] = chosen
            norm2, size = norm2[:count], size[:count]
            added = sparse.csr_array(
                (np.ones(len(chunk)), (local, np.arange(len(chunk)))), shape=(count, len(chunk))
            )
            grown = sparse.vstack(
                [sums, sparse.csr_array((count - known, self.vectors.shape[1]))], format="csr"
            )
            sums = sparse.csr_array(grown + added @ block)
            sums.sort_indices()

    def refine(self) -> None:
        """Compare each movable row with every topic of two or more (its own without itself) and
        move it to the most similar one it fits, or out of a topic it no longer fits."""
        settings = self.settings
        for _ in range(REFINE_ROUNDS):
            sums, norm2, size = self.sums()
            denominator = np.sqrt(norm2)
            moved = self.topic.copy()
            movable = np.flatnonzero(~self.fixed)
            vocabulary: dict[int, set[int]] = {}
            changes = 0
            for start in range(0, len(movable), _REFINE_CHUNK):
                chunk = movable[start : start + _REFINE_CHUNK]
                dots = np.asarray((sums @ self.vectors[chunk].T).T.toarray(), dtype=np.float64)
                sims = np.divide(dots, denominator, out=np.zeros_like(dots), where=denominator > 0)
                sims[:, size < 2] = -np.inf
                own = self.topic[chunk]
                rows = np.arange(len(chunk))
                rest2 = norm2[own] - 2 * dots[rows, own] + self.self2[chunk]
                alone = (size[own] < 2) | (rest2 <= 1e-12)
                own_sim = np.full(len(chunk), -np.inf)
                own_sim[~alone] = (dots[rows, own] - self.self_dots[chunk])[~alone] / np.sqrt(
                    rest2[~alone]
                )
                sims[rows, own] = own_sim
                best = np.argmax(sims, axis=1)
                best_sim = sims[rows, best]
                for b, row in enumerate(chunk):
                    target = int(best[b])
                    if target != own[b] and best_sim[b] >= settings.join_similarity:
                        if target not in vocabulary:
                            vocabulary[target] = set(_row_terms(sums, target).tolist())
                        terms = _row_terms(self.vectors, int(row)).tolist()
                        if sum(1 for t in terms if t in vocabulary[target]) >= (
                            settings.min_shared_terms
                        ):
                            moved[row] = target
                            changes += 1
                            continue
                    if own_sim[b] < settings.join_similarity and size[own[b]] >= 2:
                        moved[row] = len(self.old)  # leaves: a topic of its own
                        self.old.append(False)
                        changes += 1
            self.topic = moved
            self._compact()
            if not changes:
                return

    def merge(self) -> None:
        """Join topics whose centroids are ``merge_similarity`` alike, most similar first, checking
        each join against the topics as they grow: never two old topics, and never two that the
        split check would cut apart again (``split_ratio``)."""
        settings = self.settings
        sums, norm2, size = self.sums()
        eligible = np.flatnonzero((size >= 2) & (norm2 > 0))
        if len(eligible) < 2:
            return
        unit = sparse.csr_array(sparse.diags_array(1 / np.sqrt(norm2[eligible])) @ sums[eligible])
        similar = sparse.triu(unit @ unit.T, k=1, format="coo")
        keep = similar.data >= settings.merge_similarity
        pairs = sorted(
            zip(
                similar.data[keep],
                eligible[similar.row[keep]],
                eligible[similar.col[keep]],
                strict=True,
            ),
            key=lambda pair: (-pair[0], pair[1], pair[2]),
        )
        root = list(range(len(self.old)))

        def find(topic: int) -> int:
            while root[topic] != topic:
                root[topic] = root[root[topic]]
                topic = root[topic]
            return topic

        self_dots = np.bincount(self.topic, weights=self.self_dots, minlength=len(self.old))
        vector = {int(t): sums[[t]] for t in eligible}
        length2 = {int(t): float(norm2[t]) for t in eligible}
        inner = {t: float((v @ v.T).toarray()[0, 0]) for t, v in vector.items()}
        own = {int(t): float(self_dots[t]) for t in eligible}
        count = {int(t): int(size[t]) for t in eligible}

        def within(topic: int) -> float:
            return (inner[topic] - own[topic]) / (count[topic] * (count[topic] - 1))

        for _, first, second in pairs:
            a, b = find(int(first)), find(int(second))
            if a == b or (self.old[a] and self.old[b]):
                continue
            dot = float((vector[a] @ vector[b].T).toarray()[0, 0])
            if dot / math.sqrt(length2[a] * length2[b]) < settings.merge_similarity:
                continue
            mean_within = (within(a) + within(b)) / 2
            if dot / (count[a] * count[b]) < settings.split_ratio * mean_within:
                continue
            keeper, gone = (b, a) if self.old[b] or (not self.old[a] and b < a) else (a, b)
            root[gone] = keeper
            vector[keeper] = vector[keeper] + vector[gone]
            length2[keeper] += length2[gone] + 2 * dot
            inner[keeper] += inner[gone] + 2 * dot
            own[keeper] += own[gone]
            count[keeper] += count[gone]
        self.topic = np.array([find(int(t)) for t in self.topic], dtype=np.int64)
        self._compact()

    def split(self) -> None:
        """Cut new topics in two (2-means) while their halves are much less alike across than
        within (``split_ratio``): two problems that share words, not one."""
        has_fixed = np.zeros(len(self.old), dtype=bool)
        has_fixed[self.topic[self.fixed]] = True
        members: dict[int, list[int]] = defaultdict(list)
        for row, topic in enumerate(self.topic.tolist()):
            members[topic].append(row)
        queue = [
            t
            for t, rows in members.items()
            if not self.old[t] and not has_fixed[t] and len(rows) >= SPLIT_MIN_CONVERSATIONS
        ]
        sampler = np.random.default_rng(0)
        while queue:
            topic = queue.pop()
            rows = np.array(members[topic], dtype=np.int64)
            if len(rows) < SPLIT_MIN_CONVERSATIONS:
                continue
            sample = rows
            if len(rows) > _SPLIT_SAMPLE:
                sample = np.sort(sampler.choice(rows, _SPLIT_SAMPLE, replace=False))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # identical messages
                halves = KMeans(n_clusters=2, n_init=2, random_state=0).fit(self.vectors[sample])
            side = np.asarray(halves.predict(self.vectors[rows]))
            first, second = rows[side == side[0]], rows[side != side[0]]
            if min(len(first), len(second)) < 2:
                continue
            if self._cross_ratio(first, second) >= self.settings.split_ratio:
                continue
            new = len(self.old)
            self.old.append(False)
            self.topic[second] = new
            members[topic] = first.tolist()
            members[new] = second.tolist()
            queue += [topic, new]
        self._compact()

    def _cross_ratio(self, first: IntArray, second: IntArray) -> float:
        """Mean similarity across two sets of rows over the mean similarity within each."""
        totals, within = [], []
        for rows in (first, second):
            total = np.asarray(self.vectors[rows].sum(axis=0), dtype=np.float64)
            totals.append(total)
            pairs = len(rows) * (len(rows) - 1)
            within.append((float(total @ total) - float(self.self_dots[rows].sum())) / pairs)
        cross = float(totals[0] @ totals[1]) / (len(first) * len(second))
        mean_within = (within[0] + within[1]) / 2
        return cross / mean_within if mean_within > 0 else 1.0

    def _compact(self) -> None:
        """Drop empty topics; the rest keep their order (old ones first)."""
        used, self.topic = np.unique(self.topic, return_inverse=True)
        self.topic = self.topic.astype(np.int64)
        self.old = [self.old[int(t)] for t in used]
