"""Topics: conversations about the same problem or request, grouped, named, counted, and watched
for a rise. Pure and database-free: the store hands in :class:`Item` s and :class:`Decisions` and
keeps what :meth:`TopicModel.to_bytes` returns (or the memberships, see "Persistence").

Grouping
--------
Each conversation becomes a TF-IDF vector of the customer's own words (scikit-learn): lower-cased
words without English and support-mail stop words ("hi", "thanks", "please", "feature", …),
inflections folded (export/exports/exporting → one term), plus adjacent word pairs (order-free,
weighted :data:`BIGRAM_WEIGHT`); sublinear tf, smoothed idf. Terms seen in fewer than
:data:`MIN_DOCUMENT_FREQUENCY` conversations are left out of the vocabulary but still count in a
vector's length, so a message that shares one word and says ten others is not a close match.

Only conversations with the same ``label`` are compared: a bug and a feature request about the same
screen are different topics. Within a label, :meth:`TopicModel.fit` runs, in time order:

1. *placement* (leader clustering): each conversation joins the topic whose centroid is most similar
   when the cosine is at least ``join_similarity`` (``pair_similarity`` while the topic is a single
   conversation) and they share ``min_shared_terms`` terms; otherwise it starts a topic. The
   similarities are sparse products a chunk of conversations at a time, exactly what placing them
   one by one would see.
2. *refinement*: every conversation is compared again with every finished topic (its own without
   itself), moves to a better one or leaves a topic it no longer fits, so the outcome hardly depends
   on who wrote first.
3. *merge*: topics whose centroids are ``merge_similarity`` alike become one, unless the split
   check below would cut them apart again.
4. *split check*: a topic of :data:`SPLIT_MIN_CONVERSATIONS` or more is cut in two (2-means); when
   the halves are much less alike across than within (``split_ratio``), they are two problems that
   shared words, and become two topics. Then refinement once more.

:meth:`TopicModel.assign` runs only step 1, for new conversations against the existing topics: a
topic keeps its id as it grows. Words the vocabulary lacks are added with the idf of a word seen
once, so a new problem's second report can pair with its first. A later :meth:`TopicModel.fit`
(to re-learn the vocabulary and idf) keeps every conversation that sits in a topic of two or more
where it is, so it never splits an existing topic or merges two; it regroups only new and single
conversations (they may join existing topics).

People's decisions (:class:`Decisions`) are applied on every run: a pinned conversation stays in the
topic a person put it in, a merged topic's conversations (and new ones that would have joined it)
are in the survivor, a person's name replaces the generated one. Splitting a topic is pinning the
conversations that leave it to :meth:`TopicModel.new_topic_id`.

Limits: similarity is word overlap. Paraphrases with no words in common ("SSO", "single
sign-on") stay apart, and problems put in the same words on different screens ("server error" on
invoices and on reports) can share a topic; a person's merge or split fixes either, for good.
On benchmarks/topics.py (50,000 generated messages, 2 cores): fit 8 s, assign 1,000 in 0.13 s.

Persistence
-----------
:meth:`TopicModel.to_bytes` / :meth:`TopicModel.from_bytes`: a NumPy ``.npz`` (no pickle) with the
settings, vocabulary, idf, every conversation's vector, topic, customer, time and label, and the
decisions last applied (8 MB for 50,000 conversations; saved in 0.6 s, loaded in 0.1 s). Or,
without it, ``fit(items, decisions, previous=memberships)`` rebuilds a model from the stored
memberships: conversations in topics of two or more keep them and their ids, single ones keep
theirs unless they join a topic; the vocabulary is learnt anew from the texts.

The parts: :mod:`.records` (thresholds and the data in and out), :mod:`.terms` (words to
vectors), :mod:`.grouping` (one label's conversations), :mod:`.model` (:class:`TopicModel`),
:mod:`.trends` (:func:`trending`).
"""

from __future__ import annotations

from deskside.insights.analysis.topics.model import TopicModel
from deskside.insights.analysis.topics.records import (
    BASELINE_WINDOW,
    PATTERN_MIN_CUSTOMERS,
    RECENT_WINDOW,
    UNNAMED,
    Decisions,
    Item,
    Topic,
    TopicSettings,
    Trend,
)
from deskside.insights.analysis.topics.trends import trending

__all__ = [
    "BASELINE_WINDOW",
    "PATTERN_MIN_CUSTOMERS",
    "RECENT_WINDOW",
    "UNNAMED",
    "Decisions",
    "Item",
    "Topic",
    "TopicModel",
    "TopicSettings",
    "Trend",
    "trending",
]
