"""An authorised HTTP session with Help Scout's Mailbox API (:class:`Session`), which
:class:`~.client.HelpScoutAPI` builds on. OAuth 2.0 through Authlib's ``AsyncOAuth2Client``;
the token lives only in the store, Fernet-encrypted (``[insights] encryption_key``), in the
``connections`` row of provider ``helpscout``.

Every API call goes through :meth:`Session._send`, which

- renews the token before it expires (Authlib's ``leeway``), and once more when Help Scout
  answers 401 anyway, storing each new token encrypted; a refresh Help Scout refuses
  (``invalid_grant``) raises :class:`~.connection.ConnectionLost`;
- keeps to the rate limit: when ``X-RateLimit-Remaining-Minute`` reaches 0 it waits as long
  as Help Scout says (else until the minute is over), and a 429 is retried after as long as
  Help Scout says (else an exponential backoff). How long Help Scout says is the longer of
  ``X-RateLimit-Retry-After`` (seconds) and the standard ``Retry-After`` (seconds or an HTTP
  date), never more than five minutes;
- retries 5xx answers (after their ``Retry-After``, if any) and transport errors with an
  exponential backoff (a POST only when it cannot have arrived), a bounded number of times.

Each wait is announced to ``on_wait`` (an import's progress bar shows it).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Self, cast
from urllib.parse import urlsplit

import httpx

from deskside import __version__
from deskside.errors import ConfigError
from deskside.insights import audit
from deskside.insights.crypto import Cipher
from deskside.insights.helpscout.connection import (
    CONNECT_HINT,
    NO_APP,
    PROVIDER,
    RECONNECT_HINT,
    ConnectionLost,
    HelpScoutAPIError,
    HelpScoutError,
    Mode,
    NotConnected,
)
from deskside.insights.models import Connection, utcnow
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store

with warnings.catch_warnings():
    # Authlib 1.9 prefers the `httpx2` package and warns on import when it falls back to
    # httpx, which it fully supports; that note is for library authors, not for our users.
    import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401  (its filter goes too)

    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import (  # type: ignore[import-untyped]
        AsyncOAuth2Client,
        OAuthError,
    )

# Authlib runs on the `httpx2` package when it is installed, else on httpx (the same API):
# its requests raise the errors of whichever it uses.
HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError,)
_NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
_STATUS_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPStatusError,)
try:
    import httpx2  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    HTTP_ERRORS += (httpx2.HTTPError,)
    _NOT_SENT_ERRORS += (httpx2.ConnectError, httpx2.ConnectTimeout)
    _STATUS_ERRORS += (httpx2.HTTPStatusError,)

_MAX_MINUTE_WAIT = 61.0
_MAX_ASKED_WAIT = 300.0
"""The longest Help Scout's ``Retry-After`` is obeyed for: a longer one is cut to this."""
_RATE_LIMIT = "rate limit"
Sleep = Callable[[float], Awaitable[None]]
"""How the client waits (``asyncio.sleep``); tests pass one that records and returns."""
OnWait = Callable[[float, str], None]
"""Told ``(seconds, why)`` when the client starts waiting (``why``: ``"rate limit"``, ``"Help
Scout unreachable"``, ``"Help Scout answered 503"``) and ``(0, why)`` when it goes on."""


__all__ = [
    "HTTP_ERRORS",
    "OAuthError",
    "OnWait",
    "Session",
    "Sleep",
    "unreachable",
]


