"""Mailbox API 2.0 documents (from the API or a webhook body) → rows for the store.

Everything here is defensive: a field Help Scout leaves out, or sends with another type or a
value no column can hold (a number outside 64 bits, a name longer than its column), becomes
``None`` or is shortened rather than an error, because one odd conversation must not stop an
import. Text loses its NUL characters (PostgreSQL cannot store them) and lone surrogates. Only a
conversation without a usable id is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import lxml.html
from lxml import etree

from deskside.insights.models import MAX_ID, row_id

__all__ = [
    "ConversationRecord",
    "CustomerRecord",
    "clean_text",
    "conversation_record",
    "customer_record",
    "help_scout_id",
    "html_to_text",
    "parse_time",
]

CustomerRecord = dict[str, Any]
"""``id``, ``email``, ``first_name``, ``last_name`` (``None`` when not sent) and
``modified_at``: when Help Scout last changed this copy (``None`` when unknown)."""

_BLOCKS = ("p", "div", "li", "blockquote", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "ul")
_BLANK_RUNS = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\u00a0]+")


@dataclass(frozen=True)
class ConversationRecord:
    """One conversation's row, its threads' rows and its primary customer."""

    conversation: dict[str, Any]
    threads: list[dict[str, Any]] = field(default_factory=list)
    customer: CustomerRecord | None = None
    merged_from: tuple[int, ...] = ()
    """Conversations its line items say were merged into it (see :func:`_merged_from`)."""

    @property
    def deleted(self) -> bool:
        """Whether Help Scout describes the conversation as deleted (``state``)."""
        return bool(self.conversation["state"] == "deleted")


def conversation_record(document: dict[str, Any]) -> ConversationRecord:
    """The rows for a Mailbox API conversation (``_embedded.threads`` when present). The
    embedded customer's ``modified_at`` is the conversation's: Help Scout gives that copy no
    time of its own.

    Raises ``ValueError`` when the document has no usable ``id`` (see :func:`help_scout_id`).
    """
    conversation_id = help_scout_id(document.get("id"))
    if conversation_id is None:
        raise ValueError("the conversation has no id, or one Help Scout never gives")
    created = parse_time(document.get("createdAt"))
    modified = parse_time(document.get("userUpdatedAt")) or created
    customer = _object(document.get("primaryCustomer")) or _object(document.get("customer"))
    customer_row = None
    if customer and help_scout_id(customer.get("id")) is not None:
        customer_row = customer_record(customer) | {"modified_at": modified}
    tags = [
        _text(tag.get("tag") or tag.get("name")) if isinstance(tag, dict) else _text(str(tag))
        for tag in _list(document.get("tags"))
    ]
    row = {
        "id": conversation_id,
        "number": help_scout_id(document.get("number")),
        "mailbox_id": help_scout_id(document.get("mailboxId")),
        "customer_id": customer_row["id"] if customer_row else None,
        "customer_email": customer_row["email"] if customer_row else None,
        "subject": _text(document.get("subject")) or "",
        "status": _text(document.get("status"), 20),
        "state": _text(document.get("state"), 20),
        "type": _text(document.get("type"), 20),
        "tags": [tag for tag in tags if tag],
        "created_at": created,
        "modified_at": modified,
    }
    embedded = _object(document.get("_embedded")) or {}
    documents = _list(embedded.get("threads"))
    threads = [
        thread for item in documents if (thread := thread_row(conversation_id, item)) is not None
    ]
    merged = tuple(sorted(_merged_from(documents) - {conversation_id}))
    return ConversationRecord(row, threads, customer_row, merged)


def _merged_from(threads: list[Any]) -> set[int]:
    """The conversations that line items say were merged into this one.

    Help Scout documents this for its legacy thread object only: ``actionType: "merged"`` with
    ``actionSourceId``, "the id of the original conversation". Mailbox API 2.0 threads carry
    ``action: {type, text, associatedEntities}`` with the entities' keys undocumented; a
    ``merged`` action's entity whose key names a conversation is read the same way."""
    found: set[int] = set()
    for item in threads:
        thread = _object(item) or {}
        action = _object(thread.get("action")) or {}
        if thread.get("actionType") == "merged":
            source = help_scout_id(thread.get("actionSourceId"))
            if source is not None:
                found.add(source)
        if action.get("type") == "merged":
            entities = _object(action.get("associatedEntities")) or {}
            for key, value in entities.items():
                entity = help_scout_id(value)
                if "conversation" in key.lower() and entity is not None:
                    found.add(entity)
    return found


