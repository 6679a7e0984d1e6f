"""A :class:`~.worker.Worker` for every workspace of an instance, following the workspaces
added and removed while it runs (``deskside worker`` without ``--workspace``), as the server
does for its own workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from deskside.insights.ingest.worker import Worker
from deskside.insights.store import Store, describe_error
from deskside.insights.workspaces import Workspaces

__all__ = ["EveryWorkspace"]

log = logging.getLogger("deskside.insights")


@dataclass
class _Running:
    store: Store
    worker: Worker
    task: asyncio.Task[int]


class EveryWorkspace:
    """Runs a worker per workspace until :meth:`stop`. A workspace added meanwhile gets its
    worker within ``look_every`` seconds; a removed one's worker stops after its batch in hand.
    ``attempts_of(name)``: the workspace's ``worker_attempts``."""

    def __init__(
        self, control: Store, attempts_of: Callable[[str], int], *, look_every: float = 5.0
    ) -> None:
        """``control``: the default workspace's store, open (it lists the workspaces)."""
        self._control = control
        self._workspaces = Workspaces(control)
        self._attempts_of = attempts_of
        self._look_every = look_every
        self._stopping = asyncio.Event()
        self._running: dict[str, _Running] = {}

    def stop(self) -> None:
        """Make :meth:`run` return once every worker has finished its batch in hand."""
        self._stopping.set()
        for running in self._running.values():
            running.worker.stop()

    async def run(self) -> dict[str, int]:
        """How many events each workspace's worker processed, the default workspace first."""
        totals: dict[str, int] = {}
        try:
            while not self._stopping.is_set():
                await self._follow(totals)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._look_every)
        finally:
            for name in list(self._running):
                totals[name] = totals.get(name, 0) + await self._finish(name)
        return totals

    async def _follow(self, totals: dict[str, int]) -> None:
        try:
            names = await self._workspaces.names()
        except Exception as exc:  # the running workers wait the outage out themselves
            log.warning("worker: cannot read the workspaces (retrying): %s", describe_error(exc))
            return
        for name in names:
            totals.setdefault(name, 0)
            if name not in self._running:
                await self._start(name)
        for name in [name for name in self._running if name not in names]:
            totals[name] += await self._finish(name)

    async def _start(self, name: str) -> None:
        store = self._workspaces.store(name, pool_size=2)
        if store is not self._control:
            try:
                await store.open()
            except Exception as exc:
                log.warning("worker: cannot open workspace %s: %s", name, describe_error(exc))
                return
        worker = Worker(store, attempts=self._attempts_of(name))
        task = asyncio.create_task(worker.run(), name=f"deskside-worker-{name}")
        self._running[name] = _Running(store, worker, task)
        await asyncio.sleep(0)  # let run() begin: a stop() from now on is not forgotten

    async def _finish(self, name: str) -> int:
        running = self._running.pop(name)
        running.worker.stop()
        try:
            return await running.task
        finally:
            if running.store is not self._control:
                await running.store.aclose()
