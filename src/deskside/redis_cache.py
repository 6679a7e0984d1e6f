"""The Redis cache: entries shared by every worker and replica, with the in-process cache to
fall back on while Redis is unreachable (see :mod:`deskside.cache` for the contract).

Only a config that caches in Redis imports this module, and so the Redis client.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import redis.asyncio as redis
from redis.exceptions import LockError, RedisError

from deskside.cache import CacheEntry, Lock, MemoryCache, NoLock

__all__ = ["RedisCache"]

log = logging.getLogger("deskside.cache")


class RedisCache:
    """Entries in Redis, shared by every worker and replica.

    Operations time out after ``timeout_seconds``; when Redis fails, the cache falls back to an
    in-process :class:`MemoryCache` for ``retry_seconds`` before trying Redis again, logging a
    warning (once per outage), so a Redis outage costs the helpdesk nothing but hit rate.
    """

    name = "redis"
    _PREFIX = "deskside:v1:"

    def __init__(
        self, url: str, *, timeout_seconds: float = 0.1, retry_seconds: float = 5.0
    ) -> None:
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry_on_timeout=False,
        )
        self._fallback = MemoryCache()
        self._retry_seconds = retry_seconds
        self._down_until = 0.0

    async def get(self, key: str) -> CacheEntry | None:
        if not self._available():
            return await self._fallback.get(key)
        try:
            raw = await self._redis.get(self._PREFIX + key)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return await self._fallback.get(key)
        return None if raw is None else _decode(raw)

    async def set(
        self, key: str, entry: CacheEntry, *, keep_seconds: float, emails: Sequence[str]
    ) -> None:
        if keep_seconds <= 0:
            return
        if not self._available():
            await self._fallback.set(key, entry, keep_seconds=keep_seconds, emails=emails)
            return
        milliseconds = max(1, int(keep_seconds * 1000))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._PREFIX + key, _encode(entry), px=milliseconds)
                for email in emails:
                    index = self._index(email)
                    pipe.sadd(index, key)
                    pipe.pexpire(index, milliseconds, gt=True)
                    pipe.pexpire(index, milliseconds, nx=True)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            await self._fallback.set(key, entry, keep_seconds=keep_seconds, emails=emails)

    async def forget(self, email: str) -> int:
        dropped = await self._fallback.forget(email)
        try:
            members = await self._redis.smembers(self._index(email))
            keys = [k.decode() if isinstance(k, bytes) else k for k in members]
            if keys:
                dropped += await self._redis.delete(*(self._PREFIX + k for k in keys))
            await self._redis.delete(self._index(email))
        except (RedisError, OSError) as exc:
            self._failed(exc)
        return dropped

    async def acquire(self, key: str, seconds: float) -> Lock | None:
        if not self._available():
            return NoLock()
        lock = self._redis.lock(
            f"{self._PREFIX}lock:{key}", timeout=max(seconds, 0.05), blocking=False
        )
        try:
            acquired = await lock.acquire(token=uuid.uuid4().hex)
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return NoLock()
        return _RedisLock(lock) if acquired else None

    async def claim(self, key: str, seconds: float) -> bool:
        if not self._available():
            return await self._fallback.claim(key, seconds)
        try:
            created = await self._redis.set(
                f"{self._PREFIX}claim:{key}", b"1", nx=True, ex=max(1, math.ceil(seconds))
            )
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return await self._fallback.claim(key, seconds)
        return bool(created)

    def healthy(self) -> bool:
        return self._available()

    async def reachable(self) -> bool:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return False
        self._down_until = 0.0
        return True

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _index(self, email: str) -> str:
        return f"{self._PREFIX}email:{email}"

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: BaseException) -> None:
        if self._available():
            log.warning(
                "redis cache unavailable (%s); caching in this process for %.0f s",
                type(exc).__name__,
                self._retry_seconds,
            )
        self._down_until = time.monotonic() + self._retry_seconds


class _RedisLock:
    def __init__(self, lock: Any) -> None:
        self._lock = lock

    async def release(self) -> None:
        with contextlib.suppress(LockError, RedisError, OSError):
            await self._lock.release()  # else it expired or Redis is gone: it ends by itself


# Records hold dates, times and decimals: JSON with tagged values keeps their types.
def _encode(entry: CacheEntry) -> bytes:
    return json.dumps(
        {"at": entry.stored_at, "records": entry.records}, default=_tag, separators=(",", ":")
    ).encode()


def _decode(raw: bytes | str) -> CacheEntry | None:
    try:
        document = json.loads(raw, object_hook=_untag)
        return CacheEntry(records=list(document["records"]), stored_at=float(document["at"]))
    except (ValueError, KeyError, TypeError):
        return None  # written by another version: a miss


def _tag(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _untag(document: dict[str, Any]) -> Any:
    if len(document) == 1:
        ((tag, text),) = document.items()
        if tag == "$datetime":
            return datetime.fromisoformat(text)
        if tag == "$date":
            return date.fromisoformat(text)
        if tag == "$decimal":
            return Decimal(text)
        if tag == "$bytes":
            return base64.b64decode(text)
    return document