def thread_row(conversation_id: int, document: Any) -> dict[str, Any] | None:
    """A thread's row, or ``None`` for something that is not a thread with a usable id."""
    thread = _object(document)
    thread_id = help_scout_id(thread.get("id")) if thread is not None else None
    if thread is None or thread_id is None:
        return None
    kind = _text(thread.get("type"), 30) or "unknown"
    author = _object(thread.get("createdBy")) or {}
    by = _text(author.get("type"))
    if kind == "lineitem":
        who = "system"  # an activity line ("assigned to …"), not a message
    elif by == "customer" or (by is None and kind == "customer"):
        who = "customer"
    elif by == "user" or kind in ("message", "note", "chat", "phone"):
        who = "agent"
    else:
        who = "system"
    return {
        "id": thread_id,
        "conversation_id": conversation_id,
        "type": kind,
        "author": who,
        "author_email": _email(author.get("email")),
        "text": html_to_text(_text(thread.get("body")) or ""),
        "created_at": parse_time(thread.get("createdAt")),
    }


def customer_record(document: dict[str, Any]) -> CustomerRecord:
    """A customer's row from a ``primaryCustomer`` or a ``customer.*`` webhook body (whose
    ``updatedAt``, else ``createdAt``, is the copy's ``modified_at``)."""
    email = document.get("email")
    if not email:
        embedded = _object(document.get("_embedded")) or {}
        emails = [_object(item) or {} for item in _list(embedded.get("emails"))]
        email = next((item.get("value") for item in emails if item.get("value")), None)
    return {
        "id": help_scout_id(document.get("id")),
        "email": _email(email),
        "first_name": _text(document.get("first") or document.get("firstName"), 200),
        "last_name": _text(document.get("last") or document.get("lastName"), 200),
        "modified_at": parse_time(document.get("updatedAt"))
        or parse_time(document.get("createdAt")),
    }


def help_scout_id(value: Any) -> int | None:
    """``value`` as an id a row can have (1 to :data:`~deskside.insights.models.MAX_ID`;
    a number or a string of digits, as Help Scout sends both), else ``None``."""
    if isinstance(value, str):
        return row_id(value.strip())
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID:
        return value
    return None


def clean_text(text: str) -> str:
    """``text`` as every database stores it: without NUL characters (PostgreSQL refuses them)
    and with lone surrogates (which no encoding can write) replaced."""
    text = text.replace("\x00", "")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode(errors="replace").decode()
    return text


def html_to_text(html: str) -> str:
    """The text of a message body: line breaks where the HTML had them, no markup, no
    character references, runs of blank lines and spaces squeezed."""
    html = clean_text(html)
    if "<" not in html and "&" not in html:
        return _squeeze(html)
    try:
        root = lxml.html.fragment_fromstring(html, create_parent="div")
    except (etree.ParserError, ValueError):  # nothing but whitespace or comments
        return ""
    for hidden in root.xpath("//script|//style|//head"):
        hidden.drop_tree()
    for element in root.iter("br", *_BLOCKS):
        element.tail = "\n" + (element.tail or "")
    return _squeeze(root.text_content())


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 time (``2024-01-31T09:00:00Z``) as aware UTC; ``None`` if it is not one."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or one that leaves the calendar in UTC
        return None


def _squeeze(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r", "").split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def _text(value: Any, limit: int | None = None) -> str | None:
    """A string field, cleaned (:func:`clean_text`) and cut to its column's ``limit``;
    ``None`` when it is not a string or is empty."""
    if not isinstance(value, str):
        return None
    return clean_text(value)[:limit] or None


def _email(value: Any) -> str | None:
    text = _text(value)
    return text.strip().lower()[:320] if text and "@" in text else None


def _object(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
