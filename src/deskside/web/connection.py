"""What the Connection page shows and changes: the Help Scout connection, the mailboxes chosen
for import, and how far each backfill has come (as ``deskside connect``, ``mailboxes`` and
``import`` keep them in the store)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from deskside.insights.helpscout.client import HelpScoutAPI
from deskside.insights.helpscout.connection import PROVIDER
from deskside.insights.ingest.backfill import sync_mailboxes
from deskside.insights.models import Connection, ImportCursor, Mailbox
from deskside.insights.privacy.retention import Disconnected, disconnect_helpscout
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store

__all__ = [
    "Backfill",
    "ConnectionState",
    "connection_state",
    "disconnect",
    "refresh_mailboxes",
    "select_mailboxes",
]


@dataclass(frozen=True)
class Backfill:
    """One import's progress (``deskside import``), resumable where it stopped."""

    key: str
    imported: int
    total: int | None
    finished: bool
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ConnectionState:
    connected: bool
    mode: str | None
    connected_at: datetime | None
    webhook: bool
    """Whether deskside registered its own webhook in Help Scout."""
    mailboxes: list[Mailbox]
    backfills: list[Backfill]

    @property
    def all_mailboxes(self) -> bool:
        """None selected means every mailbox, new ones included."""
        return not any(mailbox.selected for mailbox in self.mailboxes)


async def connection_state(store: Store) -> ConnectionState:
    async with store.read() as session:
        found = await session.get(Connection, PROVIDER)
        mailboxes = list(await session.scalars(select(Mailbox).order_by(Mailbox.name)))
        cursors = await session.scalars(
            select(ImportCursor).order_by(ImportCursor.updated_at.desc()).limit(20)
        )
        backfills = [
            Backfill(c.key, c.imported, c.total, c.finished, c.started_at, c.updated_at)
            for c in cursors
        ]
    return ConnectionState(
        connected=found is not None,
        mode=found.mode if found else None,
        connected_at=found.connected_at if found else None,
        webhook=bool(found and found.webhook_id),
        mailboxes=mailboxes,
        backfills=backfills,
    )


async def select_mailboxes(store: Store, chosen: Collection[int] | None) -> None:
    """Import only the ``chosen`` mailboxes; None: every mailbox, new ones included.
    ``ValueError`` names ids that are not stored."""
    async with store.session() as session:
        found = list(await session.scalars(select(Mailbox)))
        unknown = sorted(set(chosen or ()) - {mailbox.id for mailbox in found})
        if unknown:
            raise ValueError(f"no such mailbox: {', '.join(map(str, unknown))}")
        for mailbox in found:
            mailbox.selected = chosen is not None and mailbox.id in chosen


async def refresh_mailboxes(settings: InsightsSettings, store: Store) -> None:
    """The mailbox list from Help Scout (HelpScoutError or ConfigError when it cannot)."""
    async with HelpScoutAPI(settings, store) as api:
        await sync_mailboxes(store, api)


async def disconnect(
    settings: InsightsSettings, store: Store, *, by: str, delete_data: bool = False
) -> Disconnected:
    """Forget the connection and delete deskside's webhook in Help Scout (best effort), and
    with ``delete_data`` everything imported, as ``deskside disconnect helpscout`` does; audited
    as ``by``."""
    return await disconnect_helpscout(settings, store, delete_data=delete_data, by=by)
