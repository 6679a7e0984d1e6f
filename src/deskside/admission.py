"""Admission control: a worker answers at once, from what it has, the requests it could not
answer inside their deadline anyway, instead of queueing them.

A worker is one event loop. What makes an answer late is not a slow source (the resolver stops
waiting for sources at the deadline) but a loop with more work in hand than it can do in time:
every request then waits its turn, before and after its sources answer. So, when a helpdesk
request is about to ask its sources, the worker estimates when it could finish it::

    spent since it arrived  +  the loop's lag  +  requests in hand * loop time per request

and when that passes :data:`BUDGET_SHARE` of the deadline (the rest is for laying out and
sending this very answer) the request is *shed*: answered from the cache, fresh or stale, and
else with the helpdesk's "… unavailable" notes, as when a source hangs.

All three terms are measured in the worker: the time since the outermost middleware saw the
request; how late a timer the worker sets every :data:`TICK_SECONDS` wakes up (the loop was
busy all that time); and how long the loop was busy per helpdesk request answered. Busy time
is the process's CPU time, or the whole time between two ticks when the timer woke up late
(on a machine whose cores other programs use too, a request holds the loop longer than its
CPU time). An idle worker has nothing in hand and no lag, and so never sheds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

__all__ = ["BUDGET_SHARE", "TICK_SECONDS", "Admission"]

BUDGET_SHARE = 0.75
"""The share of the deadline a request may be expected to take and still be admitted."""
TICK_SECONDS = 0.05
"""How often the worker's timer measures the event loop's lag."""
_COST_WINDOW = (8, 1.0)
"""The loop time per request is measured over 8 answers, or 1 s when fewer come."""
_COST_WEIGHT = 0.3
"""The weight of the latest measurement of the loop time per request against earlier ones."""
_IDLE_SECONDS = 1.0
"""The timer stops after this long with nothing in hand (and starts with the next request)."""


class Admission:
    """One worker's admission control for helpdesk requests (not thread-safe: one loop)."""

    def __init__(self, deadline_seconds: float, *, enabled: bool = True) -> None:
        self.deadline_seconds = deadline_seconds
        self.enabled = enabled
        self.in_flight = 0
        """Helpdesk requests admitted and not answered yet."""
        self.cost = 0.0
        """Recent seconds of loop time per answered helpdesk request (0 until measured)."""
        self.lag = 0.0
        """The event loop's recent lag in seconds: how late its timer woke up."""
        self._answered = 0
        self._window = (0, 0.0, 0.0)  # answers, loop time busy and loop time at its start
        self._busy = 0.0  # seconds the loop was busy, since the timer started
        self._cpu = 0.0  # the process's CPU time at the latest tick
        self._due = 0.0  # the loop time the timer should wake up at
        self._busy_at = 0.0  # the loop time a request was last in hand
        self._ticker: asyncio.Task[None] | None = None

    @property
    def budget(self) -> float:
        return self.deadline_seconds * BUDGET_SHARE

    def expected(self, arrived: float, now: float) -> float:
        """Seconds after ``arrived`` a request admitted at loop time ``now`` should be
        answered, by the estimate above."""
        self._start()
        lag = max(self.lag, now - self._due)  # a timer overdue now is lag already
        return (now - arrived) + lag + self.in_flight * self.cost

    def admit(self, arrived: float | None) -> bool:
        """Whether to answer a request that arrived at loop time ``arrived`` in full (then
        call :meth:`done` once it is answered), rather than shed it."""
        if not self.enabled:
            return True
        now = asyncio.get_running_loop().time()
        if self.expected(now if arrived is None else arrived, now) > self.budget:
            return False
        self.in_flight += 1
        return True

    def done(self) -> None:
        """An admitted request was answered."""
        self.in_flight -= 1
        self._answered += 1
        self._busy_at = asyncio.get_running_loop().time()

    async def aclose(self) -> None:
        """Stop measuring (the app is stopping)."""
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None

    def _start(self) -> None:
        if self._ticker is None or self._ticker.done():
            loop = asyncio.get_running_loop()
            now = loop.time()
            self._due, self._busy_at = now + TICK_SECONDS, now
            self.lag = 0.0
            self._cpu = time.process_time()
            self._window = (self._answered, self._busy, now)
            self._ticker = loop.create_task(self._tick())

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        woke = loop.time()
        while True:
            await asyncio.sleep(max(self._due - loop.time(), 0))
            now, cpu = loop.time(), time.process_time()
            late = max(now - self._due, 0.0)
            self.lag = max(late, self.lag / 2)  # grows at once, fades within a few ticks
            # Late by half a tick or more: the loop was busy the whole time since the last one.
            self._busy += now - woke if late >= TICK_SECONDS / 2 else cpu - self._cpu
            self._cpu, woke, self._due = cpu, now, now + TICK_SECONDS
            if self.in_flight:
                self._busy_at = now
            idle = now - self._busy_at > _IDLE_SECONDS
            self._measure_cost(now, final=idle)
            if idle:
                self._ticker = None
                return

    def _measure_cost(self, now: float, *, final: bool) -> None:
        answered, busy, started = self._window
        count = self._answered - answered
        enough, longest = _COST_WINDOW
        if count < enough and now - started < longest and not final:
            return
        if count:  # else nothing was answered: the loop's time went elsewhere
            sample = (self._busy - busy) / count
            self.cost = sample if not self.cost else self.cost + _COST_WEIGHT * (sample - self.cost)
        self._window = (self._answered, self._busy, now)
