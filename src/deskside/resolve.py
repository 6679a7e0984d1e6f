"""Run every source at once under one deadline, and collect what each returned or why not.

Per source and set of addresses the resolver reads the cache; a fresh entry answers at once.
Otherwise one fetch serves every concurrent request for those addresses (single-flight, and
across processes with a Redis cache), unless the source's circuit breaker is open. A source
that fails, is refused by its breaker or overruns the deadline shows its last good answer,
marked with when it was fetched, while that is within its grace, and else nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from deskside import metrics
from deskside.cache import Cache, CacheEntry, MemoryCache
from deskside.errors import SourceError
from deskside.expressions import normalise_record
from deskside.lookup import Lookup
from deskside.sources.base import Record, Source

__all__ = ["Profile", "Resolver", "SourceResult"]

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.02
"""How often a process waiting for another's fetch (Redis lock) looks for its answer."""


@dataclass(frozen=True)
class SourceResult:
    """One source's answer: its records, or ``error`` saying why there are none.

    A *stale* result has both: the source failed (``error``), and ``records`` are its last
    good answer, fetched at ``stale_since`` (Unix time).
    """

    records: list[Record] = field(default_factory=list)
    error: str | None = None
    elapsed_ms: float = 0.0
    cached: bool = False
    stale_since: float | None = None
    fetched_at: float | None = None
    """When a cached answer was fetched (Unix time); None for a fresh one."""

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Profile:
    """What every source returned for one lookup, in the order the sources are configured."""

    lookup: Lookup
    results: Mapping[str, SourceResult]
    labels: Mapping[str, str]

    @property
    def found(self) -> bool:
        return any(result.records for result in self.results.values())

    @property
    def unavailable(self) -> list[str]:
        """Labels of the sources that failed or ran out of time and have nothing to show."""
        return [
            self.labels[name]
            for name, result in self.results.items()
            if not result.ok and result.stale_since is None
        ]

    @property
    def stale(self) -> list[tuple[str, float]]:
        """``(label, fetched at)`` of the sources shown from an older answer."""
        return [
            (self.labels[name], result.stale_since)
            for name, result in self.results.items()
            if result.stale_since is not None
        ]


