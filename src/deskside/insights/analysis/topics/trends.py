"""Whether a topic is rising (:func:`trending`): its share of new conversations in the recent
window against the baseline window before it, with a one-sided binomial test; the thresholds
are in :mod:`.records`."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from scipy.stats import binomtest  # type: ignore[import-untyped]

from deskside.insights.analysis.topics.records import (
    BASELINE_WINDOW,
    RECENT_WINDOW,
    TRENDING_MAX_P_VALUE,
    TRENDING_MIN_CUSTOMERS,
    TRENDING_MIN_LIFT,
    Trend,
)

# --- Trending -------------------------------------------------------------------------------


def trending(
    members: Iterable[tuple[datetime, str]],
    inflow: Iterable[datetime],
    now: datetime,
    *,
    recent: timedelta = RECENT_WINDOW,
    baseline: timedelta = BASELINE_WINDOW,
) -> Trend:
    """Is a topic rising? ``members``: (created_at, customer key) of its conversations; ``inflow``:
    the created_at of every conversation (the topic's included). The recent window is the
    ``recent`` before ``now``, the baseline the ``baseline`` before that.

    A window's topic count is its distinct customers, its inflow the conversations in it. The
    baseline share is smoothed, (customers + 0.5) / (inflow + 1), so a brand-new topic is measured
    against half a customer and a short history makes nothing look surprising. Trending: at least
    :data:`TRENDING_MIN_CUSTOMERS` in the recent window, a recent share :data:`TRENDING_MIN_LIFT`
    times the baseline share, and a one-sided binomial p-value below
    :data:`TRENDING_MAX_P_VALUE`.
    """
    recent_start, baseline_start = now - recent, now - recent - baseline
    recent_customers: set[str] = set()
    baseline_customers: set[str] = set()
    for created, customer in members:
        if recent_start <= created < now:
            recent_customers.add(customer)
        elif baseline_start <= created < recent_start:
            baseline_customers.add(customer)
    recent_inflow = baseline_inflow = 0
    for created in inflow:
        if recent_start <= created < now:
            recent_inflow += 1
        elif baseline_start <= created < recent_start:
            baseline_inflow += 1
    return trend_of_counts(
        len(recent_customers),
        len(baseline_customers),
        recent_inflow,
        baseline_inflow,
        recent,
        baseline,
    )


def trend_of_counts(
    recent_customers: int,
    baseline_customers: int,
    recent_inflow: int,
    baseline_inflow: int,
    recent: timedelta,
    baseline: timedelta,
) -> Trend:
    recent_inflow = max(recent_inflow, recent_customers)
    baseline_share = (baseline_customers + 0.5) / (baseline_inflow + 1)
    recent_share = recent_customers / recent_inflow if recent_inflow else 0.0
    lift = recent_share / baseline_share
    p_value = 1.0
    if recent_customers:
        test = binomtest(recent_customers, recent_inflow, baseline_share, alternative="greater")
        p_value = float(test.pvalue)
    is_trending = (
        recent_customers >= TRENDING_MIN_CUSTOMERS
        and lift >= TRENDING_MIN_LIFT
        and p_value < TRENDING_MAX_P_VALUE
    )
    weekly = baseline_customers / (baseline / timedelta(days=7))
    before = baseline_customers / baseline_inflow if baseline_inflow else 0.0
    days = recent / timedelta(days=1)
    explanation = (
        f"{recent_customers} customer{'' if recent_customers == 1 else 's'} in the last "
        f"{days:g} day{'' if days == 1 else 's'} vs {weekly:.1f}/week before "
        f"({recent_share:.1%} of new conversations vs {before:.1%})"
    )
    return Trend(
        trending=is_trending,
        score=-math.log10(max(p_value, 1e-300)),
        p_value=p_value,
        lift=lift,
        recent_customers=recent_customers,
        baseline_customers=baseline_customers,
        recent_inflow=recent_inflow,
        baseline_inflow=baseline_inflow,
        explanation=explanation,
    )
