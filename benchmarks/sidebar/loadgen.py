"""Closed-loop load that records every request's latency, run by ``run.py`` in its own process.

``--connections`` connections each send a request, wait for its whole answer, and send the next
one (a new connection when the server closed it, as gunicorn's sync workers do). Requests are
"<X-HelpScout-Signature>\\t<JSON body>" lines of a file, picked with a Zipf-like popularity
(the customer of rank k is asked for in proportion to 1 / k). Nothing is recorded during the
warm-up; then every request sent during ``--seconds`` is followed to its end, however late
(a request without an answer after ``--timeout`` seconds is a timeout: its connection is
closed and a new one opened). Prints one JSON object: throughput, latency percentiles, how
many answers came after ``--late-ms`` and how many contain ``--partial``, the errors, and the
generator's own CPU use, so that a saturated generator shows.

    python loadgen.py http://127.0.0.1:8000/helpscout requests.txt --connections 32
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import resource
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

ZIPF_EXPONENT = 1.0


def raw_requests(url: str, path: Path) -> list[bytes]:
    """Each line of ``path`` as the exact bytes of a keep-alive Help Scout POST to ``url``."""
    parts = urlsplit(url)
    raw = []
    for line in path.read_text().splitlines():
        signature, body = line.split("\t", 1)
        head = (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nX-HelpScout-Signature: {signature}\r\n"
            f"Content-Length: {len(body.encode())}\r\n\r\n"
        )
        raw.append(head.encode() + body.encode())
    return raw


def zipf_order(count: int, length: int, seed: int) -> list[int]:
    """``length`` indices into ``count`` requests, index i drawn with weight 1 / rank(i)^s; the
    ranks are a fixed shuffle, so popularity has nothing to do with position in the file."""
    rng = random.Random(seed)
    ranks = list(range(count))
    rng.shuffle(ranks)
    weights = [1 / (rank + 1) ** ZIPF_EXPONENT for rank in ranks]
    return rng.choices(range(count), weights=weights, k=length)


class Load:
    """Shared state of one run: what to send next, what was measured."""

    def __init__(
        self, requests: list[bytes], order: list[int], timeout: float, partial_marker: bytes
    ) -> None:
        self.requests = requests
        self.partial_marker = partial_marker
        self.partial = 0  # recorded answers that contain partial_marker
        self.order = itertools.cycle(order)
        self.timeout = timeout
        self.recording_from = math.inf  # requests sent from then on are recorded
        self.window_end = math.inf  # ... until then; answers in the window count for req/s
        self.latencies: list[float] = []
        self.answered_in_window = 0
        self.errors: Counter[str] = Counter()
        self.in_flight = 0
        self.stopping = False
        self.drained = asyncio.Event()

    def next_request(self) -> bytes:
        return self.requests[next(self.order)]


class Wire(asyncio.Protocol):
    """One TCP connection of a client: passes its events on, tagged with itself."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self.client.opened(self)

    def data_received(self, data: bytes) -> None:
        self.client.data_received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.lost(self)


