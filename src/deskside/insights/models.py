"""The insights tables: mailboxes, customers, conversations and their threads, the webhook inbox,
and the Help Scout connection. Ids are Help Scout's own, so a second import or a repeated
webhook lands on the same row. Every schema change comes with an Alembic migration
(``migrations/versions``); a test compares the two."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from deskside.insights import DEFAULT_WORKSPACE

__all__ = [
    "DEFAULT_WORKSPACE",
    "MAX_ID",
    "Base",
    "Classification",
    "Connection",
    "Conversation",
    "ConversationTombstone",
    "Customer",
    "CustomerTombstone",
    "ErasedExport",
    "ErasureAudit",
    "ErasureKey",
    "ErasureTombstone",
    "Event",
    "ImportCursor",
    "Invitation",
    "LabelledExample",
    "Lease",
    "Mailbox",
    "Membership",
    "OAuthState",
    "Person",
    "PersonToken",
    "ReportExport",
    "RowId",
    "Thread",
    "Topic",
    "TopicMember",
    "UTCDateTime",
    "Workspace",
    "row_id",
    "utcnow",
]

MAX_ID = 2**63 - 1
"""The largest id a row can have: ids are signed 64-bit integers in every database."""

RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
"""An id that can name a row: as a FastAPI parameter or a model's field, any other number is
a malformed request (a larger one cannot even be compared with the stored ids)."""


def row_id(text: str) -> int | None:
    """``text`` as a :data:`RowId`; None when it cannot name a row (not ASCII digits, 0, or too
    large), as for a form's or a URL's value that names nothing."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every database (SQLite keeps no time zone: stored naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give it a time zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Mailbox(Base):
    """A Help Scout mailbox; ``selected`` ones are imported and analysed."""

    __tablename__ = "mailboxes"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    selected: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Customer(Base):
    """A Help Scout customer, as far as conversations and customer events name them."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    modified_at: Mapped[datetime | None]
    """When Help Scout last changed the copy stored: a ``customer.*`` body's ``updatedAt``, or
    for the copy a conversation embeds, that conversation's ``userUpdatedAt``. An older copy
    never overwrites a newer one."""


class Conversation(Base):
    """A conversation as the Mailbox API describes it (ids are Help Scout's)."""

    __tablename__ = "conversations"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    number: Mapped[int | None] = mapped_column(BigInteger)
    mailbox_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    customer_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    customer_email: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str | None] = mapped_column(String(20))
    state: Mapped[str | None] = mapped_column(String(20))
    type: Mapped[str | None] = mapped_column(String(20))
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime | None] = mapped_column(index=True)
    modified_at: Mapped[datetime | None]
    """Help Scout's ``userUpdatedAt`` (else ``createdAt``): an older copy never overwrites."""
    stored_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Thread(Base):
    """One message of a conversation: who wrote it, and its text without the HTML."""

    __tablename__ = "threads"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    conversation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(30))
    """Help Scout's thread type: customer, message (an agent's reply), note, chat, phone, …"""
    author: Mapped[str] = mapped_column(String(20))
    """``customer``, ``agent`` or ``system`` (line items, workflows)."""
    author_email: Mapped[str | None] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime | None]


class ConversationTombstone(Base):
    """A conversation Help Scout deleted (or merged into another): no copy of it older than
    ``deleted_at`` is stored again."""

    __tablename__ = "conversation_tombstones"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    deleted_at: Mapped[datetime] = mapped_column()
    """When the deletion reached deskside (the delivery's ``received_at``), or the newest
    copy stored before it if that is later: Help Scout deleted it no later than this."""


class CustomerTombstone(Base):
    """A customer Help Scout deleted: no copy of them, nor a conversation of theirs, older
    than ``deleted_at`` is stored again."""

    __tablename__ = "customer_tombstones"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    deleted_at: Mapped[datetime] = mapped_column()


class Event(Base):
    """A webhook delivery, stored before it is acknowledged; the worker processes it once."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event: Mapped[str] = mapped_column(String(80))
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    """SHA-256 of the event name and the raw body: a redelivery has the same key."""
    body: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    """``pending`` → ``done``; ``parked`` after ``worker_attempts`` failures."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]


class Connection(Base):
    """The Help Scout connection; tokens and the webhook secret are encrypted (Fernet)."""

    __tablename__ = "connections"

    provider: Mapped[str] = mapped_column(String(30), primary_key=True)
    mode: Mapped[str] = mapped_column(String(30))
    token: Mapped[bytes | None] = mapped_column(LargeBinary)
    """The whole OAuth token (access, refresh, expiry) as encrypted JSON."""
    webhook_id: Mapped[str | None] = mapped_column(String(40))
    webhook_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    connected_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OAuthState(Base):
    """An authorisation in progress: the SHA-256 of its random ``state``, used once."""

    __tablename__ = "oauth_states"

    state_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ImportCursor(Base):
    """Where a backfill stands, committed with each page's conversations: a stopped import
    resumes at ``next_url``."""

    __tablename__ = "import_cursors"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    """The mailbox (or ``all``) and the ``modifiedSince`` it started from."""
    next_url: Mapped[str | None] = mapped_column(Text)
    imported: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int | None] = mapped_column(Integer)
    finished: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Classification(Base):
    """What a conversation is about: ``bug``, ``feature``, ``docs``, ``question`` or ``other``.

    ``by`` is ``model`` (the classifier; redone when the customer writes again), ``llm``, or
    ``agent`` (a person's relabel, which the classifier never overwrites)."""

    __tablename__ = "classifications"

    conversation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(String(20), index=True)
    confidence: Mapped[float]
    by: Mapped[str] = mapped_column(String(10))
    classified_at: Mapped[datetime] = mapped_column(default=utcnow)
    """When it was decided; a customer message after this makes the model look again."""


