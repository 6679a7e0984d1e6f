"""The people erased on request, as tombstones, and what those keep out of the store.

A tombstone is the HMAC-SHA256, under a random key kept in the store (made by the first
erasure), of ``email:<address>``, ``customer:<Help Scout customer id>`` or
``conversation:<id>``: the value itself is never stored, and cannot be read back from it.
The key lives with the tombstones rather than derive from ``[insights] encryption_key``, so
that a new encryption key never lets an erased person back in.

Every write of Help Scout's changes (:mod:`deskside.insights.ingest.changes`, for webhooks and
imports alike) passes through :func:`without_erased`; :func:`blank_erased_deliveries` empties
the deliveries the worker handled that named someone erased.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights.models import ErasureKey, ErasureTombstone, Event, utcnow
from deskside.insights.store import insert_for

if TYPE_CHECKING:
    from deskside.insights.ingest.normalise import ConversationRecord, CustomerRecord

__all__ = [
    "ERASED",
    "Names",
    "blank_erased_deliveries",
    "bury",
    "erasing",
    "named_in",
    "without_erased",
]

ERASED = "[erased]"
"""What an erased address becomes in a text that quotes it."""

_ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
"""Something that looks like an address, in free text."""
_CHUNK = 500
_ERASURE_LOCK = 7406178
"""PostgreSQL advisory lock: an erasure holds it alone, a write of Help Scout's data shared."""


async def erasing(session: AsyncSession, *, alone: bool = True) -> None:
    """On PostgreSQL, take turns (until the transaction ends) between an erasure (``alone``)
    and the writes that check its tombstones (shared): a write that began before an erasure
    committed cannot store what the erasure removes. SQLite's one writer already takes turns."""
    if session.get_bind().dialect.name == "postgresql":
        lock = "pg_advisory_xact_lock" if alone else "pg_advisory_xact_lock_shared"
        await session.execute(text(f"select {lock}({_ERASURE_LOCK})"))


async def _key(session: AsyncSession, *, create: bool = False) -> bytes | None:
    """The tombstones' key (read once per session); with ``create`` made now if missing
    (once, whichever process comes first), else None when nobody was ever erased."""
    key: bytes | None = session.info.get("erasure_key")
    if key is None:
        key = await session.scalar(select(ErasureKey.key).where(ErasureKey.id == 1))
    if key is None and create:
        statement = insert_for(session)(ErasureKey).values(id=1, key=secrets.token_bytes(32))
        await session.execute(statement.on_conflict_do_nothing(index_elements=["id"]))
        key = await session.scalar(select(ErasureKey.key).where(ErasureKey.id == 1))
    if key is not None:
        session.info["erasure_key"] = key
    return key


