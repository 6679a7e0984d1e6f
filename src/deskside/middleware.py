"""The server's pure ASGI middleware: what every request goes through before (and instead of)
FastAPI's own request handling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from deskside import logs, metrics
from deskside.errors import HTTPError

__all__ = ["ARRIVED", "Endpoint", "HelpdeskRoutes", "Observe", "arrived", "route_path"]

ARRIVED = "deskside_arrived"
"""Key in the ASGI scope's state: the event loop's time a request arrived."""

Endpoint = Callable[[Request], Awaitable[Response]]
"""A helpdesk route's endpoint: the bare request in, the answer out."""


def arrived(request: Request) -> float | None:
    """The event loop's time ``request`` arrived (stamped by :class:`Observe`), if known: the
    moment a lookup's deadline counts from."""
    when: float | None = request.scope.get("state", {}).get(ARRIVED)
    return when


def route_path(scope: Scope) -> str:
    """The path routes match against: without the ``root_path`` a proxy mounts deskside at."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root + "/") else path


class HelpdeskRoutes:
    """Pure ASGI middleware: answers the helpdesk routes (``(path, method)`` → endpoint) itself,
    and passes every other request on.

    A helpdesk endpoint takes the bare request and reads it itself, so FastAPI's routing,
    dependency solving and exception middleware are work it does not need on every request.
    An :class:`HTTPError` becomes ``refused``'s answer, as the app's handler makes it.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[tuple[str, str], Endpoint],
        refused: Callable[[Request, HTTPError], Response],
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.refused = refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = (
            self.routes.get((route_path(scope), scope["method"]))
            if scope["type"] == "http"
            else None
        )
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except HTTPError as exc:
            response = self.refused(request, exc)
        await response(scope, receive, send)


class Observe:
    """Pure ASGI middleware: a request id (``X-Request-ID``) in the context of every log line
    and on the response, one access line, and the request metrics of helpdesk routes. It is the
    outermost: the time it first sees a request is when the request arrived (see ARRIVED)."""

    def __init__(self, app: ASGIApp, labels: Mapping[str, str]) -> None:
        self.app = app
        self.labels = labels
        self._counted: dict[tuple[str, int], Any] = {}  # metrics' children, bound once
        self._timed: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # The deadline counts from here: time spent queued behind other requests is the
        # helpdesk's time too.
        scope.setdefault("state", {})[ARRIVED] = asyncio.get_running_loop().time()
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = (incoming and logs.sane_request_id(incoming)) or logs.new_request_id()
        header = (b"x-request-id", request_id.encode("ascii"))
        token = logs.request_id.set(request_id)
        status = 500  # unless a response starts: an exception the app did not handle

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            helpdesk = self.labels.get(route_path(scope))
            if helpdesk is not None:
                self._count(helpdesk, status, seconds)
            client = scope.get("client")
            logs.log_request(
                scope["method"],
                scope["path"],
                status,
                seconds,
                helpdesk=helpdesk,
                client=client[0] if client else None,
            )
            logs.request_id.reset(token)

    def _count(self, helpdesk: str, status: int, seconds: float) -> None:
        counted = self._counted.get((helpdesk, status))
        if counted is None:
            counted = self._counted[helpdesk, status] = metrics.REQUESTS.labels(
                helpdesk, str(status)
            )
        counted.inc()
        timed = self._timed.get(helpdesk)
        if timed is None:
            timed = self._timed[helpdesk] = metrics.REQUEST_SECONDS.labels(helpdesk)
        timed.observe(seconds)