class LabelledExample(Base):
    """A text with its label that the classifier learns from: an agent's correction (with the
    conversation it came from) or an imported example."""

    __tablename__ = "labelled_examples"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20), default="correction")
    conversation_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Topic(Base):
    """A group of conversations about the same problem or request.

    ``named_by_person`` keeps a person's name; ``merged_into`` points at the topic a person
    merged this one into (its conversations moved there, and new ones follow)."""

    __tablename__ = "topics"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    label: Mapped[str] = mapped_column(String(20), index=True)
    name: Mapped[str] = mapped_column(String(200))
    named_by_person: Mapped[bool] = mapped_column(Boolean, default=False)
    merged_into: Mapped[int | None] = mapped_column(BigInteger)
    trend_note: Mapped[str | None] = mapped_column(Text)
    """Why the topic is trending (its recent inflow against its baseline); None when not."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TopicMember(Base):
    """A conversation's topic; ``pinned`` when a person put it there (a split or a move),
    which regrouping never undoes."""

    __tablename__ = "topic_members"

    conversation_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True
    )
    topic_id: Mapped[int] = mapped_column(BigInteger, index=True)
    pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)


class ReportExport(Base):
    """Where a topic's report was exported, so exporting again updates it instead of
    opening a duplicate (e.g. a GitHub issue)."""

    __tablename__ = "report_exports"

    topic_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    target: Mapped[str] = mapped_column(String(200), primary_key=True)
    """``github:owner/repo``."""
    external_id: Mapped[str] = mapped_column(String(100))
    url: Mapped[str | None] = mapped_column(Text)
    exported_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Lease(Base):
    """Work that one process at a time does (the analysis): who holds it, and until when it is
    theirs without a renewal (a process that dies lets it expire)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime] = mapped_column()


class ErasureKey(Base):
    """The random key of the erasure tombstones' HMAC-SHA256, made by the first erasure. It
    lives with the tombstones: a new ``encryption_key`` must not let an erased person back."""

    __tablename__ = "erasure_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    """Always 1: there is one key."""
    key: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ErasureTombstone(Base):
    """Someone erased on request: a keyed hash of their address, of a Help Scout customer id or
    of a conversation id of theirs (never the value itself). What matches one is not stored
    again, from a webhook or an import."""

    __tablename__ = "erasure_tombstones"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    """Hex HMAC-SHA256 of ``email:<address>``, ``customer:<id>`` or ``conversation:<id>``."""
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)


class ErasureAudit(Base):
    """One erasure or purge: when, who, what and how many rows, never the erased data."""

    __tablename__ = "erasure_audit"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    """``cli``, ``api:token-<8 hex of its SHA-256>``, ``ui:admin`` or ``retention``."""
    action: Mapped[str] = mapped_column(String(20), index=True)
    """``forget``, ``retention`` or ``disconnect``."""
    detail: Mapped[str] = mapped_column(String(200))
    """What was asked, without whom: ``2 addresses``, ``older than 90 days``, …"""
    rows: Mapped[int] = mapped_column(Integer)
    """Rows removed or rewritten, in total."""
    counts: Mapped[dict[str, Any]] = mapped_column()
    """Rows by what they were (``conversations``, ``threads``, …)."""
    workspace: Mapped[str] = mapped_column(String(40), default=DEFAULT_WORKSPACE, index=True)
    """The workspace the change was made in (a person's login: the one they opened)."""


class ErasedExport(Base):
    """An exported report (a GitHub issue) that named an erased conversation: the next export
    rewrites it, even when no conversation of its topic is left."""

    __tablename__ = "erased_exports"

    topic_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    target: Mapped[str] = mapped_column(String(200), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)


class Workspace(Base):
    """A workspace besides the default one: one Help Scout account and everything deskside
    stores about it, kept in a database of its own (see :mod:`deskside.insights.workspaces`).
    Listed in the default workspace's database only."""

    __tablename__ = "workspaces"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Person(Base):
    """Someone who logs in to the web UI or calls the insights API with a token of theirs."""

    __tablename__ = "people"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    """Lower-cased."""
    password_hash: Mapped[str | None] = mapped_column(String(200))
    """``scrypt$…`` once they accepted their invitation; None before."""
    session_generation: Mapped[int] = mapped_column(Integer, default=0)
    """Sessions carry it: "log out everywhere" adds one, which ends every older session."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Membership(Base):
    """A person's role in a workspace (``viewer``, ``editor`` or ``admin``)."""

    __tablename__ = "memberships"

    person_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    )
    workspace: Mapped[str] = mapped_column(String(60), primary_key=True, default=DEFAULT_WORKSPACE)
    role: Mapped[str] = mapped_column(String(20))


class Invitation(Base):
    """A one-time link to set a password: its token's SHA-256, never the token."""

    __tablename__ = "invitations"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    person_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column()


class PersonToken(Base):
    """An API token of a person, with the person's role: its SHA-256, never the token."""

    __tablename__ = "person_tokens"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    person_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    workspace: Mapped[str] = mapped_column(String(40), default=DEFAULT_WORKSPACE)
    """The one workspace the token acts in, with the person's role there."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
