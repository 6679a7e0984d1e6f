"""Behind a reverse proxy: which forwarded headers to believe, and the address shown to people.

A proxy in ``[server] trusted_proxies`` tells in ``X-Forwarded-Proto``, ``X-Forwarded-Host``
and ``X-Forwarded-For`` how a request reached it; the same headers from any other peer are
ignored, since anyone can write them. ``[server] public_url``, when set, is the address shown
to people (Setup page, demo) whatever a request's headers say.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

__all__ = ["ForwardedHeaders", "normalise_public_url", "public_base_url"]

_LABEL = rb"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rb"(?:%s(?:\.%s)*\.?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?" % (_LABEL, _LABEL))
"""A ``Host`` header value: a DNS name or an address, and maybe a port; nothing else."""


_PEERS_REMEMBERED = 1024
"""How many peers' trust :class:`ForwardedHeaders` remembers (then it starts afresh)."""


class ForwardedHeaders:
    """Pure ASGI middleware: a request from a ``trusted`` peer takes the scheme and client
    address its proxy saw (uvicorn's :class:`ProxyHeadersMiddleware`) and the host the client
    asked for (the nearest proxy's ``X-Forwarded-Host``); any other request passes untouched."""

    def __init__(self, app: ASGIApp, trusted: Sequence[IPv4Network | IPv6Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)
        self._peers: dict[str, bool] = {}
        """Peer address → whether it is trusted: the answer for the few peers (the proxies
        themselves) that send nearly every request is worked out once."""
        self._forwarded: Any = ProxyHeadersMiddleware(
            cast(Any, app), trusted_hosts=[str(network) for network in self.trusted]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrites ``scope`` in place, so that middleware around this one (the access line)
        sees the client address the proxy forwarded."""
        if scope["type"] not in ("http", "websocket") or not self._from_trusted(scope):
            await self.app(scope, receive, send)
            return
        host = _forwarded_host(scope["headers"])
        if host is not None:
            headers = [(name, value) for name, value in scope["headers"] if name != b"host"]
            scope["headers"] = [(b"host", host), *headers]
        await self._forwarded(scope, receive, send)

    def _from_trusted(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client:
            return False
        trusted = self._peers.get(client[0])
        if trusted is None:
            if len(self._peers) >= _PEERS_REMEMBERED:
                self._peers.clear()
            trusted = self._peers[client[0]] = self._is_trusted(client[0])
        return trusted

    def _is_trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:  # not an IP address (a Unix socket's peer, say)
            return False
        return any(address in network for network in self.trusted)


def _forwarded_host(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The last ``X-Forwarded-Host`` value (the one the nearest proxy wrote), if it is a host."""
    values = [value for name, value in headers if name == b"x-forwarded-host"]
    if not values:
        return None
    host = b",".join(values).rsplit(b",", 1)[-1].strip()
    return host if _HOST.fullmatch(host) else None


def normalise_public_url(value: str) -> str:
    """``value`` as a base URL: http(s), a host, maybe a port and a path, no trailing slash;
    ValueError saying what is wrong otherwise."""
    if any(character.isspace() or not character.isprintable() for character in value):
        raise ValueError("a URL has no spaces or control characters")
    if "?" in value or "#" in value:
        raise ValueError("give the server's base URL, without a query (?…) or fragment (#…)")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("use an http(s) URL such as https://deskside.example.com")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a public URL holds no user name or password")
    parts.port  # noqa: B018 - raises ValueError for a port that is not a number 0-65535
    return urlunsplit((parts.scheme.lower(), parts.netloc, parts.path.rstrip("/"), "", ""))


def public_base_url(request: Request, public_url: str | None) -> str:
    """The server's address as people reach it, without a trailing slash: ``public_url``
    when configured, else the one ``request`` came to (as a trusted proxy forwarded it)."""
    return public_url or str(request.base_url).rstrip("/")