class Client:
    """One connection's loop: send, read the answer (Content-Length framed), repeat."""

    def __init__(self, load: Load, host: str, port: int) -> None:
        self.load, self.host, self.port = load, host, port
        self.wire: Wire | None = None
        self.buffer = bytearray()
        self.sent_at = 0.0
        self.recorded = False
        self.waiting = False
        self.timer: asyncio.TimerHandle | None = None
        self.connecting: asyncio.Task[Any] | None = None

    # ── connection life ──
    def connect(self) -> None:
        loop = asyncio.get_running_loop()
        opening = loop.create_connection(lambda: Wire(self), self.host, self.port)
        self.connecting = loop.create_task(opening)
        self.connecting.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[Any]) -> None:
        if (error := task.exception()) is None:
            return
        load = self.load
        if time.perf_counter() >= load.recording_from and not load.stopping:
            load.errors[f"connect: {type(error).__name__}"] += 1
        if not load.stopping:
            asyncio.get_running_loop().call_later(0.1, self.connect)

    def opened(self, wire: Wire) -> None:
        self.wire = wire
        self.buffer.clear()
        self.send()

    def lost(self, wire: Wire) -> None:
        if wire is not self.wire:  # one this client closed itself
            return
        self.wire = None
        if self.waiting:  # closed before the whole answer came
            self._finish(error="closed")
        elif not self.load.stopping:  # closed while idle: open another
            self.connect()

    def close(self) -> None:
        if self.wire is not None:
            wire, self.wire = self.wire, None
            if wire.transport is not None:
                wire.transport.close()

    # ── one request ──
    def send(self) -> None:
        load = self.load
        if load.stopping or self.wire is None or self.wire.transport is None:
            return
        self.sent_at = time.perf_counter()
        self.recorded = self.sent_at >= load.recording_from
        self.waiting = True
        if self.recorded:
            load.in_flight += 1
        self.timer = asyncio.get_running_loop().call_later(load.timeout, self._timed_out)
        self.wire.transport.write(load.next_request())

    def data_received(self, wire: Wire, data: bytes) -> None:
        if wire is not self.wire:
            return
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or not self.waiting:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(b"content-length:")
        if start < 0:
            self._finish(error="no Content-Length")
            return
        line_end = head.find(b"\r\n", start)
        length = int(head[start + 15 : line_end if line_end > 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        close = b"connection: close" in head
        marker = self.load.partial_marker
        if marker and self.recorded and self.buffer.find(marker, end + 4, end + 4 + length) >= 0:
            self.load.partial += 1
        del self.buffer[: end + 4 + length]
        self._finish(error=None if status == 200 else f"HTTP {status}", close=close)

    def _timed_out(self) -> None:
        self.timer = None
        self._finish(error="timeout", close=True)

    def _finish(self, error: str | None, close: bool = False) -> None:
        if not self.waiting:
            return
        load = self.load
        self.waiting = False
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        now = time.perf_counter()
        if self.recorded:
            load.in_flight -= 1
            if error:
                load.errors[error] += 1
            if error is None or error.startswith("HTTP"):  # an answer, however it reads
                load.latencies.append(now - self.sent_at)
        if error is None and load.recording_from <= now <= load.window_end:
            load.answered_in_window += 1
        if load.stopping and load.in_flight == 0:
            load.drained.set()
        if close or error is not None:
            self.close()
            if not load.stopping:
                self.connect()
        else:
            self.send()


async def run(
    url: str, requests: list[bytes], connections: int, warmup: float, seconds: float,
    request_timeout: float, late_ms: float, seed: int, marks: bool = False,
    partial_marker: bytes = b"",
) -> dict[str, Any]:  # fmt: skip
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    load = Load(requests, zipf_order(len(requests), 200_000, seed), request_timeout, partial_marker)
    clients = [Client(load, host, port) for _ in range(connections)]
    for client in clients:
        client.connect()
    await asyncio.sleep(warmup)
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    load.recording_from = time.perf_counter()
    load.window_end = load.recording_from + seconds
    if marks:
        print("RECORDING", flush=True)
    await asyncio.sleep(seconds)
    if marks:
        print("WINDOW-END", flush=True)
    load.stopping = True
    if load.in_flight:
        await asyncio.wait_for(load.drained.wait(), request_timeout + 5)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    for client in clients:
        client.close()
    used = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    spent = time.perf_counter() - load.recording_from
    timeouts = load.errors.get("timeout", 0)
    # A request that timed out took longer than any answer: it sorts last, as "no answer".
    latencies = sorted(load.latencies) + [math.inf] * timeouts

    def percentile(p: float) -> float | None:
        if not latencies:
            return None
        value = latencies[min(len(latencies) - 1, math.ceil(p / 100 * len(latencies)) - 1)]
        return value * 1000 if value < math.inf else None

    return {
        "requests": load.answered_in_window,
        "seconds": seconds,
        "rps": load.answered_in_window / seconds,
        "answers": len(load.latencies),
        "partial": load.partial,
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        "max_ms": percentile(100),
        "late": sum(1 for value in latencies if value * 1000 > late_ms),
        "timeouts": timeouts,
        "errors": sum(n for kind, n in load.errors.items() if kind != "timeout"),
        "error_kinds": dict(load.errors),
        "generator_cpu_percent": used / spent * 100,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("requests", type=Path)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds, not recorded")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds recorded")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    parser.add_argument("--late-ms", type=float, required=True, help="an answer after is late")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument(
        "--partial", default="", help="answers whose body contains this text are counted"
    )
    parser.add_argument(
        "--marks", action="store_true", help="print RECORDING and WINDOW-END lines as they pass"
    )
    args = parser.parse_args()
    load = run(
        args.url, raw_requests(args.url, args.requests), args.connections, args.warmup,
        args.seconds, args.timeout, args.late_ms, args.seed, args.marks,
        args.partial.encode(),
    )  # fmt: skip
    print_outcome(load)


def print_outcome(load: Coroutine[Any, Any, dict[str, Any]]) -> None:
    """Run ``load`` on uvloop when installed (the loop the servers use: its timers fire on
    time), else on asyncio's, and print what it returns as one JSON line."""
    try:
        import uvloop
    except ImportError:
        print(json.dumps(asyncio.run(load)))
    else:
        print(json.dumps(uvloop.run(load)))


if __name__ == "__main__":
    main()
