"""A real HTTP server for tests: 127.0.0.1, an ephemeral port, a background thread.

Tests point real clients (httpx in the HTTP source) at it and then look at what arrived::

    with FakeHTTPServer() as server:
        server.route("/users/*", lambda request: Reply.json({"email": request.path[7:]}))
        server.route("/flaky", [Reply.status(500), Reply.json([])])  # 500 once, then []
        server.route("/slow", Reply.json({}, delay=5))                # answers after 5 s
        server.route("/drip", Reply(body=b"[]", trickle=1))           # one byte a second
        url = server.url("/users/{email}")
        ...
        assert server.received("/flaky")[0].method == "GET"

A route is an exact path, or a prefix ending in ``*``; the longest match wins and anything
unrouted answers 404. Its handler is a :class:`Reply` (every time), a list of replies (one
per request, the last one repeated) or a callable taking the :class:`Received` request.
Delays end early when the server closes, so a slow route never holds a test up.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeHTTPServer", "Handler", "Received", "Reply", "unused_port"]


@dataclass(frozen=True)
class Reply:
    """What the server answers: status, body and headers, after ``delay`` seconds."""

    status_code: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    trickle: float = 0.0
    """Seconds between the body's bytes: slow overall, yet never silent for long."""

    @classmethod
    def json(cls, document: Any, *, status: int = 200, delay: float = 0.0) -> Reply:
        """``document`` as a JSON body."""
        return cls(status, json.dumps(document).encode(), delay=delay)

    @classmethod
    def text(
        cls, text: str, *, status: int = 200, content_type: str = "text/plain", delay: float = 0.0
    ) -> Reply:
        """A non-JSON body, e.g. an HTML error page."""
        return cls(status, text.encode(), content_type=content_type, delay=delay)

    @classmethod
    def status(cls, status: int, **headers: str) -> Reply:
        """An empty answer with ``status``; ``headers`` e.g. ``Location="/elsewhere"``."""
        return cls(status, b"", headers=headers)


@dataclass(frozen=True)
class Received:
    """One request as it arrived."""

    method: str
    target: str
    """The request target exactly as sent, still percent-encoded: ``/users/a%40x.example?x=1``."""
    headers: Mapping[str, str]
    """Header names lower-cased."""
    body: bytes

    @property
    def path(self) -> str:
        """The decoded path, without the query."""
        return unquote(urlsplit(self.target).path)

    @property
    def query(self) -> dict[str, list[str]]:
        """The decoded query parameters."""
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


Handler = Reply | Sequence[Reply] | Callable[[Received], Reply]


class FakeHTTPServer:
    """A threaded HTTP/1.0 server that records every request; use it as a context manager."""

    def __init__(self) -> None:
        self._routes: dict[str, Handler] = {}
        self._served: dict[str, int] = {}
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _make_request_handler(self))
        self.port: int = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def url(self, target: str) -> str:
        """The absolute URL of ``target`` (a path with an optional query) on this server."""
        return self.base_url + target

    def route(self, path: str, handler: Handler) -> None:
        """Answer requests for ``path`` (or every path under a prefix ending in ``*``)."""
        with self._lock:
            self._routes[path] = handler
            self._served[path] = 0

    def received(self, path: str | None = None) -> list[Received]:
        """The requests so far, oldest first; only those whose decoded path is ``path`` if given,
        or that start with it when it ends in ``*``."""
        with self._lock:
            requests = list(self._received)
        if path is None:
            return requests
        return [r for r in requests if _matches(path, r.path)]

    def close(self) -> None:
        """Stop serving; requests still waiting out a delay are answered at once."""
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeHTTPServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _reply(self, request: Received) -> Reply:
        with self._lock:
            self._received.append(request)
            matching = [p for p in self._routes if _matches(p, request.path)]
            if not matching:
                return Reply.json({"error": "no route"}, status=404)
            key = max(matching, key=len)
            handler, count = self._routes[key], self._served[key]
            self._served[key] = count + 1
        if isinstance(handler, Reply):
            return handler
        if callable(handler):
            return handler(request)
        return handler[min(count, len(handler) - 1)]


def _matches(route: str, path: str) -> bool:
    return path.startswith(route[:-1]) if route.endswith("*") else path == route


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a timeout test) is expected; stay quiet about it."""


def _make_request_handler(server: FakeHTTPServer) -> type[BaseHTTPRequestHandler]:
    class RequestHandler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Received(
                method=self.command,
                target=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length) if length else b"",
            )
            reply = server._reply(request)
            if reply.delay:
                server._closing.wait(reply.delay)
            self.send_response(reply.status_code)
            self.send_header("Content-Type", reply.content_type)
            self.send_header("Content-Length", str(len(reply.body)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if not reply.trickle:
                self.wfile.write(reply.body)
            for index in range(len(reply.body) if reply.trickle else 0):
                self.wfile.write(reply.body[index : index + 1])
                self.wfile.flush()
                if server._closing.wait(reply.trickle):
                    break

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format: str, *args: Any) -> None:
            """Silence the per-request log lines on stderr."""

    return RequestHandler


def unused_port() -> int:
    """A local TCP port nothing listens on (for "connection refused")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
