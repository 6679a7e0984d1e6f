"""Help Scout's Mailbox API 2.0 as deskside uses it (:class:`HelpScoutAPI`): connecting (the
authorization-code flow, where an agent approves deskside in the browser, or the app's own
client credentials), registering the webhook, disconnecting, and reading mailboxes,
conversations and threads. Tokens, rate limits and retries are :mod:`.session`'s."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
from sqlalchemy import delete, select

from deskside.insights import DEFAULT_WORKSPACE, audit
from deskside.insights.helpscout.connection import (
    CONNECT_HINT,
    CONNECT_STARTED,
    PROVIDER,
    STATE_LIFETIME,
    STATE_WORKSPACE_MARK,
    WEBHOOK_EVENTS,
    AuthorizationRefused,
    DisconnectReport,
    HelpScoutAPIError,
    HelpScoutError,
    NotConnected,
    iso_utc,
    state_hash,
)
from deskside.insights.helpscout.session import HTTP_ERRORS, OAuthError, Session, unreachable
from deskside.insights.models import Connection, ErasureAudit, OAuthState, utcnow

__all__ = [
    "ConversationPage",
    "HelpScoutAPI",
]


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


class HelpScoutAPI(Session):
    """A Help Scout connection backed by ``store`` (see :class:`~.session.Session` for how it is
    built and closed)."""

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
            session.add(OAuthState(state_hash=state_hash(state), created_at=utcnow()))
            facts = {"state": state_hash(state)}
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
        except HTTP_ERRORS as exc:
            raise HelpScoutAPIError(unreachable("the token endpoint", exc)) from None
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
        except HTTP_ERRORS as exc:
            raise HelpScoutAPIError(unreachable("the token endpoint", exc)) from None
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
            raise NotConnected(f"Help Scout is not connected: {CONNECT_HINT}")
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

    async def _starter(self, state: str) -> str:
        """Who started the authorisation ``state`` (as :meth:`authorization_url` audited)."""
        recent = utcnow() - STATE_LIFETIME - timedelta(minutes=1)
        async with self._store.read() as session:
            started = await session.scalars(
                select(ErasureAudit)
                .where(ErasureAudit.action == CONNECT_STARTED, ErasureAudit.at >= recent)
                .order_by(ErasureAudit.id.desc())
            )
            wanted = state_hash(state)
            return next((row.actor for row in started if row.counts.get("state") == wanted), "cli")

    async def _use_state(self, state: str) -> None:
        """Use up ``state``; :class:`AuthorizationRefused` if it is not one of ours, expired,
        or used before. Deleting it first makes two racing callbacks succeed at most once."""
        if not state:
            raise AuthorizationRefused("the authorisation came back without a state")
        async with self._store.session() as session:
            found = await session.get(OAuthState, state_hash(state))
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


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