class Resolver:
    """Fetches a lookup from all sources concurrently; never waits past ``deadline_seconds``."""

    def __init__(
        self,
        sources: Mapping[str, Source],
        *,
        deadline_seconds: float,
        cache: Cache | None = None,
    ) -> None:
        self.sources = dict(sources)
        self.deadline_seconds = deadline_seconds
        self.cache: Cache = cache if cache is not None else MemoryCache()
        self._flights: dict[str, tuple[asyncio.Task[list[Record]], float]] = {}
        """In-flight fetches by cache key, with the loop time they give up at."""

    async def resolve(
        self, lookup: Lookup, *, refresh: bool = False, since: float | None = None
    ) -> Profile:
        """Every source's answer for ``lookup``; ``refresh`` skips fresh cached answers.

        The deadline runs from ``since`` (the event loop's time the request arrived), or now.
        """
        loop = asyncio.get_running_loop()
        deadline = (loop.time() if since is None else since) + self.deadline_seconds
        tasks = {
            name: asyncio.create_task(self._answer(source, lookup, refresh, deadline))
            for name, source in self.sources.items()
        }
        if tasks:  # each answers by the deadline itself; this is only a safety net
            await asyncio.wait(tasks.values(), timeout=max(deadline - loop.time(), 0) + 0.05)
        results: dict[str, SourceResult] = {}
        for name, task in tasks.items():
            if task.done():
                results[name] = task.result()
            else:
                task.cancel()
                results[name] = SourceResult(error="timed out", elapsed_ms=self.deadline_seconds)
        labels = {name: source.label for name, source in self.sources.items()}
        return Profile(lookup=lookup, results=results, labels=labels)

    async def from_cache(self, lookup: Lookup, reason: str) -> Profile:
        """Every source's answer for ``lookup`` from the cache alone, without fetching: a fresh
        entry as usual, an older one within its grace as stale, else the error ``reason``."""
        results = dict(
            zip(
                self.sources,
                await asyncio.gather(
                    *(self._cached(source, lookup, reason) for source in self.sources.values())
                ),
                strict=True,
            )
        )
        labels = {name: source.label for name, source in self.sources.items()}
        return Profile(lookup=lookup, results=results, labels=labels)

    async def _cached(self, source: Source, lookup: Lookup, reason: str) -> SourceResult:
        started = time.perf_counter()
        entry = await self.cache.get(_key(source, lookup))
        now = time.time()
        if entry is not None and entry.age(now) < _fresh_for(source, entry):
            return SourceResult(
                records=entry.records,
                cached=True,
                fetched_at=entry.stored_at,
                elapsed_ms=_since(started),
            )
        return _fallback(source, _usable(source, entry, now), reason, started)

    async def forget(self, email: str) -> int:
        """Drop every cached answer that involves ``email`` (e.g. after a plan change)."""
        return await self.cache.forget(email)

    async def aclose(self) -> None:
        for flight, _ in self._flights.values():
            flight.cancel()
        await asyncio.gather(*(source.aclose() for source in self.sources.values()))
        await self.cache.aclose()

    async def _answer(
        self, source: Source, lookup: Lookup, refresh: bool, deadline: float
    ) -> SourceResult:
        started = time.perf_counter()
        key = _key(source, lookup)
        entry = None if refresh else await self.cache.get(key)
        now = time.time()
        if entry is not None and entry.age(now) < _fresh_for(source, entry):
            result = "hit" if entry.records else "negative"
            metrics.CACHE_RESULTS.labels(source.name, result).inc()
            return SourceResult(
                records=entry.records,
                cached=True,
                fetched_at=entry.stored_at,
                elapsed_ms=_since(started),
            )
        metrics.CACHE_RESULTS.labels(source.name, "miss").inc()
        usable = _usable(source, entry, now)
        flight, gives_up_at = self._flights.get(key, (None, 0.0))
        if flight is None or gives_up_at <= asyncio.get_running_loop().time():
            if not source.breaker.allow():
                metrics.SOURCE_ERRORS.labels(source.name, "open").inc()
                return _fallback(source, usable, "skipped: failing (circuit open)", started)
            flight = self._start_flight(source, lookup, key, deadline)
        try:
            async with asyncio.timeout_at(deadline):
                records = await asyncio.shield(flight)
        except TimeoutError:
            return _fallback(source, usable, "timed out", started)
        except SourceError as exc:
            return _fallback(source, usable, str(exc), started)
        return SourceResult(records=records, elapsed_ms=_since(started))

    def _start_flight(
        self, source: Source, lookup: Lookup, key: str, deadline: float
    ) -> asyncio.Task[list[Record]]:
        flight = asyncio.create_task(self._fly(source, lookup, key, deadline))
        self._flights[key] = (flight, deadline)

        def landed(task: asyncio.Task[list[Record]]) -> None:
            if self._flights.get(key, (None,))[0] is task:
                del self._flights[key]
            if not task.cancelled():
                task.exception()  # retrieved: no waiter may be left to see it

        flight.add_done_callback(landed)
        return flight

    async def _fly(self, source: Source, lookup: Lookup, key: str, deadline: float) -> list[Record]:
        """Fetch once for every request waiting on ``key``, store the answer, and tell the
        breaker. Gives up at the first request's ``deadline``; raises :class:`SourceError`."""
        started = time.perf_counter()
        started_at = time.time()
        try:
            async with asyncio.timeout_at(deadline):
                lock = await self.cache.acquire(key, self.deadline_seconds)
                while lock is None:  # another process is fetching: wait for its answer
                    await asyncio.sleep(_POLL_SECONDS)
                    lock = await self.cache.acquire(key, self.deadline_seconds)
                    entry = await self.cache.get(key)
                    if entry is not None and entry.stored_at >= started_at:
                        if lock is not None:
                            await lock.release()
                        return entry.records
                try:
                    records = [normalise_record(r) for r in await source.fetch(lookup)]
                    ttl = source.cache_ttl_seconds if records else source.negative_ttl_seconds
                    keep = ttl + source.stale_grace_seconds if records else ttl
                    entry = CacheEntry(records=records, stored_at=time.time())
                    await self.cache.set(key, entry, keep_seconds=keep, emails=lookup.emails)
                finally:
                    await lock.release()
        except TimeoutError:
            self._failed(source, "timeout")
            log.warning("source %s timed out after %.0f ms", source.name, _since(started))
            raise SourceError("timed out") from None
        except SourceError as exc:
            self._failed(source, "error")
            log.warning("source %s failed: %s", source.name, exc)
            raise
        except Exception as exc:
            self._failed(source, "error")
            log.exception("source %s failed unexpectedly", source.name)
            raise SourceError(f"failed ({type(exc).__name__})") from exc
        source.breaker.succeeded()
        metrics.BREAKER_STATE.labels(source.name).set(source.breaker.state)
        metrics.SOURCE_SECONDS.labels(source.name).observe(time.perf_counter() - started)
        return records

    @staticmethod
    def _failed(source: Source, kind: str) -> None:
        source.breaker.failed()
        metrics.BREAKER_STATE.labels(source.name).set(source.breaker.state)
        metrics.SOURCE_ERRORS.labels(source.name, kind).inc()


def _key(source: Source, lookup: Lookup) -> str:
    return f"{source.name}\x1f" + "\x1f".join(sorted(lookup.emails))


def _usable(source: Source, entry: CacheEntry | None, now: float) -> CacheEntry | None:
    """``entry`` when it may still be shown as stale: it has records and is within grace."""
    grace = source.cache_ttl_seconds + source.stale_grace_seconds
    return entry if entry is not None and entry.records and entry.age(now) < grace else None


def _fresh_for(source: Source, entry: CacheEntry) -> float:
    return source.cache_ttl_seconds if entry.records else source.negative_ttl_seconds


def _fallback(
    source: Source, usable: CacheEntry | None, error: str, started: float
) -> SourceResult:
    """The source's last good answer, marked stale, or else just the error."""
    if usable is None:
        return SourceResult(error=error, elapsed_ms=_since(started))
    metrics.CACHE_RESULTS.labels(source.name, "stale").inc()
    return SourceResult(
        records=usable.records,
        error=error,
        cached=True,
        stale_since=usable.stored_at,
        elapsed_ms=_since(started),
    )


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
