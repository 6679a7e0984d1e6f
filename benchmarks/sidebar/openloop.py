"""Open-loop load at a constant rate, run by ``run.py`` in its own process.

Request i is sent at start + i / rate whether or not earlier ones have been answered, on an
idle keep-alive connection or a new one, and its latency counts from that scheduled moment, so
a slow server cannot slow the load down and hide its own queueing (no coordinated omission).
Requests come from a file of "<X-HelpScout-Signature>\\t<JSON body>" lines (read as
``loadgen.py`` reads them); prints one JSON object with the latency percentiles.

    python benchmarks/sidebar/openloop.py URL requests.txt --rate 200 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadgen import print_outcome, raw_requests  # beside this file: it runs as a script

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
IDLE_SECONDS = 2.0
"""Idle connections older than this are not reused (uvicorn closes them after 5 s)."""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """The status of the next response, and whether its connection may be reused."""
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip().lower() for k, _, v in (h.partition(":") for h in head)}
    if "content-length" not in headers:
        raise ValueError("only responses with a Content-Length are supported")
    await reader.readexactly(int(headers["content-length"]))
    return int(head[0].split()[1]), headers.get("connection") != "close"


async def run(url: str, requests: list[bytes], rate: float, duration: float) -> dict[str, Any]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    idle: list[tuple[float, Connection]] = []  # (idle since, connection), newest last
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def connection() -> Connection:
        while idle:
            since, (reader, writer) = idle.pop()
            if time.perf_counter() - since < IDLE_SECONDS and not reader.at_eof():
                return reader, writer
            writer.close()
        return await asyncio.open_connection(host, port)

    async def send(raw: bytes, due: float) -> None:
        try:
            reader, writer = await connection()
            writer.write(raw)
            status, reusable = await read_response(reader)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            errors[type(exc).__name__] += 1
            return
        latencies.append(time.perf_counter() - due)
        if status != 200:
            errors[f"HTTP {status}"] += 1
        if reusable:
            idle.append((time.perf_counter(), (reader, writer)))
        else:
            writer.close()

    total = int(rate * duration)
    start = time.perf_counter() + 0.05
    tasks = []
    for index in range(total):
        due = start + index / rate
        if (delay := due - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(requests[index % len(requests)], due)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for _, (_, writer) in idle:
        writer.close()
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return math.nan
        return latencies[min(len(latencies) - 1, math.ceil(p / 100 * len(latencies)) - 1)] * 1000

    return {
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "seconds": elapsed,
        "rate": rate,
        "p50_ms": percentile(50),
        "p99_ms": percentile(99),
        "max_ms": latencies[-1] * 1000 if latencies else math.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("requests", type=Path)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds")
    args = parser.parse_args()
    print_outcome(run(args.url, raw_requests(args.url, args.requests), args.rate, args.duration))


if __name__ == "__main__":
    main()