def _digest(key: bytes, kind: str, value: object) -> str:
    return hmac.new(key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Names:
    """Who something names: addresses (lower-case), Help Scout customer ids and conversation
    ids."""

    emails: frozenset[str] = frozenset()
    customers: frozenset[int] = frozenset()
    conversations: frozenset[int] = frozenset()

    def meets(self, other: Names) -> bool:
        """Whether the two name anyone in common."""
        return bool(
            self.emails & other.emails
            or self.customers & other.customers
            or self.conversations & other.conversations
        )


async def _tombstones_of(session: AsyncSession, names: Names) -> list[str]:
    """The tombstones of ``names``, under the key (made now if this is the first erasure)."""
    key = await _key(session, create=True)
    assert key is not None
    return [
        *(_digest(key, "email", email) for email in sorted(names.emails)),
        *(_digest(key, "customer", customer) for customer in sorted(names.customers)),
        *(_digest(key, "conversation", c) for c in sorted(names.conversations)),
    ]


async def bury(session: AsyncSession, names: Names) -> int:
    """Write the tombstones of ``names``; how many."""
    digests = await _tombstones_of(session, names)
    statement = insert_for(session)(ErasureTombstone).on_conflict_do_nothing(
        index_elements=["digest"]
    )
    now = utcnow()
    for start in range(0, len(digests), _CHUNK):
        chunk = digests[start : start + _CHUNK]
        await session.execute(statement, [{"digest": d, "erased_at": now} for d in chunk])
    return len(digests)


@dataclass(frozen=True)
class _Erased:
    """Which of the identifiers asked about have a tombstone."""

    key: bytes
    found: frozenset[str]

    def email(self, address: str | None) -> bool:
        return bool(address) and self._has("email", str(address).strip().lower())

    def customer(self, customer_id: int | None) -> bool:
        return customer_id is not None and self._has("customer", customer_id)

    def conversation(self, conversation_id: int | None) -> bool:
        return conversation_id is not None and self._has("conversation", conversation_id)

    def any_of(self, names: Names) -> bool:
        return (
            any(self.email(email) for email in names.emails)
            or any(self.customer(customer) for customer in names.customers)
            or any(self.conversation(c) for c in names.conversations)
        )

    def _has(self, kind: str, value: object) -> bool:
        return _digest(self.key, kind, value) in self.found


async def _erased_among(session: AsyncSession, key: bytes, asked: Names) -> _Erased:
    """The tombstones among ``asked``."""
    digests = sorted(
        {_digest(key, "email", email) for email in asked.emails}
        | {_digest(key, "customer", customer) for customer in asked.customers}
        | {_digest(key, "conversation", c) for c in asked.conversations}
    )
    found: set[str] = set()
    for start in range(0, len(digests), _CHUNK):
        chunk = digests[start : start + _CHUNK]
        tombstones = select(ErasureTombstone.digest).where(ErasureTombstone.digest.in_(chunk))
        found.update(await session.scalars(tombstones))
    return _Erased(key, frozenset(found))


def _names(
    emails: Iterable[str | None],
    customers: Iterable[int | None] = (),
    conversations: Iterable[int | None] = (),
) -> Names:
    return Names(
        frozenset(email.strip().lower() for email in emails if email and email.strip()),
        frozenset(customer for customer in customers if customer is not None),
        frozenset(c for c in conversations if c is not None),
    )


async def without_erased(
    session: AsyncSession,
    conversations: Sequence[ConversationRecord],
    customers: Sequence[CustomerRecord] = (),
) -> tuple[list[ConversationRecord], list[CustomerRecord]]:
    """What of ``conversations`` and ``customers`` may be stored. A conversation whose id,
    customer id or customer address has a tombstone is left out whole, and so is a customer
    whose id or address has one; in the others, an erased person's messages are left out and
    their address quoted in a subject or a message becomes :data:`ERASED`."""
    await erasing(session, alone=False)
    key = await _key(session) if conversations or customers else None
    if key is None:  # nobody was ever erased
        return list(conversations), list(customers)
    emails = [customer.get("email") for customer in customers]
    for record in conversations:
        emails.append(record.conversation.get("customer_email"))
        emails += _ADDRESS.findall(record.conversation.get("subject") or "")
        for thread in record.threads:
            emails += [thread.get("author_email"), *_ADDRESS.findall(thread.get("text") or "")]
    asked = _names(
        emails,
        [c.get("id") for c in customers]
        + [r.conversation.get("customer_id") for r in conversations],
        [record.conversation.get("id") for record in conversations],
    )
    erased = await _erased_among(session, key, asked)
    if not erased.found:
        return list(conversations), list(customers)
    kept = [
        _unquoted(record, erased)
        for record in conversations
        if not (
            erased.conversation(record.conversation.get("id"))
            or erased.customer(record.conversation.get("customer_id"))
            or erased.email(record.conversation.get("customer_email"))
        )
    ]
    known = [
        customer
        for customer in customers
        if not (erased.customer(customer.get("id")) or erased.email(customer.get("email")))
    ]
    return kept, known


def _unquoted(record: ConversationRecord, erased: _Erased) -> ConversationRecord:
    """``record`` without the erased people's messages and addresses."""

    def scrub(text: str) -> str:
        return _ADDRESS.sub(lambda found: ERASED if erased.email(found[0]) else found[0], text)

    threads = [
        {**thread, "text": scrub(thread.get("text") or "")}
        for thread in record.threads
        if not erased.email(thread.get("author_email"))
    ]
    conversation = {**record.conversation, "subject": scrub(record.conversation["subject"])}
    return replace(record, conversation=conversation, threads=threads)


def named_in(event: str, body: bytes) -> Names:
    """Who a webhook delivery names: every address anywhere in it, the customers it embeds
    (``primaryCustomer``, ``customer``, any object of ``"type": "customer"``), the conversation
    of a ``convo.*`` event and the customer of a ``customer.*`` one."""
    emails: set[str] = set()
    customers: set[int] = set()
    conversations: set[int] = set()
    try:
        document = json.loads(body)
    except ValueError:  # not JSON (or not UTF-8): its text is all there is
        emails.update(_ADDRESS.findall(body.decode("utf-8", "replace")))
        return _names(emails)
    pending: list[tuple[str, Any]] = [("", document)]
    while pending:
        key, value = pending.pop()
        if isinstance(value, str):
            emails.update(_ADDRESS.findall(value))
        elif isinstance(value, list):
            pending.extend(("", item) for item in value)
        elif isinstance(value, dict):
            customer = key in ("primaryCustomer", "customer") or value.get("type") == "customer"
            if customer and _is_id(value.get("id")):
                customers.add(value["id"])
            pending.extend(value.items())
    if isinstance(document, dict) and _is_id(document.get("id")):
        if event.startswith("convo."):
            conversations.add(document["id"])
        elif event.startswith("customer."):
            customers.add(document["id"])
    return _names(emails, customers, conversations)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


async def blank_erased_deliveries(session: AsyncSession, events: Sequence[Event]) -> int:
    """Empty the body of each handled (not pending) delivery of ``events`` that names someone
    erased: nothing of it was stored, and nothing of it is kept. How many were emptied."""
    key = await _key(session)
    if key is None:  # nobody was ever erased
        return 0
    handled = [(e, named_in(e.event, e.body)) for e in events if e.status != "pending" and e.body]
    if not handled:
        return 0
    asked = Names(
        frozenset().union(*(names.emails for _, names in handled)),
        frozenset().union(*(names.customers for _, names in handled)),
        frozenset().union(*(names.conversations for _, names in handled)),
    )
    erased = await _erased_among(session, key, asked)
    if not erased.found:
        return 0
    blanked = [event for event, names in handled if erased.any_of(names)]
    for event in blanked:
        event.body = b""
    return len(blanked)
