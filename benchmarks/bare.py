"""The ceiling: a bare ASGI app that answers every request with one constant JSON body.

``run.py`` serves it with uvicorn exactly as ``deskside serve`` serves deskside: the same number
of worker processes and uvicorn's default event loop and HTTP parser (uvloop and httptools).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]

BODY = b'{"html": "<h4>Acme HR</h4>"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more_body = True
    while more_body:  # read the request body, as any real endpoint must
        more_body = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
