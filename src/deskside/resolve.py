"""Run every source at once under one deadline, and collect what each returned or why not."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from deskside.cache import Cache, MemoryCache
from deskside.errors import SourceError
from deskside.expressions import normalise_record
from deskside.lookup import Lookup
from deskside.sources.base import Record, Source

__all__ = ["Profile", "Resolver", "SourceResult"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceResult:
    """One source's answer: its records, or ``error`` saying why there are none."""

    records: list[Record] = field(default_factory=list)
    error: str | None = None
    elapsed_ms: float = 0.0
    cached: bool = False

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
        """Labels of the sources that failed or ran out of time."""
        return [self.labels[name] for name, result in self.results.items() if not result.ok]


class Resolver:
    """Fetches a lookup from all sources concurrently; never waits past ``deadline_seconds``.

    A source that raises or overruns is reported in its :class:`SourceResult`, and the others'
    records are still returned. Found records are cached per source and addresses.
    """

    def __init__(
        self,
        sources: Mapping[str, Source],
        *,
        deadline_seconds: float,
        cache: Cache | None = None,
    ) -> None:
        self.sources = dict(sources)
        self.deadline_seconds = deadline_seconds
        self._cache: Cache = cache if cache is not None else MemoryCache()

    async def resolve(self, lookup: Lookup, *, refresh: bool = False) -> Profile:
        """Every source's answer for ``lookup``; ``refresh`` skips cached answers."""
        started = time.perf_counter()
        tasks = {
            name: asyncio.create_task(self._fetch(source, lookup, refresh))
            for name, source in self.sources.items()
        }
        if tasks:
            await asyncio.wait(tasks.values(), timeout=self.deadline_seconds)
        results: dict[str, SourceResult] = {}
        for name, task in tasks.items():
            if task.done():
                results[name] = task.result()
                continue
            task.cancel()
            elapsed = (time.perf_counter() - started) * 1000
            log.warning("source %s timed out after %.0f ms", name, elapsed)
            results[name] = SourceResult(error="timed out", elapsed_ms=elapsed)
        labels = {name: source.label for name, source in self.sources.items()}
        return Profile(lookup=lookup, results=results, labels=labels)

    async def _fetch(self, source: Source, lookup: Lookup, refresh: bool) -> SourceResult:
        started = time.perf_counter()
        key = f"{source.name}\x1f" + "\x1f".join(sorted(lookup.emails))
        if not refresh and (cached := await self._cache.get(key)) is not None:
            return SourceResult(records=cached, cached=True, elapsed_ms=_since(started))
        try:
            records = [normalise_record(record) for record in await source.fetch(lookup)]
        except SourceError as exc:
            log.warning("source %s failed: %s", source.name, exc)
            return SourceResult(error=str(exc), elapsed_ms=_since(started))
        except Exception as exc:
            log.exception("source %s failed unexpectedly", source.name)
            return SourceResult(error=f"failed ({type(exc).__name__})", elapsed_ms=_since(started))
        if records:
            await self._cache.set(key, records, source.cache_ttl_seconds)
        return SourceResult(records=records, elapsed_ms=_since(started))

    async def aclose(self) -> None:
        await asyncio.gather(*(source.aclose() for source in self.sources.values()))


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000
