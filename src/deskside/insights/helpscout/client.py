"""Help Scout's Mailbox API 2.0 as deskside uses it: connecting, and reading what it imports.

Connecting is OAuth 2.0 through Authlib's ``AsyncOAuth2Client``: the authorization-code flow
(an agent approves deskside in the browser) or, with your own account's app, the
client-credentials grant. The token lives only in the store, Fernet-encrypted
(``[insights] encryption_key``), in the ``connections`` row of provider ``helpscout``.

Every API call goes through :meth:`HelpScoutAPI._send`, which

- renews the token before it expires (Authlib's ``leeway``), and once more when Help Scout
  answers 401 anyway, storing each new token encrypted; a refresh Help Scout refuses
  (``invalid_grant``) raises :class:`ConnectionLost`;
- keeps to the rate limit: when ``X-RateLimit-Remaining-Minute`` reaches 0 it waits as long
  as Help Scout says (else until the minute is over), and a 429 is retried after as long as
  Help Scout says (else an exponential backoff). How long Help Scout says is the longer of
  ``X-RateLimit-Retry-After`` (seconds) and the standard ``Retry-After`` (seconds or an HTTP
  date), never more than five minutes;
- retries 5xx answers (after their ``Retry-After``, if any) and transport errors with an
  exponential backoff (a POST only when it cannot have arrived), a bounded number of times.

Each wait is announced to ``on_wait`` (an import's progress bar shows it).

Messages of the errors raised here never hold a token, a code or a secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import secrets
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from deskside import __version__
from deskside.errors import ConfigError
from deskside.insights import DEFAULT_WORKSPACE, audit
from deskside.insights.crypto import Cipher
from deskside.insights.models import Connection, ErasureAudit, OAuthState, utcnow
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
_HTTP_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError,)
_NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout)
_STATUS_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPStatusError,)
try:
    import httpx2  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    _HTTP_ERRORS += (httpx2.HTTPError,)
    _NOT_SENT_ERRORS += (httpx2.ConnectError, httpx2.ConnectTimeout)
    _STATUS_ERRORS += (httpx2.HTTPStatusError,)

__all__ = [
    "PROVIDER",
    "STATE_LIFETIME",
    "STATE_WORKSPACE_MARK",
    "WEBHOOK_EVENTS",
    "AuthorizationRefused",
    "ConnectionLost",
    "ConversationPage",
    "DisconnectReport",
    "HelpScoutAPI",
    "HelpScoutAPIError",
    "HelpScoutError",
    "Mode",
    "NotConnected",
    "OnWait",
    "Sleep",
    "config_problems",
    "iso_utc",
    "state_workspace",
    "webhook_secrets",
]

PROVIDER = "helpscout"
STATE_LIFETIME = timedelta(minutes=10)
"""An authorisation must come back within this long; its ``state`` is then used up."""
CONNECT_STARTED = "helpscout_authorise"
"""The audit's action when someone starts connecting Help Scout in a browser."""
WEBHOOK_EVENTS: tuple[str, ...] = (
    "convo.created",
    "convo.assigned",
    "convo.moved",
    "convo.status",
    "convo.tags",
    "convo.custom-fields",
    "convo.merged",
    "convo.deleted",
    "convo.customer.reply.created",
    "convo.agent.reply.created",
    "convo.note.created",
    "customer.created",
    "customer.updated",
    "customer.deleted",
)
"""The events a webhook registered by ``deskside connect --webhook-url`` subscribes to."""
_CONNECT = "run `deskside connect helpscout`"
_RECONNECT = f"{_CONNECT} again"
_MAX_MINUTE_WAIT = 61.0
_MAX_ASKED_WAIT = 300.0
"""The longest Help Scout's ``Retry-After`` is obeyed for: a longer one is cut to this."""
_RATE_LIMIT = "rate limit"

