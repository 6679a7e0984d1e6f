"""The network of the realistic scenario, run by ``run.py`` as separate processes.

``proxy``: a TCP proxy to the database that holds every chunk it reads for ``--delay-ms``
before passing it on, in each direction and in order, so that each round trip through it
takes twice the delay longer (a database in another zone of the same region).

``billing``: a fake billing API with a payment provider's latency: ``GET /v1/customers?email=``
answers a small JSON customer after ``--delay-ms`` (keep-alive, any number of requests at once).

    python network.py proxy --port 6543 --upstream 127.0.0.1:5432 --delay-ms 1
    python network.py billing --port 8150 --delay-ms 150
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
from collections import deque
from typing import cast
from urllib.parse import parse_qs, urlsplit


class Delayed(asyncio.Protocol):
    """One side of a proxied connection: what it receives is written to the other side
    ``delay`` seconds later, chunk by chunk, in the order received."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.peer: Delayed | None = None
        self.transport: asyncio.Transport | None = None
        self.pending: deque[tuple[float, bytes]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        self.pending.append((loop.time() + self.delay, data))
        if self.timer is None:
            self.timer = loop.call_at(self.pending[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self.pending and self.pending[0][0] <= now:
            data = self.pending.popleft()[1]
            if self.peer is not None and self.peer.transport is not None:
                self.peer.transport.write(data)
        if self.pending:
            self.timer = loop.call_at(self.pending[0][0], self._flush)
        elif self.eof:
            self._close_peer()

    def eof_received(self) -> bool:
        self.eof = True
        if not self.pending:
            self._close_peer()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.eof = True
        if not self.pending:
            self._close_peer()

    def _close_peer(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()


async def proxy(port: int, upstream: str, delay: float) -> None:
    host, _, upstream_port = upstream.rpartition(":")
    loop = asyncio.get_running_loop()

    class Client(Delayed):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self.transport.pause_reading()  # type: ignore[union-attr]
            self.opening = loop.create_task(self._open())

        async def _open(self) -> None:
            try:
                _, server = await loop.create_connection(
                    lambda: Delayed(delay), host, int(upstream_port)
                )
            except OSError:
                if self.transport is not None:
                    self.transport.close()
                return
            server.peer, self.peer = self, server
            if self.transport is None:  # the client left meanwhile
                server.transport.close()  # type: ignore[union-attr]
                return
            self.transport.resume_reading()

    server = await loop.create_server(lambda: Client(delay), "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


class Billing(asyncio.Protocol):
    """Answers each GET request after the delay, in order, on a kept-alive connection."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:  # GET requests: no body
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            target = head.split(b"\r\n", 1)[0].split(b" ")[1].decode("latin-1")
            answer = customer(target)
            asyncio.get_running_loop().call_later(self.delay, self._answer, answer)

    def _answer(self, body: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            self.transport.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


def customer(target: str) -> bytes:
    """The fake customer of the address in ``target``'s query: stable fields from its hash."""
    email = parse_qs(urlsplit(target).query).get("email", [""])[0]
    digest = hashlib.sha256(email.encode()).hexdigest()
    plans = ["Starter", "Growth", "Scale"]
    document = {
        "customer_id": f"cus_{digest[:14]}",
        "subscription_id": f"sub_{digest[14:28]}",
        "plan": plans[int(digest[28], 16) % 3],
        "status": "active",
        "customer_mrr_cents": 1900 + 100 * int(digest[29:31], 16),
        "current_period_end": "2027-01-15",
        "customer_url": f"https://dashboard.stripe.com/customers/cus_{digest[:14]}",
    }
    return json.dumps(document).encode()


async def billing(port: int, delay: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Billing(delay), "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("role", choices=["proxy", "billing"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="127.0.0.1:5432", help="proxy: host:port")
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    if args.role == "proxy":
        asyncio.run(proxy(args.port, args.upstream, delay))
    else:
        asyncio.run(billing(args.port, delay))


if __name__ == "__main__":
    main()
