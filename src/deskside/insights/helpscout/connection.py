"""What a Help Scout connection is, for every part that deals with one: the provider's name in
the store, the authorisation ``state`` (its lifetime, the workspace it names), the events a
webhook subscribes to, the errors (their messages are safe to show and never hold a token, a
code or a secret), whether the settings allow connecting (:func:`config_problems`) and the
secrets a webhook may be signed with (:func:`webhook_secrets`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from deskside.errors import ConfigError
from deskside.insights import DEFAULT_WORKSPACE
from deskside.insights.crypto import Cipher
from deskside.insights.models import Connection
from deskside.insights.settings import InsightsSettings

__all__ = [
    "CONNECT_HINT",
    "CONNECT_STARTED",
    "NO_APP",
    "PROVIDER",
    "RECONNECT_HINT",
    "STATE_LIFETIME",
    "STATE_WORKSPACE_MARK",
    "WEBHOOK_EVENTS",
    "AuthorizationRefused",
    "ConnectionLost",
    "DisconnectReport",
    "HelpScoutAPIError",
    "HelpScoutError",
    "Mode",
    "NotConnected",
    "config_problems",
    "iso_utc",
    "state_hash",
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
CONNECT_HINT = "run `deskside connect helpscout`"
RECONNECT_HINT = f"{CONNECT_HINT} again"
Mode = Literal["oauth", "client_credentials"]


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
class DisconnectReport:
    """What :meth:`HelpScoutAPI.disconnect` did."""

    was_connected: bool
    webhook_deleted: bool | None
    """``None``: there was no webhook; ``False``: deleting it failed (it may still exist in
    Help Scout, pointing at deskside; remove it under Manage → Apps → Webhooks)."""


NO_APP = (
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
        problems.append(NO_APP)
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


def state_hash(state: str) -> str:
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
