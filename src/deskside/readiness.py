"""``GET /readyz``: whether this process should get traffic, and what is down if not."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from deskside.errors import SourceError

if TYPE_CHECKING:
    from deskside.cache import Cache
    from deskside.insights.service import InsightsService
    from deskside.service import SidebarService

__all__ = ["Readiness"]

log = logging.getLogger("deskside.readiness")


class Readiness:
    """What ``GET /readyz`` answers.

    Live checks, run concurrently, each given ``timeout`` seconds (one that takes longer counts
    as failed and is left to finish in the background, so ``/readyz`` never hangs), their
    result reused for ``ttl`` seconds so a flood of probes costs one round of checks:

    - deskside's own parts: the insights database (``select 1`` on the store) and the cache
      (a Redis cache's PING). One down makes ``/readyz`` answer 503 ``unavailable``, naming it:
      webhooks are refused and the cache falls back to each process's memory meanwhile;
    - each source's :meth:`Source.check`, and its circuit breaker as it is now: one failing
      makes the status ``degraded``, still 200, since deskside answers helpfully without it.

    503 ``shutting_down`` once the server is stopping.
    """

    def __init__(
        self,
        service: SidebarService,
        insights: InsightsService | None = None,
        *,
        timeout: float = 1.0,
        ttl: float = 1.0,
    ) -> None:
        self.service = service
        self.insights = insights
        self.shutting_down = False
        self.timeout = timeout
        self.ttl = ttl
        self._checked_at = -math.inf
        self._failures: dict[str, str | None] = {}
        """Per check (``source NAME``, :data:`_CACHE`, :data:`_INSIGHTS`): None when it passed,
        else why it failed, for the log only (a source's reason may name its host)."""
        self._running: asyncio.Task[None] | None = None

    async def report(self) -> tuple[int, dict[str, Any]]:
        """The HTTP status and the document ``/readyz`` answers."""
        if self.shutting_down:
            return 503, {"status": "shutting_down"}
        if time.monotonic() - self._checked_at >= self.ttl:
            if self._running is None or self._running.done():
                self._running = asyncio.create_task(self._check())
            await asyncio.shield(self._running)  # one check serves every concurrent poll
        sources: dict[str, dict[str, str]] = {}
        for name, source in self.service.resolver.sources.items():
            sources[name] = {
                "state": "failing" if self._failures.get(_SOURCE + name) else "ok",
                "breaker": source.breaker.state.name.lower(),
            }
        cache = self.service.resolver.cache
        cache_ok = not self._failures.get(_CACHE) and cache.healthy()
        unavailable = not cache_ok
        document: dict[str, Any] = {
            "sources": sources,
            "cache": {"backend": cache.name, "state": "ok" if cache_ok else "unavailable"},
        }
        if self.insights is not None:
            insights_ok = not self._failures.get(_INSIGHTS)
            document["insights"] = {
                "state": "ok" if insights_ok else "database unavailable",
                "analysing": self.insights.analysing,
            }
            unavailable |= not insights_ok
        degraded = any(s["state"] != "ok" or s["breaker"] != "closed" for s in sources.values())
        status = "unavailable" if unavailable else "degraded" if degraded else "ready"
        return 503 if unavailable else 200, {
            "status": status,
            **document,
            "checked_seconds_ago": round(time.monotonic() - self._checked_at, 1),
        }

    async def _check(self) -> None:
        checks: dict[str, Callable[[], Awaitable[None]]] = {
            _SOURCE + name: source.check for name, source in self.service.resolver.sources.items()
        }
        cache, insights = self.service.resolver.cache, self.insights
        checks[_CACHE] = lambda: _ping(cache)
        if insights is not None:
            checks[_INSIGHTS] = lambda: _select_one(insights)
        failures = await asyncio.gather(*(self._failure(check) for check in checks.values()))
        for key, failure in zip(checks, failures, strict=True):
            before = self._failures.get(key)
            if failure and failure != before:
                log.warning("readyz: %s is failing its check: %s", key, failure)
            elif before and not failure:
                log.info("readyz: %s passes its check again", key)
            self._failures[key] = failure
        self._checked_at = time.monotonic()

    async def _failure(self, check: Callable[[], Awaitable[None]]) -> str | None:
        """Why ``check`` failed or took more than ``timeout`` seconds; None when it passed."""
        task = asyncio.ensure_future(check())
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:  # cancelled; its clean-up (a dead connection's) finishes in the background
            task.cancel()
            task.add_done_callback(_ignore_outcome)
            return f"no answer within {self.timeout:g} s"
        if task.cancelled():
            return "check cancelled"
        exc = task.exception()
        if exc is None:
            return None
        if isinstance(exc, SourceError | _Down):  # their messages are safe to log
            return str(exc) or type(exc).__name__
        return f"check raised {type(exc).__name__}"  # a driver's message may quote values


_SOURCE = "source "
_CACHE = "the cache"
_INSIGHTS = "the insights database"
"""Keys of :attr:`Readiness._failures` besides ``source NAME``; the log names them so."""


class _Down(Exception):
    """A check of deskside's own parts failed; the message says how."""


async def _ping(cache: Cache) -> None:
    if not await cache.reachable():
        raise _Down(f"{cache.name} does not answer")


async def _select_one(insights: InsightsService) -> None:
    """``select 1`` on the insights store; one that has not opened yet is unavailable."""
    from sqlalchemy import text  # with the insights stack: loaded only when configured

    if not insights.ready:
        raise _Down("not opened yet")
    async with insights.store.read() as session:
        await session.execute(text("select 1"))


def _ignore_outcome(task: asyncio.Task[None]) -> None:
    """A check abandoned after its timeout: what it ends with is of no interest any more."""
    if not task.cancelled():
        task.exception()
