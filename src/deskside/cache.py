"""Where source answers are kept between requests: in this process, or in Redis for every worker
and replica (:mod:`deskside.redis_cache`).

An entry is a source's records for one set of addresses and the time they were fetched; the
resolver decides whether it is fresh, stale-but-usable or too old. Every entry is indexed by
each of its addresses, so one customer can be forgotten (``deskside cache clear``). A cache
never raises: a Redis that is down or slow is replaced by the in-process cache, with a warning.

A cache also remembers *claims*: keys used once for a while, such as the signed requests a
helpdesk may not send twice (:meth:`Cache.claim`).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cachetools import TLRUCache

from deskside.sources.base import Record

__all__ = ["Cache", "CacheEntry", "Lock", "MemoryCache", "NoLock", "build_cache"]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A source's records (``[]``: not found) and when they were fetched (Unix time)."""

    records: list[Record]
    stored_at: float

    def age(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.stored_at


class Cache(Protocol):
    """The interface the resolver uses; implementations never raise."""

    name: str

    async def get(self, key: str) -> CacheEntry | None:
        """The entry under ``key``, or None."""

    async def set(
        self, key: str, entry: CacheEntry, *, keep_seconds: float, emails: Sequence[str]
    ) -> None:
        """Keep ``entry`` for ``keep_seconds``, findable by each of ``emails``."""

    async def forget(self, email: str) -> int:
        """Drop every entry whose addresses include ``email``; how many were dropped."""

    async def acquire(self, key: str, seconds: float) -> Lock | None:
        """A lock on ``key`` across processes, or None when another holds it."""

    async def claim(self, key: str, seconds: float) -> bool:
        """Remember ``key`` for ``seconds``; False when it is remembered already (claimed
        before, by this process or, with Redis, by any other)."""

    def healthy(self) -> bool:
        """False while the cache is falling back (Redis unreachable)."""

    async def reachable(self) -> bool:
        """Try the backend now (for ``/readyz`` and the CLI)."""

    async def aclose(self) -> None: ...


class Lock(Protocol):
    async def release(self) -> None: ...


class NoLock:
    """The in-process cache needs no cross-process lock: the resolver single-flights in-process."""

    async def release(self) -> None:
        return None


class MemoryCache:
    """Entries in this process, each with its own lifetime, at most ``max_entries`` of them,
    and at most ``max_claims`` live claims (past that, the oldest is forgotten first).

    Records are kept pickled: a row as a driver makes it (a dict and a Python object per
    value) takes three times the memory of its pickle, and a full cache would otherwise be a
    good part of a worker's. Each :meth:`get` unpickles a fresh copy (a few µs), so no caller
    can change what the cache holds. Records that cannot be pickled (a Python source's own
    objects) are kept as they are.
    """

    name = "memory"

    def __init__(self, max_entries: int = 10_000, max_claims: int = 100_000) -> None:
        self._entries: TLRUCache[str, tuple[bytes | list[Record], float, float]] = TLRUCache(
            maxsize=max_entries, ttu=lambda _key, value, now: now + value[2], timer=time.monotonic
        )
        self._claims: TLRUCache[str, float] = TLRUCache(
            maxsize=max_claims, ttu=lambda _key, seconds, now: now + seconds, timer=time.monotonic
        )
        # Each address's keys: the key itself while there is one (most addresses, since a
        # lookup is one address and a source one key), a set once there are more.
        self._keys_by_email: dict[str, str | set[str]] = {}

    async def get(self, key: str) -> CacheEntry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        records, stored_at, _ = found
        if isinstance(records, bytes):  # pickled here by set(), never from outside
            records = pickle.loads(records)  # noqa: S301
        return CacheEntry(records=records, stored_at=stored_at)

    async def set(
        self, key: str, entry: CacheEntry, *, keep_seconds: float, emails: Sequence[str]
    ) -> None:
        if keep_seconds <= 0:
            return
        try:
            kept: bytes | list[Record] = pickle.dumps(entry.records, pickle.HIGHEST_PROTOCOL)
        except Exception:  # e.g. a lambda in a Python source's record
            kept = entry.records
        self._entries[key] = (kept, entry.stored_at, keep_seconds)
        if len(self._keys_by_email) > 2 * (self._entries.maxsize or 1):
            self._prune_index()
        for email in emails:
            known = self._keys_by_email.get(email)
            if known is None or known == key:
                self._keys_by_email[email] = key
            elif isinstance(known, str):
                self._keys_by_email[email] = {known, key}
            else:
                known.add(key)

    async def forget(self, email: str) -> int:
        keys = self._keys_by_email.pop(email, ())
        dropped = 0
        for key in (keys,) if isinstance(keys, str) else keys:
            dropped += self._entries.pop(key, None) is not None
        return dropped

    async def acquire(self, key: str, seconds: float) -> Lock | None:
        return NoLock()

    async def claim(self, key: str, seconds: float) -> bool:
        if key in self._claims:
            return False
        if seconds > 0:
            self._claims[key] = seconds
        return True

    def healthy(self) -> bool:
        return True

    async def reachable(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None

    def _prune_index(self) -> None:
        """Forget index entries whose cache entries have expired or been evicted."""
        for email, keys in list(self._keys_by_email.items()):
            if isinstance(keys, str):
                alive = keys in self._entries
            else:
                keys.intersection_update(k for k in keys if k in self._entries)
                alive = bool(keys)
            if not alive:
                del self._keys_by_email[email]


def build_cache(url: str) -> Cache:
    """``memory`` → :class:`MemoryCache`; ``redis://…``/``rediss://…``/``unix://…`` → Redis."""
    if url == "memory":
        return MemoryCache()
    # Imported here: the Redis client loads only for a config that caches in Redis.
    from deskside.redis_cache import RedisCache

    return RedisCache(url)
