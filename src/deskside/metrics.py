"""Prometheus metrics: what operators graph and alert on.

Every metric lives in one registry. With several worker processes, ``deskside serve`` sets
``PROMETHEUS_MULTIPROC_DIR`` so that ``/metrics`` adds up all workers (prometheus_client's
multiprocess mode). Labels never hold customer data: helpdesk and source names come from the
config, statuses and reasons from fixed sets.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "BREAKER_STATE",
    "CACHE_RESULTS",
    "MULTIPROC_ENV",
    "REQUESTS",
    "REQUEST_SECONDS",
    "SHED",
    "SIGNATURE_FAILURES",
    "SOURCE_ERRORS",
    "SOURCE_SECONDS",
]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""Set (by ``deskside serve --workers N``, or by you): ``/metrics`` adds up every process."""

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REQUESTS = Counter(
    "deskside_requests_total",
    "Helpdesk requests answered, by helpdesk and HTTP status.",
    ["helpdesk", "status"],
)
REQUEST_SECONDS = Histogram(
    "deskside_request_duration_seconds",
    "Time to answer a helpdesk request.",
    ["helpdesk"],
    buckets=_LATENCY_BUCKETS,
)
SHED = Counter(
    "deskside_shed_total",
    "Helpdesk requests answered at once without asking the sources, because the worker could "
    "not have answered them inside the deadline; by helpdesk and answer: cache (every source "
    "from the cache), partial (some sources unavailable), unavailable (no source).",
    ["helpdesk", "answer"],
)
SIGNATURE_FAILURES = Counter(
    "deskside_signature_failures_total",
    "Requests refused for their signature, by reason.",
    ["helpdesk", "reason"],
)
SOURCE_SECONDS = Histogram(
    "deskside_source_duration_seconds",
    "Time a source took to answer (cache hits excluded).",
    ["source"],
    buckets=_LATENCY_BUCKETS,
)
SOURCE_ERRORS = Counter(
    "deskside_source_errors_total",
    "Source calls that failed, by kind: error, timeout, open.",
    ["source", "kind"],
)
CACHE_RESULTS = Counter(
    "deskside_cache_total",
    "Cache look-ups by result: hit, miss, negative (not found), stale.",
    ["source", "result"],
)
BREAKER_STATE = Gauge(
    "deskside_breaker_state",
    "Circuit breaker per source: 0 closed, 1 half-open, 2 open.",
    ["source"],
    multiprocess_mode="max",
)
