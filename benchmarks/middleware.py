"""CPU per request of each layer in front of a helpdesk route, measured in-process.

Each middleware wraps a constant ASGI app, and its cost is the CPU time per request above the
bare app's; the whole stack is measured on a cached Help Scout answer (the demo config on a
SQLite copy of the demo database). The ASGI app is called directly, without a server or a
socket, so only deskside's own work is counted. Runs interleave and the fastest of several
rounds is kept, which is what a busy machine still lets through.

    .venv/bin/python benchmarks/middleware.py [--requests 20000] [--rounds 7]

``PYTHONPATH=<another checkout>/src`` measures another version in the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import logging.config
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from ipaddress import ip_network
from pathlib import Path
from typing import Any

from sidebar.common import asgi_call

SECRET = "bench-secret"  # noqa: S105 - signs the benchmark's own requests
Call = Callable[[], Awaitable[None]]


async def _constant(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _cpu_us(call: Call, requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        await call()
    return (time.process_time() - started) / requests * 1e6


def _config(directory: Path) -> Path:
    from deskside.demo import demo_config_path

    demo, found, _ = demo_config_path().read_text().partition("\n[helpdesks.")
    assert found, "the demo config has no [helpdesks.*] table"
    path = directory / "deskside.toml"
    path.write_text(demo + '\n[helpdesks.helpscout]\nsecret = "env:HELPSCOUT_SECRET"\n')
    return path


def _helpscout(email: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    body = json.dumps({"customer": {"id": 1, "email": email, "emails": [email]}}).encode()
    digest = hmac.new(SECRET.encode(), body, hashlib.sha1).digest()
    return body, [
        (b"host", b"127.0.0.1:8000"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-helpscout-signature", base64.b64encode(digest)),
        (b"x-forwarded-for", b"203.0.113.7"),
        (b"x-forwarded-proto", b"https"),
    ]


async def main(requests: int, rounds: int) -> None:
    from deskside import logs
    from deskside.config import load_settings
    from deskside.demo import DEMO_DATABASE_ENV, create_demo_database
    from deskside.proxy import ForwardedHeaders
    from deskside.server import create_app

    try:
        from deskside.middleware import Observe
    except ImportError:  # an older version, to compare with
        from deskside.server import _Observe as Observe  # type: ignore[attr-defined,no-redef]

    # Access lines as in production (JSON, info), written where they cost nothing more.
    null = open(os.devnull, "w")  # noqa: ASYNC230, SIM115 - the process's lifetime
    logging.config.dictConfig(logs.logging_config("json", "info", stream=null))
    work = Path(tempfile.mkdtemp(prefix="deskside-bench-"))
    database = f"sqlite:///{work / 'demo.sqlite3'}"
    await create_demo_database(database)
    os.environ[DEMO_DATABASE_ENV] = database
    os.environ["HELPSCOUT_SECRET"] = SECRET
    settings = load_settings(_config(work))
    trusted = settings.model_copy(
        update={
            "server": settings.server.model_copy(
                update={"trusted_proxies": [ip_network("127.0.0.0/8")]}
            )
        }
    )
    body, headers = _helpscout("owner@acme.example")
    labels = {"/helpscout": "helpscout"}
    layers: dict[str, Any] = {
        "constant ASGI app (no middleware)": _constant,
        "request id, metrics, access line (`Observe`)": Observe(_constant, labels=labels),
        "forwarded headers, trusted peer (`ForwardedHeaders`)": ForwardedHeaders(
            _constant, trusted=trusted.server.trusted_proxies
        ),
    }
    stacks = {
        "whole app, cached Help Scout answer": create_app(settings),
        "whole app, cached, behind a trusted proxy": create_app(trusted),
    }
    calls = {name: asgi_call(app, "/helpscout", body, headers) for name, app in layers.items()}
    calls |= {name: asgi_call(app, "/helpscout", body, headers) for name, app in stacks.items()}
    for call in calls.values():  # warm: connect, cache the customer, lay out the card once
        for _ in range(50):
            await call()
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, call in calls.items():
            best[name] = min(best[name], await _cpu_us(call, requests))
    base = best["constant ASGI app (no middleware)"]
    load = os.getloadavg()[0]
    print(f"CPU µs per request, fastest of {rounds} rounds of {requests:,}; load {load:.1f}")
    print(f"deskside from {Path(create_app.__code__.co_filename).parents[1]}")
    print("| layer | µs/request | of which the layer |")
    print("| --- | ---: | ---: |")
    for name, micros in best.items():
        own = f"{micros - base:.1f}" if name in layers and micros is not best else ""
        print(f"| {name} | {micros:.1f} | {own} |")
    for app in stacks.values():
        await app.state.service.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.requests, arguments.rounds))