Mode = Literal["oauth", "client_credentials"]
Sleep = Callable[[float], Awaitable[None]]
"""How the client waits (``asyncio.sleep``); tests pass one that records and returns."""
OnWait = Callable[[float, str], None]
"""Told ``(seconds, why)`` when the client starts waiting (``why``: ``"rate limit"``, ``"Help
Scout unreachable"``, ``"Help Scout answered 503"``) and ``(0, why)`` when it goes on."""


class HelpScoutError(Exception):
    """Something went wrong talking to Help Scout; the message is safe to show a user."""


class NotConnected(HelpScoutError):
    """No Help Scout connection is stored (never connected, or disconnected)."""


class ConnectionLost(HelpScoutError):
    """Help Scout no longer accepts deskside's authorisation: the user must connect again."""


class AuthorizationRefused(HelpScoutError):
    """An authorisation callback that cannot be trusted: unknown, expired or reused ``state``,
    or denied in Help Scout."""


class HelpScoutAPIError(HelpScoutError):
    """Help Scout answered with an error, or could not be reached after the retries."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ConversationPage:
    """One page of ``GET /v2/conversations``."""

    url: str
    conversations: list[dict[str, Any]]
    number: int
    total_pages: int | None
    total_elements: int | None
    next_url: str | None
    """The absolute URL of the next page (Help Scout's ``_links.next.href``); ``None`` on the
    last page."""


@dataclass(frozen=True)
class DisconnectReport:
    """What :meth:`HelpScoutAPI.disconnect` did."""

    was_connected: bool
    webhook_deleted: bool | None
    """``None``: there was no webhook; ``False``: deleting it failed (it may still exist in
    Help Scout, pointing at deskside; remove it under Manage → Apps → Webhooks)."""


_NO_APP = (
    "insights.helpscout.client_id and client_secret are not set: they are the App ID and App "
    "Secret of your Help Scout app (Your Profile → My Apps)"
)


def config_problems(settings: InsightsSettings) -> list[str]:
    """Why :class:`HelpScoutAPI` cannot connect or call Help Scout with ``settings``, as its
    :class:`ConfigError` would say ([] when it can): no (or a malformed) ``encryption_key`` for
    the tokens, no app credentials."""
    problems = []
    try:
        Cipher.from_settings(settings)
    except ConfigError as exc:
        problems += exc.problems
    if settings.helpscout.client_id is None or settings.helpscout.client_secret is None:
        problems.append(_NO_APP)
    return problems


def iso_utc(moment: datetime) -> str:
    """``moment`` as Help Scout's query parameters want it: ``2024-01-01T00:00:00Z``."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give it a time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


STATE_WORKSPACE_MARK = "~"
"""Separates the workspace from the random part of an authorisation's ``state`` (a
workspace's name never holds it, nor does ``token_urlsafe``'s alphabet)."""


def state_workspace(state: str) -> str:
    """The workspace whose authorisation ``state`` is (see :meth:`HelpScoutAPI.
    authorization_url`); whether it is one of ours, its store's :meth:`_use_state` decides."""
    workspace, mark, _ = state.partition(STATE_WORKSPACE_MARK)
    return workspace if mark else DEFAULT_WORKSPACE


def _state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


async def webhook_secrets(session: AsyncSession, settings: InsightsSettings) -> list[str]:
    """Every secret a Help Scout webhook may be signed with: the configured
    ``[insights.helpscout] webhook_secret`` values, then the one ``deskside connect
    --webhook-url`` generated (stored encrypted).

    Raises :class:`ConfigError` when a secret is stored but ``encryption_key`` is missing or
    is not the key it was stored with.
    """
    configured = [secret.get_secret_value() for secret in settings.helpscout.webhook_secret]
    connection = await session.get(Connection, PROVIDER)
    if connection is None or connection.webhook_secret is None:
        return configured
    stored = Cipher.from_settings(settings).decrypt(connection.webhook_secret)
    return [*configured, stored] if stored not in configured else configured


class HelpScoutAPI:
    """A Help Scout connection backed by ``store``; ``async with`` it, or ``await aclose()``.

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

    async def __aenter__(self) -> HelpScoutAPI:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- connecting -------------------------------------------------------------------------

    async def authorization_url(self, *, by: str = "cli") -> str:
        """Start an authorisation: a fresh random ``state`` (only its SHA-256 is stored, for
        :data:`STATE_LIFETIME`, usable once) and the Help Scout URL to send the browser to.
        Audited as ``by``, whom the connection is then audited as too."""
        state = secrets.token_urlsafe(32)
        if self._store.workspace != DEFAULT_WORKSPACE:  # for the callback to find its store
            state = f"{self._store.workspace}{STATE_WORKSPACE_MARK}{state}"
        async with self._store.session() as session:
            await session.execute(
                delete(OAuthState).where(OAuthState.created_at < utcnow() - STATE_LIFETIME)
            )
            session.add(OAuthState(state_hash=_state_hash(state), created_at=utcnow()))
            facts = {"state": _state_hash(state)}
            audit.record(session, by, CONNECT_STARTED, "authorisation started", facts)
        async with self._new_client(None, "oauth") as client:
            url, _ = client.create_authorization_url(self._settings.authorize_url, state=state)
        return cast(str, url)

    async def complete_authorization(self, code: str, state: str) -> None:
        """Finish an authorisation: use up ``state`` (:class:`AuthorizationRefused` when it is
        unknown, expired or used before), exchange ``code`` for a token and store it."""
        await self._use_state(state)
        by = await self._starter(state)
        try:
            async with self._new_client(None, "oauth") as client:
                token = await client.fetch_token(
                    self._settings.token_url, grant_type="authorization_code", code=code
                )
        except OAuthError as exc:
            raise AuthorizationRefused(
                f"Help Scout refused the authorisation code ({exc.error}); start again with "
                "`deskside connect helpscout`"
            ) from None
        except _HTTP_ERRORS as exc:
            raise HelpScoutAPIError(_unreachable("the token endpoint", exc)) from None
        await self._store_new_connection("oauth", dict(token), by=by)

    async def connect_client_credentials(self, *, by: str = "cli") -> None:
        """Connect with the app's own credentials (``mode = "client_credentials"``)."""
        try:
            async with self._new_client(None, "client_credentials") as client:
                token = await client.fetch_token(
                    self._settings.token_url, grant_type="client_credentials"
                )
        except OAuthError as exc:
            raise HelpScoutAPIError(
                f"Help Scout refused the app's credentials ({exc.error}): check "
                "insights.helpscout.client_id and client_secret"
            ) from None
        except _HTTP_ERRORS as exc:
            raise HelpScoutAPIError(_unreachable("the token endpoint", exc)) from None
        await self._store_new_connection("client_credentials", dict(token), by=by)

    async def is_connected(self) -> bool:
        """Whether a connection is stored (not whether Help Scout still accepts it)."""
        async with self._store.read() as session:
            connection = await session.get(Connection, PROVIDER)
        return connection is not None and connection.token is not None

    async def register_webhook(self, url: str, mailbox_ids: Sequence[int] = ()) -> str:
        """Register a webhook to ``url`` with a new random secret (stored encrypted with its
        id); a webhook registered earlier is deleted first (best effort). Returns its id."""
        async with self._store.read() as session:
            connection = await session.get(Connection, PROVIDER)
            previous = connection.webhook_id if connection else None
        if connection is None:
            raise NotConnected(f"Help Scout is not connected: {_CONNECT}")
        if previous:
            await self._delete_webhook_quietly(previous)
        secret = secrets.token_urlsafe(30)  # 40 characters, Help Scout's maximum
        webhook_id = await self.create_webhook(url, secret, WEBHOOK_EVENTS, mailbox_ids)
        async with self._store.session() as session:
            connection = await session.get(Connection, PROVIDER)
            if connection is None:  # disconnected meanwhile: take the webhook back out
                webhook_id_to_drop = webhook_id
            else:
                connection.webhook_id = webhook_id
                connection.webhook_secret = self._cipher.encrypt(secret)
                webhook_id_to_drop = None
        if webhook_id_to_drop:
            await self._delete_webhook_quietly(webhook_id_to_drop)
            raise NotConnected("Help Scout was disconnected while the webhook was registered")
        return webhook_id

    async def disconnect(self) -> DisconnectReport:
        """Delete the registered webhook (best effort) and the stored connection; imports and
        API calls then refuse with :class:`NotConnected`.

        Help Scout offers no token revocation endpoint: the token is forgotten here, and an
        OAuth grant can also be removed by the user in Help Scout (Your Profile → Authorized
        Apps).
        """
        async with self._store.read() as session:
            connection = await session.get(Connection, PROVIDER)
            webhook_id = connection.webhook_id if connection else None
        if connection is None:
            return DisconnectReport(was_connected=False, webhook_deleted=None)
        deleted: bool | None = None
        if webhook_id:
            deleted = await self._delete_webhook_quietly(webhook_id)
        async with self._store.session() as session:
            await session.execute(delete(Connection).where(Connection.provider == PROVIDER))
        await self.aclose()
        return DisconnectReport(was_connected=True, webhook_deleted=deleted)

    # -- the Mailbox API ----------------------------------------------------------------------

    async def mailboxes(self) -> list[dict[str, Any]]:
        """Every mailbox (``GET /v2/mailboxes``, all pages)."""
        return [
            mailbox
            async for document in self._pages(self._api + "/v2/mailboxes")
            for mailbox in _embedded(document, "mailboxes")
        ]

    def conversations_url(
        self, modified_since: datetime | None = None, mailbox_ids: Sequence[int] = ()
    ) -> str:
        """The first page's URL of every conversation (any status) modified since
        ``modified_since`` in ``mailbox_ids`` (all when empty), oldest change first, with
        their threads embedded."""
        params: dict[str, str] = {
            "status": "all",
            "embed": "threads",
            "sortField": "modifiedAt",
            "sortOrder": "asc",
        }
        if modified_since is not None:
            params["modifiedSince"] = iso_utc(modified_since)
        if mailbox_ids:
            params["mailbox"] = ",".join(str(mailbox) for mailbox in mailbox_ids)
        return str(httpx.URL(self._api + "/v2/conversations", params=params))

    async def conversation_page(self, url: str) -> ConversationPage:
        """The page of conversations at ``url`` (from :meth:`conversations_url` or a page's
        ``next_url``)."""
        document = await self._get_json(url)
        found = document.get("page")
        page: dict[str, Any] = found if isinstance(found, dict) else {}
        return ConversationPage(
            url=url,
            conversations=_embedded(document, "conversations"),
            number=_int(page.get("number")) or 1,
            total_pages=_int(page.get("totalPages")),
            total_elements=_int(page.get("totalElements")),
            next_url=self._next_url(document),
        )

    async def conversations(
        self, modified_since: datetime | None = None, mailbox_ids: Sequence[int] = ()
    ) -> AsyncIterator[ConversationPage]:
        """Every page of :meth:`conversations_url`, following ``_links.next``."""
        url: str | None = self.conversations_url(modified_since, mailbox_ids)
        while url is not None:
            page = await self.conversation_page(url)
            yield page
            url = page.next_url

    async def threads(self, conversation_id: int) -> list[dict[str, Any]]:
        """Every thread of a conversation (``GET /v2/conversations/{id}/threads``, all pages)."""
        return [
            thread
            async for document in self._pages(
                f"{self._api}/v2/conversations/{int(conversation_id)}/threads"
            )
            for thread in _embedded(document, "threads")
        ]

    async def create_webhook(
        self, url: str, secret: str, events: Sequence[str], mailbox_ids: Sequence[int] = ()
    ) -> str:
        """Create a webhook (payload version V2; all mailboxes when ``mailbox_ids`` is empty)
        and return its id (Help Scout's ``Resource-ID`` header)."""
        if not 0 < len(secret) <= 40:
            raise ValueError("a Help Scout webhook secret has 1 to 40 characters")
        body: dict[str, Any] = {
            "url": url,
            "events": list(events),
            "secret": secret,
            "payloadVersion": "V2",
            "label": "deskside",
            "notification": False,
        }
        if mailbox_ids:
            body["mailboxIds"] = [int(mailbox) for mailbox in mailbox_ids]
        response = await self._send("POST", self._api + "/v2/webhooks", json=body)
        webhook_id = str(response.headers.get("resource-id") or "").strip()
        if not webhook_id:
            raise HelpScoutAPIError("Help Scout created the webhook but did not say its id")
        return webhook_id

    async def delete_webhook(self, webhook_id: str) -> None:
        """Delete a webhook; one that no longer exists counts as deleted."""
        await self._send(
            "DELETE", f"{self._api}/v2/webhooks/{int(webhook_id)}", allow=frozenset({404})
        )

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
            except _HTTP_ERRORS as exc:
                arrived = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                failures += 1
                if failures >= self._attempts or (arrived and not idempotent):
                    raise HelpScoutAPIError(_unreachable(f"{method} {_path(url)}", exc)) from None
                await self._wait(_backoff(failures), "Help Scout unreachable")
                continue
            status = response.status_code
            if status == 401:
                if renewed:
                    raise ConnectionLost(
                        f"Help Scout refused deskside's renewed token: {_RECONNECT}"
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
            raise ConfigError([_NO_APP])
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
            raise NotConnected(f"Help Scout is not connected: {_CONNECT}")
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
                    raise ConnectionLost(f"the Help Scout token cannot be renewed: {_RECONNECT}")
                await client.refresh_token(self._settings.token_url, refresh_token=refresh_token)
        except OAuthError as exc:
            return await self._adopt_stored_token(client, exc)
        except _HTTP_ERRORS as exc:
            raise HelpScoutAPIError(_unreachable("the token endpoint", exc)) from None
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
                f"insights.helpscout.client_id and client_secret, then {_RECONNECT}"
            )
        return ConnectionLost(
            f"Help Scout no longer accepts deskside's authorisation ({error}); it was revoked "
            f"or has expired: {_RECONNECT}"
        )

    async def _starter(self, state: str) -> str:
        """Who started the authorisation ``state`` (as :meth:`authorization_url` audited)."""
        recent = utcnow() - STATE_LIFETIME - timedelta(minutes=1)
        async with self._store.read() as session:
            started = await session.scalars(
                select(ErasureAudit)
                .where(ErasureAudit.action == CONNECT_STARTED, ErasureAudit.at >= recent)
                .order_by(ErasureAudit.id.desc())
            )
            wanted = _state_hash(state)
            return next((row.actor for row in started if row.counts.get("state") == wanted), "cli")

    async def _use_state(self, state: str) -> None:
        """Use up ``state``; :class:`AuthorizationRefused` if it is not one of ours, expired,
        or used before. Deleting it first makes two racing callbacks succeed at most once."""
        if not state:
            raise AuthorizationRefused("the authorisation came back without a state")
        async with self._store.session() as session:
            found = await session.get(OAuthState, _state_hash(state))
            if found is not None:
                await session.delete(found)
        if found is None:
            raise AuthorizationRefused(
                "this authorisation was not started here or was already used: start again "
                "with `deskside connect helpscout`"
            )
        if found.created_at < utcnow() - STATE_LIFETIME:
            raise AuthorizationRefused(
                "this authorisation took more than 10 minutes and has expired: start again "
                "with `deskside connect helpscout`"
            )

    async def _delete_webhook_quietly(self, webhook_id: str) -> bool:
        try:
            await self.delete_webhook(webhook_id)
        except (HelpScoutError, ValueError):
            return False
        return True


def _embedded(document: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    embedded = document.get("_embedded")
    items = embedded.get(name) if isinstance(embedded, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


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


def _unreachable(what: str, exc: Exception) -> str:
    if isinstance(exc, _STATUS_ERRORS):  # the token endpoint failing (Authlib raises it)
        return f"Help Scout answered {cast(Any, exc).response.status_code} at {what}"
    return f"Help Scout could not be reached for {what} ({type(exc).__name__})"
