"""The topic model (:class:`TopicModel`): fits and assigns conversations to topics with stable
ids, applies people's :class:`~.records.Decisions`, reads topics and their trends, and
persists as a NumPy ``.npz`` (see the package docstring for the method and its limits)."""

from __future__ import annotations

import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import numpy as np
from scipy import sparse  # type: ignore[import-untyped]

from deskside.insights.analysis.topics.grouping import LabelGroup
from deskside.insights.analysis.topics.records import (
    BASELINE_WINDOW,
    RECENT_WINDOW,
    UNNAMED,
    BoolArray,
    Decisions,
    FloatArray,
    IntArray,
    Item,
    SparseMatrix,
    Topic,
    TopicSettings,
    Trend,
)
from deskside.insights.analysis.topics.terms import Vocabulary, analyse
from deskside.insights.analysis.topics.trends import trend_of_counts

# --- The model ------------------------------------------------------------------------------


_FORMAT_VERSION = 1
"""The version of :meth:`TopicModel.to_bytes`; another is refused when read back."""


class TopicModel:
    """Topics over a set of conversations: :meth:`fit` groups them all, :meth:`assign` places new
    ones, :meth:`apply` carries out people's decisions, :meth:`topics` lists the result. Not
    thread-safe; the state is plain arrays (see the module docstring for persistence)."""

    def __init__(self, settings: TopicSettings | None = None) -> None:
        self.settings = settings or TopicSettings()
        self._vocabulary = Vocabulary([], np.zeros(0), [], 1.0)
        self._vectors: SparseMatrix = sparse.csr_array((0, 0), dtype=np.float64)
        self._self2: FloatArray = np.zeros(0)
        self._conversation_ids: IntArray = np.zeros(0, dtype=np.int64)
        self._created: IntArray = np.zeros(0, dtype=np.int64)
        self._customers: list[str | None] = []
        self._labels: list[str | None] = []
        self._topic: IntArray = np.zeros(0, dtype=np.int64)
        self._row_of: dict[int, int] = {}
        self._decisions = Decisions()
        self._merged: dict[int, int] = {}
        self._next_id = 1
        self._document_frequency: IntArray | None = None

    # -- grouping --

    def fit(
        self,
        items: Iterable[Item],
        decisions: Decisions | None = None,
        previous: Mapping[int, int] | None = None,
    ) -> list[Topic]:
        """Group ``items`` (each conversation once; the model then holds exactly these), learning
        the vocabulary from their texts.

        ``previous`` (conversation id → topic id; default: this model's own memberships) is kept
        for every conversation whose previous topic still has two or more of ``items`` and the same
        label; the rest are grouped anew, and a new topic takes the previous id of its earliest
        conversation when no other topic has it. ``decisions`` replace the ones last applied.
        Returns :meth:`topics`.
        """
        if decisions is not None:
            self._set_decisions(decisions)
        before = dict(previous) if previous is not None else self.memberships()
        ordered = sorted(_unique(items), key=lambda i: (_micros(i.created_at), i.conversation_id))
        analysed = [analyse(item.text) for item in ordered]
        self._vocabulary = Vocabulary.learn(analysed)
        self._vectors, self._self2 = self._vocabulary.vectors(analysed)
        self._conversation_ids = np.array([i.conversation_id for i in ordered], dtype=np.int64)
        self._created = np.array([_micros(i.created_at) for i in ordered], dtype=np.int64)
        self._customers = [i.customer for i in ordered]
        self._labels = [i.label for i in ordered]
        self._row_of = {int(c): row for row, c in enumerate(self._conversation_ids)}
        self._document_frequency = None
        self._next_id = max([self._next_id, *(t + 1 for t in before.values())])

        # Where people or the previous run put conversations: kept, and those topics seeded.
        kept = np.full(len(ordered), -1, dtype=np.int64)
        pinned = np.zeros(len(ordered), dtype=bool)
        previous_topic = [self._resolve(before.get(i.conversation_id)) for i in ordered]
        previous_size = Counter(t for t in previous_topic if t is not None)
        for row, item in enumerate(ordered):
            pin = self._pin(item.conversation_id)
            topic = previous_topic[row]
            if pin is not None:
                kept[row], pinned[row] = pin, True
            elif topic is not None and previous_size[topic] >= 2:
                kept[row] = topic
        topic_label = self._labels_of(kept, pinned)
        for row in np.flatnonzero((kept >= 0) & ~pinned).tolist():  # its label changed since
            if topic_label[int(kept[row])] != self._labels[row]:
                kept[row] = -1
        topic_label = self._labels_of(kept, pinned)

        self._topic = kept.copy()
        fresh: list[tuple[int, IntArray]] = []  # (first row, rows) of each new topic
        for rows in self._label_groups(kept, topic_label).values():
            group, ids = self._group(rows)
            group.place(np.flatnonzero(group.topic < 0))
            group.refine()
            group.merge()
            group.split()
            group.refine()
            for position in range(len(group.old)):
                members = rows[group.topic == position]
                if position < len(ids):  # old topics come first and never empty (fixed rows)
                    self._topic[members] = ids[position]
                else:
                    fresh.append((int(members.min()), members))
        # A new topic takes the previous id of its earliest conversation that had one no other
        # topic holds (a single conversation regrouped keeps its id); else a fresh id.
        taken = set(self._topic[self._topic >= 0].tolist())
        for _, members in sorted(fresh, key=lambda pair: pair[0]):
            inherited = [previous_topic[row] for row in members.tolist()]
            free = [t for t in inherited if t is not None and t not in taken]
            topic_id = free[0] if free else self._next_id
            self._next_id = max(self._next_id, topic_id + 1)
            self._topic[members] = topic_id
            taken.add(topic_id)
        return self.topics()

    def assign(self, items: Iterable[Item], decisions: Decisions | None = None) -> dict[int, int]:
        """Place new conversations in time order: each joins the most similar topic of its label
        when it fits, or starts one; existing topics keep their ids. A conversation the model
        already holds keeps its topic (a changed text is picked up by the next :meth:`fit`).
        ``decisions``, if given, are applied first. Returns conversation id → topic id for
        ``items``."""
        if decisions is not None:
            self.apply(decisions)
        given = list(_unique(items))
        new = sorted(
            (i for i in given if i.conversation_id not in self._row_of),
            key=lambda i: (_micros(i.created_at), i.conversation_id),
        )
        if new:
            first_new = len(self._topic)
            self._append(new)
            for row in range(first_new, len(self._topic)):
                pin = self._pin(int(self._conversation_ids[row]))
                self._topic[row] = -1 if pin is None else pin
            topic_label = self._labels_of(self._topic, np.zeros(len(self._topic), dtype=bool))
            for rows in self._label_groups(self._topic, topic_label).values():
                group, ids = self._group(rows)
                unplaced = np.flatnonzero(group.topic < 0)
                if not len(unplaced):
                    continue
                group.place(unplaced)
                for row in unplaced.tolist():  # new topics appear in time order
                    position = int(group.topic[row])
                    if position == len(ids):
                        ids.append(self._next_id)
                        self._next_id += 1
                    self._topic[rows[row]] = ids[position]
        return {i.conversation_id: int(self._topic[self._row_of[i.conversation_id]]) for i in given}

    def apply(self, decisions: Decisions) -> None:
        """Record people's decisions and carry them out now: pinned conversations move to their
        topic, merged topics' conversations to the survivor. Idempotent."""
        self._set_decisions(decisions)
        for row, conversation in enumerate(self._conversation_ids.tolist()):
            pin = self._pin(conversation)
            topic = int(self._topic[row])
            self._topic[row] = pin if pin is not None else self._merged.get(topic, topic)

    def forget(self, conversation_ids: Iterable[int]) -> None:
        """Drop conversations that were deleted: they count in no topic or trend any more (their
        words stay in the vocabulary until the next :meth:`fit`)."""
        gone = [self._row_of[c] for c in set(conversation_ids) if c in self._row_of]
        if not gone:
            return
        keep = np.ones(len(self._conversation_ids), dtype=bool)
        keep[gone] = False
        rows = np.flatnonzero(keep)
        self._vectors = self._vectors[rows]
        self._self2 = self._self2[rows]
        self._conversation_ids = self._conversation_ids[rows]
        self._created = self._created[rows]
        self._topic = self._topic[rows]
        self._customers = [self._customers[row] for row in rows.tolist()]
        self._labels = [self._labels[row] for row in rows.tolist()]
        self._row_of = {int(c): row for row, c in enumerate(self._conversation_ids)}
        self._document_frequency = None

    def reserve_ids(self, below: int) -> None:
        """Never give a new topic an id under ``below`` (ids stored before, even of topics
        that have since lost every conversation, stay theirs)."""
        self._next_id = max(self._next_id, below)

    def new_topic_id(self) -> int:
        """A topic id no topic has had: pin conversations to it to split them off."""
        self._next_id += 1
        return self._next_id - 1

    # -- reading --

    def memberships(self) -> dict[int, int]:
        """Conversation id → topic id, for every conversation the model holds."""
        return dict(zip(self._conversation_ids.tolist(), self._topic.tolist(), strict=True))

    def topic_of(self, conversation_id: int) -> int | None:
        row = self._row_of.get(conversation_id)
        return None if row is None else int(self._topic[row])

    def topics(self, min_customers: int = 1) -> list[Topic]:
        """Every topic with at least ``min_customers`` distinct customers (use
        :data:`PATTERN_MIN_CUSTOMERS` for the patterns worth showing), most customers first."""
        found: list[Topic] = []
        for topic_id, rows in self._members().items():
            customers = len({self._customer_key(r) for r in rows.tolist()})
            if customers < min_customers:
                continue
            terms = self._terms(rows)
            person = self._decisions.names.get(topic_id)
            found.append(
                Topic(
                    id=topic_id,
                    label=_majority(self._labels[r] for r in rows.tolist()),
                    name=person or " · ".join(terms[:2]) or UNNAMED,
                    terms=tuple(terms),
                    named_by_person=person is not None,
                    conversation_ids=tuple(self._conversation_ids[rows].tolist()),
                    customers=customers,
                    first_seen=_moment(int(self._created[rows[0]])),
                    last_seen=_moment(int(self._created[rows[-1]])),
                )
            )
        return sorted(found, key=lambda t: (-t.customers, -t.conversations, t.id))

    def trend(
        self,
        topic_id: int,
        now: datetime,
        recent: timedelta = RECENT_WINDOW,
        baseline: timedelta = BASELINE_WINDOW,
    ) -> Trend:
        """:func:`trending` for one topic, with every conversation the model holds as the inflow."""
        recent_start, baseline_start = _micros(now - recent), _micros(now - recent - baseline)
        end = _micros(now)
        rows = self._members().get(topic_id, np.zeros(0, dtype=np.int64))
        recent_customers: set[str] = set()
        baseline_customers: set[str] = set()
        for row in rows.tolist():
            created = int(self._created[row])
            if recent_start <= created < end:
                recent_customers.add(self._customer_key(row))
            elif baseline_start <= created < recent_start:
                baseline_customers.add(self._customer_key(row))
        times = self._created
        return trend_of_counts(
            len(recent_customers),
            len(baseline_customers),
            int(np.count_nonzero((times >= recent_start) & (times < end))),
            int(np.count_nonzero((times >= baseline_start) & (times < recent_start))),
            recent,
            baseline,
        )

    # -- persistence --

    def to_bytes(self) -> bytes:
        """The whole state as a compressed NumPy ``.npz`` (no pickled objects)."""
        meta = {
            "version": _FORMAT_VERSION,
            "settings": asdict(self.settings),
            "terms": self._vocabulary.terms,
            "display": self._vocabulary.display,
            "unseen_idf": self._vocabulary.unseen_idf,
            "customers": self._customers,
            "labels": self._labels,
            "decisions": self._decisions.to_json(),
            "next_id": self._next_id,
            "columns": int(self._vectors.shape[1]),
        }
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            meta=np.array(json.dumps(meta)),
            idf=self._vocabulary.idf,
            data=self._vectors.data,
            indices=self._vectors.indices,
            indptr=self._vectors.indptr,
            self2=self._self2,
            conversation_ids=self._conversation_ids,
            created=self._created,
            topic=self._topic,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> TopicModel:
        """A model from :meth:`to_bytes`; ``ValueError`` for another format version."""
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            meta = json.loads(str(arrays["meta"]))
            if meta.get("version") != _FORMAT_VERSION:
                raise ValueError(f"topic model format {meta.get('version')!r} is not supported")
            model = cls(TopicSettings(**meta["settings"]))
            model._vocabulary = Vocabulary(
                list(meta["terms"]),
                np.asarray(arrays["idf"], dtype=np.float64),
                list(meta["display"]),
                float(meta["unseen_idf"]),
            )
            model._conversation_ids = np.asarray(arrays["conversation_ids"], dtype=np.int64)
            model._vectors = sparse.csr_array(
                (arrays["data"], arrays["indices"], arrays["indptr"]),
                shape=(len(model._conversation_ids), int(meta["columns"])),
            )
            model._self2 = np.asarray(arrays["self2"], dtype=np.float64)
            model._created = np.asarray(arrays["created"], dtype=np.int64)
            model._topic = np.asarray(arrays["topic"], dtype=np.int64)
        model._customers = list(meta["customers"])
        model._labels = list(meta["labels"])
        model._row_of = {int(c): row for row, c in enumerate(model._conversation_ids)}
        model._set_decisions(Decisions.from_json(meta["decisions"]))
        model._next_id = int(meta["next_id"])
        return model

    # -- internals --

    def _set_decisions(self, decisions: Decisions) -> None:
        self._decisions = decisions
        self._merged = _resolve_merges(decisions.merged)
        mentioned = [*decisions.merged, *decisions.merged.values(), *decisions.pinned.values()]
        self._next_id = max([self._next_id, *(t + 1 for t in [*mentioned, *decisions.names])])

    def _resolve(self, topic: int | None) -> int | None:
        return None if topic is None else self._merged.get(topic, topic)

    def _pin(self, conversation_id: int) -> int | None:
        return self._resolve(self._decisions.pinned.get(conversation_id))

    def _group(self, rows: IntArray) -> tuple[LabelGroup, list[int]]:
        """The grouping state for ``rows``: placed rows are fixed in their topics (local indices
        in id order), the others unplaced. Returns it and the ids of its topics."""
        placed = self._topic[rows]
        ids = sorted({int(t) for t in placed.tolist() if t >= 0})
        position = {t: i for i, t in enumerate(ids)}
        local = np.array([position.get(int(t), -1) for t in placed.tolist()], dtype=np.int64)
        group = LabelGroup(
            self._vectors[rows], self._self2[rows], local, [True] * len(ids), self.settings
        )
        return group, ids

    def _append(self, items: Sequence[Item]) -> None:
        analysed = [analyse(item.text) for item in items]
        self._vocabulary.extend(analysed)
        vectors, self2 = self._vocabulary.vectors(analysed)
        held = sparse.csr_array(self._vectors, copy=True)
        held.resize((held.shape[0], vectors.shape[1]))  # new terms: new, empty columns
        self._vectors = sparse.vstack([held, vectors], format="csr")
        self._self2 = np.concatenate([self._self2, self2])
        start = len(self._conversation_ids)
        ids = np.array([i.conversation_id for i in items], dtype=np.int64)
        self._conversation_ids = np.concatenate([self._conversation_ids, ids])
        created = np.array([_micros(i.created_at) for i in items], dtype=np.int64)
        self._created = np.concatenate([self._created, created])
        self._customers += [i.customer for i in items]
        self._labels += [i.label for i in items]
        self._topic = np.concatenate([self._topic, np.full(len(items), -1, dtype=np.int64)])
        self._row_of.update({i.conversation_id: start + n for n, i in enumerate(items)})
        self._document_frequency = None

    def _labels_of(self, topic: IntArray, pinned: BoolArray) -> dict[int, str | None]:
        """Each topic's label: the majority of its members' (pinned ones count only when a topic
        has nothing else)."""
        labels: dict[int, list[str | None]] = defaultdict(list)
        pinned_labels: dict[int, list[str | None]] = defaultdict(list)
        for row in np.flatnonzero(topic >= 0).tolist():
            (pinned_labels if pinned[row] else labels)[int(topic[row])].append(self._labels[row])
        return {t: _majority(labels.get(t) or pinned_labels[t]) for t in {*labels, *pinned_labels}}

    def _label_groups(
        self, topic: IntArray, topic_label: Mapping[int, str | None]
    ) -> dict[str | None, IntArray]:
        """Rows by the label they are grouped under: their topic's when placed, else their own."""
        groups: dict[str | None, list[int]] = defaultdict(list)
        for row, placed in enumerate(topic.tolist()):
            groups[topic_label[placed] if placed >= 0 else self._labels[row]].append(row)
        return {label: np.array(rows, dtype=np.int64) for label, rows in groups.items()}

    def _members(self) -> dict[int, IntArray]:
        """Topic id → its rows in time order."""
        if not len(self._topic):
            return {}
        order = np.lexsort((self._conversation_ids, self._created))
        by_topic = self._topic[order]
        grouping = np.argsort(by_topic, kind="stable")
        ids, starts = np.unique(by_topic[grouping], return_index=True)
        parts = np.split(order[grouping], starts[1:])
        return {int(t): part.astype(np.int64) for t, part in zip(ids, parts, strict=True)}

    def _customer_key(self, row: int) -> str:
        customer = self._customers[row]
        return customer.strip().lower() if customer else f"#{int(self._conversation_ids[row])}"

    def _terms(self, rows: IntArray, limit: int = 4) -> list[str]:
        """The topic's distinctive terms: in a good share of its conversations and rare in the
        rest (coverage times log lift), a word pair in place of its word when nearly as good."""
        if self._document_frequency is None:
            self._document_frequency = np.bincount(
                self._vectors.indices, minlength=self._vectors.shape[1]
            ).astype(np.int64)
        terms, counts = np.unique(self._vectors[rows].indices, return_counts=True)
        if not len(terms):
            return []
        coverage = counts / len(rows)
        rate = np.maximum(self._document_frequency[terms], counts) / max(len(self._topic), 1)
        score = coverage * np.log(coverage / rate)
        minimum = 1.0 if len(rows) == 1 else max(2 / len(rows), 0.25)
        keep = (coverage >= minimum - 1e-9) & (score > 0)
        ranked = sorted(zip((-score[keep]).tolist(), terms[keep].tolist(), strict=True))
        words = self._vocabulary.terms
        best_pair: dict[str, tuple[float, int]] = {}  # word → the best pair containing it
        for negative, term in ranked:
            for word in words[term].split(" ") if " " in words[term] else ():
                best_pair.setdefault(word, (-negative, term))
        chosen: list[int] = []
        for negative, term in ranked:
            text = words[term]
            if " " not in text and text in best_pair and best_pair[text][0] >= -0.6 * negative:
                term = best_pair[text][1]
            parts = set(words[term].split(" "))
            covered = [c for c in chosen if set(words[c].split(" ")) <= parts]
            if term in chosen or any(parts <= set(words[c].split(" ")) for c in chosen):
                continue
            if covered:  # a pair replaces the word it contains, in the word's place
                chosen[chosen.index(covered[0])] = term
                chosen = [c for c in chosen if c not in covered[1:]]
            else:
                chosen.append(term)
            if len(chosen) == limit:
                break
        return [self._vocabulary.display[t] for t in chosen]


def _unique(items: Iterable[Item]) -> Iterator[Item]:
    seen: set[int] = set()
    for item in items:
        if item.conversation_id in seen:
            raise ValueError(f"conversation {item.conversation_id} is given twice")
        seen.add(item.conversation_id)
        yield item


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give it a time zone")
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


def _resolve_merges(merged: Mapping[int, int]) -> dict[int, int]:
    """Topic id → the survivor it ends in, following chains; the topics of a cycle (a merged into
    b and b into a) all end in the cycle's smallest id."""
    resolved: dict[int, int] = {}
    for start in merged:
        path = [start]
        current = start
        while current in merged:
            following = merged[current]
            if following in path:
                current = min(path[path.index(following) :])
                break
            path.append(following)
            current = following
        if current != start:
            resolved[start] = current
    return resolved


def _majority(labels: Iterable[str | None]) -> str | None:
    counts = Counter(labels)
    return max(counts.items(), key=lambda kv: (kv[1], kv[0] or ""))[0] if counts else None
