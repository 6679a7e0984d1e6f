"""Stopping a long command cleanly: Ctrl-C (SIGINT), or the SIGTERM a service manager sends.

A cancellation can be lost when it lands while a task waits on shielded work (a commit, a fetch
that finishes anyway), and SIGTERM would end the process in the middle of a batch. So the
commands that work in batches (``deskside import``, ``deskside worker``) take these signals
with :class:`GracefulStop` instead, and look at it between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Sequence
from types import TracebackType

__all__ = ["GracefulStop"]


class GracefulStop:
    """While entered (inside a running event loop, in the main thread), the first of
    ``signals`` sets :attr:`requested` to that signal and calls ``on_stop`` once. The handlers
    are removed then, so a second signal acts as it would without this: Ctrl-C raises
    ``KeyboardInterrupt`` at once, SIGTERM ends the process. Where signals cannot be handled
    (not the main thread, not Unix), this does nothing and the signals act as usual."""

    def __init__(
        self,
        on_stop: Callable[[], None] = lambda: None,
        signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM),
    ) -> None:
        self.requested: signal.Signals | None = None
        self._on_stop = on_stop
        self._signals = tuple(signals)
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> GracefulStop:
        self._loop = asyncio.get_running_loop()
        for number in self._signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.add_signal_handler(number, self._received, number)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._remove_handlers()

    def _received(self, number: signal.Signals) -> None:
        if self.requested is not None:
            return
        self.requested = number
        self._remove_handlers()
        self._on_stop()

    def _remove_handlers(self) -> None:
        if self._loop is None:
            return
        for number in self._signals:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.remove_signal_handler(number)