class Session:
    """A Help Scout session backed by ``store``; ``async with`` it, or ``await aclose()``.

    ``sleep`` waits out rate limits and backoffs, announced to ``on_wait``; ``clock`` (Unix
    seconds) tells when the rate-limit minute ends and how far off a ``Retry-After`` date is.
    Building one needs ``[insights] encryption_key`` (:class:`ConfigError` otherwise): a token
    is never handled unencrypted at rest.
    """

    def __init__(
        self,
        settings: InsightsSettings,
        store: Store,
        *,
        sleep: Sleep = asyncio.sleep,
        on_wait: OnWait | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
        attempts: int = 5,
        leeway: int = 300,
    ) -> None:
        self._settings = settings.helpscout
        self._store = store
        self._cipher = Cipher.from_settings(settings)
        self._sleep = sleep
        self._on_wait = on_wait
        self._clock = clock
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._leeway = leeway
        self._api = self._settings.api_url.rstrip("/")
        self._origin = _origin(self._api)
        self._client: Any = None  # AsyncOAuth2Client, untyped
        self._mode: Mode = self._settings.mode

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- requests -----------------------------------------------------------------------------

    async def _get_json(self, url: str) -> dict[str, Any]:
        response = await self._send("GET", url)
        try:
            document = response.json()
        except ValueError:
            raise HelpScoutAPIError(
                f"Help Scout answered GET {_path(url)} with something that is not JSON",
                status=response.status_code,
            ) from None
        if not isinstance(document, dict):
            raise HelpScoutAPIError(f"Help Scout answered GET {_path(url)} with no JSON object")
        return document

    async def _pages(self, url: str) -> AsyncIterator[dict[str, Any]]:
        next_url: str | None = url
        while next_url is not None:
            document = await self._get_json(next_url)
            yield document
            next_url = self._next_url(document)

    def _next_url(self, document: Mapping[str, Any]) -> str | None:
        links = document.get("_links")
        following = links.get("next") if isinstance(links, dict) else None
        href = following.get("href") if isinstance(following, dict) else None
        if not isinstance(href, str) or not href:
            return None
        if _origin(href) != self._origin:  # the bearer token goes only to the API's origin
            raise HelpScoutAPIError(f"Help Scout's next page is on another host: {_origin(href)}")
        return href

    async def _send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        allow: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """One API request with the token, renewals, rate limits and retries (see the module
        docstring); an error status other than ``allow`` raises :class:`HelpScoutAPIError`."""
        client = await self._connected_client()
        idempotent = method in ("GET", "HEAD", "PUT", "DELETE")
        renewed = reloaded = False
        failures = throttled = 0
        while True:
            try:
                response: httpx.Response = await client.request(method, url, json=json)
            except OAuthError as exc:  # Authlib's renewal before expiry was refused
                if reloaded:
                    raise self._lost(exc) from None
                reloaded = True
                client = await self._adopt_stored_token(client, exc)
                continue
            except HTTP_ERRORS as exc:
                arrived = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                failures += 1
                if failures >= self._attempts or (arrived and not idempotent):
                    raise HelpScoutAPIError(unreachable(f"{method} {_path(url)}", exc)) from None
                await self._wait(_backoff(failures), "Help Scout unreachable")
                continue
            status = response.status_code
            if status == 401:
                if renewed:
                    raise ConnectionLost(
                        f"Help Scout refused deskside's renewed token: {RECONNECT_HINT}"
                    )
                renewed = True
                client = await self._renew(client)
                continue
            if status == 429:
                throttled += 1
                if throttled > self._attempts:
                    raise HelpScoutAPIError(
                        f"Help Scout is still rate limiting after {throttled - 1} waits",
                        status=429,
                    )
                wait = self._asked_wait(response)
                await self._wait(wait if wait is not None else _backoff(throttled), _RATE_LIMIT)
                continue
            if status >= 500 and idempotent:
                failures += 1
                if failures < self._attempts:
                    wait = self._asked_wait(response)
                    why = f"Help Scout answered {status}"
                    await self._wait(wait if wait is not None else _backoff(failures), why)
                    continue
            if status >= 400 and status not in allow:
                raise HelpScoutAPIError(
                    f"Help Scout answered {method} {_path(url)} with {status}"
                    f"{_error_message(response)}",
                    status=status,
                )
            await self._keep_to_rate_limit(response)
            return response

    async def _keep_to_rate_limit(self, response: httpx.Response) -> None:
        remaining = _seconds(response.headers.get("x-ratelimit-remaining-minute"))
        if remaining is None or remaining > 0:
            return
        wait = self._asked_wait(response)
        if wait is None:
            wait = 60.0 - self._clock() % 60.0
        await self._wait(min(wait, _MAX_MINUTE_WAIT), _RATE_LIMIT)

    def _asked_wait(self, response: httpx.Response) -> float | None:
        """How long Help Scout asks to wait: the longer of ``X-RateLimit-Retry-After`` and
        ``Retry-After`` (seconds, or an HTTP date), at most :data:`_MAX_ASKED_WAIT`; None when
        neither says (or says nonsense)."""
        asked = [
            _seconds(response.headers.get("x-ratelimit-retry-after")),
            _retry_after(response.headers.get("retry-after"), self._clock()),
        ]
        waits = [max(wait, 0.0) for wait in asked if wait is not None]
        return min(max(waits), _MAX_ASKED_WAIT) if waits else None

    async def _wait(self, seconds: float, why: str) -> None:
        if self._on_wait is not None:
            self._on_wait(seconds, why)
        try:
            await self._sleep(seconds)
        finally:
            if self._on_wait is not None:
                self._on_wait(0.0, why)

    # -- tokens -------------------------------------------------------------------------------

    def _credentials(self) -> tuple[str, str]:
        if self._settings.client_id is None or self._settings.client_secret is None:
            raise ConfigError([NO_APP])
        return (
            self._settings.client_id.get_secret_value(),
            self._settings.client_secret.get_secret_value(),
        )

    def _new_client(self, token: dict[str, Any] | None, mode: Mode) -> Any:
        client_id, client_secret = self._credentials()
        metadata: dict[str, str] = {"token_endpoint": self._settings.token_url}
        if mode == "client_credentials":
            metadata["grant_type"] = "client_credentials"
        return AsyncOAuth2Client(
            client_id=client_id,
            client_secret=client_secret,
            token_endpoint_auth_method="client_secret_post",  # noqa: S106 (Help Scout's way)
            token=token,
            update_token=self._token_renewed,
            leeway=self._leeway,
            timeout=self._timeout,
            headers={"user-agent": f"deskside/{__version__}", "accept": "application/json"},
            **metadata,
        )

    async def _connected_client(self) -> Any:
        if self._client is None:
            mode, token = await self._stored_token()
            self._mode = mode
            self._client = self._new_client(token, mode)
        return self._client

    async def _stored_token(self) -> tuple[Mode, dict[str, Any]]:
        async with self._store.read() as session:
            connection = await session.get(Connection, PROVIDER)
        if connection is None or connection.token is None:
            raise NotConnected(f"Help Scout is not connected: {CONNECT_HINT}")
        mode: Mode = "client_credentials" if connection.mode == "client_credentials" else "oauth"
        return mode, cast(dict[str, Any], json.loads(self._cipher.decrypt(connection.token)))

    async def _store_new_connection(self, mode: Mode, token: dict[str, Any], *, by: str) -> None:
        """Store a new connection's token (a webhook registered before stays registered),
        audited as ``by``."""
        sealed = self._cipher.encrypt(json.dumps(token))
        async with self._store.session() as session:
            connection = await session.get(Connection, PROVIDER)
            if connection is None:
                session.add(Connection(provider=PROVIDER, mode=mode, token=sealed))
            else:
                connection.mode, connection.token = mode, sealed
                connection.connected_at = utcnow()
            audit.record(session, by, "helpscout_connect", f"connected ({mode})")
        await self.aclose()
        self._mode = mode

    async def _token_renewed(self, token: Mapping[str, Any], **_: Any) -> None:
        """Authlib's ``update_token``: persist a refreshed or re-fetched token, encrypted."""
        sealed = self._cipher.encrypt(json.dumps(dict(token)))
        async with self._store.session() as session:
            connection = await session.get(Connection, PROVIDER)
            if connection is None:  # disconnected meanwhile: do not bring it back
                raise NotConnected("Help Scout was disconnected")
            connection.token = sealed

    async def _renew(self, client: Any) -> Any:
        """After a 401: a new token (refreshed, or fetched again with client credentials)."""
        try:
            if self._mode == "client_credentials":
                token = await client.fetch_token(
                    self._settings.token_url, grant_type="client_credentials"
                )
                await self._token_renewed(token)
            else:
                refresh_token = (client.token or {}).get("refresh_token")
                if not refresh_token:
                    raise ConnectionLost(
                        f"the Help Scout token cannot be renewed: {RECONNECT_HINT}"
                    )
                await client.refresh_token(self._settings.token_url, refresh_token=refresh_token)
        except OAuthError as exc:
            return await self._adopt_stored_token(client, exc)
        except HTTP_ERRORS as exc:
            raise HelpScoutAPIError(unreachable("the token endpoint", exc)) from None
        return client

    async def _adopt_stored_token(self, client: Any, refused: OAuthError) -> Any:
        """A renewal was refused. Another process may have renewed first (a refresh token
        works once): use the stored token if it is a different one; else the connection is
        gone."""
        _, stored = await self._stored_token()
        current = (client.token or {}).get("access_token")
        if stored.get("access_token") in (None, current):
            raise self._lost(refused)
        client.token = stored
        return client

    def _lost(self, refused: OAuthError) -> HelpScoutError:
        error = getattr(refused, "error", None) or "refused"
        if self._mode == "client_credentials":
            return ConnectionLost(
                f"Help Scout refused a new token for the app's credentials ({error}): check "
                f"insights.helpscout.client_id and client_secret, then {RECONNECT_HINT}"
            )
        return ConnectionLost(
            f"Help Scout no longer accepts deskside's authorisation ({error}); it was revoked "
            f"or has expired: {RECONNECT_HINT}"
        )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


def _seconds(value: str | None) -> float | None:
    """A header's number, if it is a finite one."""
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def _retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds from ``now``: it gives seconds or an HTTP date."""
    seconds = _seconds(value)
    if seconds is not None or value is None:
        return seconds
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC, says RFC 5322
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() - now


def _backoff(attempt: int) -> float:
    """1, 2, 4, 8 … seconds, at most a minute."""
    return float(min(2 ** (attempt - 1), 60))


def _error_message(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return ""
    message = document.get("message") if isinstance(document, dict) else None
    return f": {message[:200]}" if isinstance(message, str) and message else ""


def unreachable(what: str, exc: Exception) -> str:
    if isinstance(exc, _STATUS_ERRORS):  # the token endpoint failing (Authlib raises it)
        return f"Help Scout answered {cast(Any, exc).response.status_code} at {what}"
    return f"Help Scout could not be reached for {what} ({type(exc).__name__})"
