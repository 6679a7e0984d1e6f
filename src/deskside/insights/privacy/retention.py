"""How long the store keeps what it imported: ``[insights] keep_days`` (old conversations
purged daily by the process that keeps the analysis current), and all of it when Help Scout is
disconnected with its data. Every purge is written to the audit, as erasures are."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select

from deskside.errors import ConfigError
from deskside.insights import audit
from deskside.insights.models import (
    Classification,
    Connection,
    Conversation,
    ConversationTombstone,
    Customer,
    CustomerTombstone,
    ErasedExport,
    ErasureAudit,
    Event,
    ImportCursor,
    LabelledExample,
    Mailbox,
    OAuthState,
    ReportExport,
    Thread,
    Topic,
    TopicMember,
    utcnow,
)
from deskside.insights.privacy.erasure import (
    Removed,
    affected_rows,
    record_removal,
    remove_conversations,
)
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store

if TYPE_CHECKING:
    from deskside.insights.helpscout.connection import DisconnectReport

__all__ = [
    "Disconnected",
    "Retention",
    "disconnect_helpscout",
    "purge_account_data",
    "purge_older_than",
]

_BATCH = 500
_PURGE_EVERY = timedelta(days=1)
_LOOK_EVERY_SECONDS = 3600.0
"""How often the lease holder reads when the last purge ran."""

_IMPORTED = (
    Thread,
    Classification,
    TopicMember,
    LabelledExample,
    ReportExport,
    ErasedExport,
    Topic,
    Conversation,
    ConversationTombstone,
    Customer,
    CustomerTombstone,
    Event,
    ImportCursor,
    Mailbox,
    OAuthState,
)
"""What a Help Scout account brought into the store (and what was worked out from it), in an
order that deletes what refers to a row before the row. Erasure tombstones stay: a person
erased stays erased should the account be connected again."""


async def purge_older_than(
    store: Store, days: int, *, by: str = "retention", now: datetime | None = None
) -> Removed:
    """Remove the conversations that changed last more than ``days`` days ago (Help Scout's
    ``userUpdatedAt``, else when they began or arrived) with their threads, labels, topic
    memberships and agents' corrections, the handled webhook deliveries received before then,
    and the customers left without a conversation and unchanged since; a batch at a time,
    each its own transaction. Written to the audit as ``by``."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    removed = Removed()
    changed = func.coalesce(
        Conversation.modified_at, Conversation.created_at, Conversation.stored_at
    )
    oldest = select(Conversation.id).where(changed < cutoff).order_by(Conversation.id)
    while True:
        async with store.session() as session:
            batch = list(await session.scalars(oldest.limit(_BATCH)))
            if not batch:
                break
            await remove_conversations(session, batch, removed)
    async with store.session() as session:
        has_one = select(Conversation.id).where(Conversation.customer_id == Customer.id).exists()
        unchanged = func.coalesce(Customer.modified_at, Customer.updated_at) < cutoff
        gone = delete(Customer).where(~has_one, unchanged)
        removed.add("customers", await affected_rows(session, gone))
        handled = delete(Event).where(Event.received_at < cutoff, Event.status != "pending")
        removed.add("events", await affected_rows(session, handled))
    await record_removal(store, by, "retention", f"older than {days} days", removed)
    return removed


async def purge_account_data(store: Store, *, by: str) -> Removed:
    """Remove everything the Help Scout account brought into the store (conversations,
    customers, mailboxes, deliveries, imports) and what was worked out from it (labels,
    topics, corrections, exports); written to the audit as ``by``."""
    removed = Removed()
    async with store.session() as session:
        for model in _IMPORTED:
            removed.add(model.__tablename__, await affected_rows(session, delete(model)))
    await record_removal(store, by, "disconnect", "helpscout, with its data", removed)
    return removed


@dataclass(frozen=True)
class Disconnected:
    """What :func:`disconnect_helpscout` did."""

    report: DisconnectReport
    removed: Removed | None
    """The imported data removed; None when it was kept."""


async def disconnect_helpscout(
    settings: InsightsSettings, store: Store, *, delete_data: bool, by: str
) -> Disconnected:
    """Forget the Help Scout connection and delete deskside's webhook there (best effort);
    with ``delete_data`` also :func:`purge_account_data`, as ``by``. Without an encryption key
    the token cannot be used to delete the webhook: the connection is only forgotten."""
    from deskside.insights.helpscout.client import HelpScoutAPI
    from deskside.insights.helpscout.connection import PROVIDER, DisconnectReport

    try:
        api = HelpScoutAPI(settings, store)
    except ConfigError:
        async with store.session() as session:
            found = await session.get(Connection, PROVIDER)
            await session.execute(delete(Connection).where(Connection.provider == PROVIDER))
        had_webhook = found is not None and found.webhook_id is not None
        report = DisconnectReport(found is not None, False if had_webhook else None)
    else:
        async with api:
            report = await api.disconnect()
    async with store.session() as session:
        what = "Help Scout and its data" if delete_data else "Help Scout"
        audit.record(session, by, "helpscout_disconnect", what)
    removed = await purge_account_data(store, by=by) if delete_data else None
    return Disconnected(report, removed)


class Retention:
    """Keeps ``[insights] keep_days`` for the process that keeps the analysis current, and
    tells it when an erasure or a purge (from any process) removed rows since it last asked:
    its topics are then regrouped from what is left."""

    def __init__(self, store: Store, settings: InsightsSettings) -> None:
        self.store = store
        self.keep_days = settings.keep_days
        self._seen: int | None = None
        """The newest audit row that removed anything, as of the last :meth:`keep`."""
        self._look_after = 0.0

    async def keep(self) -> bool:
        """Purge what is older than ``keep_days`` when the last purge (by any process) is a
        day old; whether rows were removed since the last call (False on the first)."""
        if self.keep_days is not None and time.monotonic() >= self._look_after:
            self._look_after = time.monotonic() + _LOOK_EVERY_SECONDS
            async with self.store.read() as session:
                last = await session.scalar(
                    select(func.max(ErasureAudit.at)).where(ErasureAudit.action == "retention")
                )
            if last is None or utcnow() - last >= _PURGE_EVERY:
                await purge_older_than(self.store, self.keep_days)
        async with self.store.read() as session:
            removing = select(func.max(ErasureAudit.id)).where(ErasureAudit.rows > 0)
            newest = await session.scalar(removing) or 0
        changed = self._seen is not None and newest != self._seen
        self._seen = newest
        return changed
