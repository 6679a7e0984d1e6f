"""Caches for source answers, keyed by source and addresses."""

from __future__ import annotations

import time
from typing import Protocol

from cachetools import TLRUCache

from deskside.sources.base import Record

__all__ = ["Cache", "MemoryCache"]


class Cache(Protocol):
    """Where found records are kept between requests. Errors are never stored."""

    async def get(self, key: str) -> list[Record] | None: ...

    async def set(self, key: str, records: list[Record], ttl_seconds: float) -> None: ...


class MemoryCache:
    """An in-process cache with a time-to-live per entry and a bound on its size."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: TLRUCache[str, tuple[list[Record], float]] = TLRUCache(
            maxsize=max_entries, ttu=lambda _key, value, now: now + value[1], timer=time.monotonic
        )

    async def get(self, key: str) -> list[Record] | None:
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    async def set(self, key: str, records: list[Record], ttl_seconds: float) -> None:
        if ttl_seconds > 0:
            self._entries[key] = (records, ttl_seconds)
