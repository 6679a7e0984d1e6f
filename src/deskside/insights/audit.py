"""The audit trail: one row per change people make (who, when, what, in which workspace),
written in the same transaction as the change, and read back with filters for the Audit page,
its CSV and JSON downloads and the admin API.

Rows share the erasure audit's table (``erasure_audit``). ``detail`` names ids, labels and
names people chose, never customers' messages or addresses. Who is ``ui:<email>``,
``api:<token's person or name>`` or ``cli``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights.models import DEFAULT_WORKSPACE, ErasureAudit, utcnow
from deskside.insights.store import Store

__all__ = [
    "AuditEntry",
    "AuditFilter",
    "actions",
    "audit_filter",
    "entries",
    "record",
    "to_csv",
    "to_json",
    "workspace_entries",
]

_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class AuditEntry:
    """One audited change as people read it."""

    id: int
    at: datetime
    actor: str
    action: str
    detail: str
    workspace: str = DEFAULT_WORKSPACE

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "detail": self.detail,
            "workspace": self.workspace,
        }


@dataclass(frozen=True)
class AuditFilter:
    """Which entries to read: by whom (a substring of the actor, case-insensitive), which
    action exactly, and from ``since`` (included) to ``until`` (excluded)."""

    actor: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def audit_filter(
    who: str | None, action: str | None, since: str | None, until: str | None
) -> AuditFilter:
    """The filter the Audit page's fields (or the API's query) ask for: ``since`` and
    ``until`` are days (``YYYY-MM-DD``, UTC), both included. ``ValueError`` for a day that
    is not one."""
    return AuditFilter(
        actor=(who or "").strip()[:100] or None,
        action=(action or "").strip()[:20] or None,
        since=_day(since, "from"),
        until=(start + timedelta(days=1)) if (start := _day(until, "to")) else None,
    )


def _day(text: str | None, which: str) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    try:
        day = date.fromisoformat(text[:10]) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise ValueError(f"the '{which}' day is not a date (YYYY-MM-DD)")
    return datetime.combine(day, time(), tzinfo=UTC)


def record(
    session: AsyncSession,
    by: str,
    action: str,
    detail: str,
    facts: dict[str, Any] | None = None,
    *,
    workspace: str | None = None,
) -> ErasureAudit:
    """Add an audit row to ``session`` (it commits with the change it describes); ``facts``:
    ids a later step needs (an undo), never customers' data. The workspace is the session's
    store's, unless ``workspace`` names another (a person's role there, changed in the
    default workspace's database, where the people are)."""
    row = ErasureAudit(
        workspace=workspace or session.info.get("workspace", DEFAULT_WORKSPACE),
        at=utcnow(),
        actor=by[:100],
        action=action[:20],
        detail=detail[:200],
        rows=0,
        counts=facts or {},
    )
    session.add(row)
    return row


async def entries(
    store: Store,
    wanted: AuditFilter | None = None,
    *,
    limit: int = 500,
    workspace: str | None = None,
) -> list[AuditEntry]:
    """The newest entries of ``store``'s workspace first, at most ``limit`` (capped at
    10 000); of the default workspace's store, with ``workspace``, those about that workspace
    (the changes to its people)."""
    wanted = wanted or AuditFilter()
    query = select(ErasureAudit).order_by(ErasureAudit.id.desc())
    query = query.where(ErasureAudit.workspace == (workspace or store.workspace))
    if wanted.actor:
        literal = "".join("\\" + c if c in "\\%_" else c for c in wanted.actor)
        query = query.where(ErasureAudit.actor.ilike(f"%{literal}%", escape="\\"))
    if wanted.action:
        query = query.where(ErasureAudit.action == wanted.action)
    if wanted.since is not None:
        query = query.where(ErasureAudit.at >= wanted.since)
    if wanted.until is not None:
        query = query.where(ErasureAudit.at < wanted.until)
    async with store.read() as session:
        rows = await session.scalars(query.limit(max(1, min(limit, _MAX_ENTRIES))))
        return [
            AuditEntry(row.id, row.at, row.actor, row.action, row.detail, row.workspace)
            for row in rows
        ]


async def workspace_entries(
    store: Store, control: Store, wanted: AuditFilter | None = None, *, limit: int = 500
) -> list[AuditEntry]:
    """The audit of ``store``'s workspace, newest first: its own entries and, for a workspace
    other than the default one, those about its people, which the default workspace's store
    (``control``, where the people are) keeps."""
    found = await entries(store, wanted, limit=limit)
    if control is not store:
        found += await entries(control, wanted, limit=limit, workspace=store.workspace)
        found.sort(key=lambda entry: entry.at, reverse=True)
    return found[: max(1, min(limit, _MAX_ENTRIES))]


async def actions(store: Store) -> list[str]:
    """Every action the audit holds, sorted (for the Audit page's filter)."""
    async with store.read() as session:
        found = await session.scalars(select(ErasureAudit.action).distinct())
        return sorted(found)


def to_csv(found: list[AuditEntry]) -> str:
    """``found`` as CSV with a header row; cells a spreadsheet would run as a formula are
    prefixed with an apostrophe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["id", "at", "workspace", "actor", "action", "detail"])
    for entry in found:
        cells = [entry.at.isoformat(), entry.workspace, entry.actor, entry.action, entry.detail]
        writer.writerow([entry.id, *(_inert(cell) for cell in cells)])
    return out.getvalue()


def to_json(found: list[AuditEntry]) -> list[dict[str, Any]]:
    return [entry.as_dict() for entry in found]


def _inert(cell: str) -> str:
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell
