"""Mailbox API 2.0 documents (from the API or a webhook body) → rows for the store.

Everything here is defensive: a field Help Scout leaves out, or sends with another type, becomes
``None`` rather than an error, because one odd conversation must not stop an import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import lxml.html
from lxml import etree

__all__ = [
    "ConversationRecord",
    "CustomerRecord",
    "conversation_record",
    "customer_record",
    "html_to_text",
    "parse_time",
]

CustomerRecord = dict[str, Any]
"""``id``, ``email``, ``first_name``, ``last_name`` (``None`` when not sent)."""

_BLOCKS = ("p", "div", "li", "blockquote", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "ul")
_BLANK_RUNS = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\u00a0]+")


@dataclass(frozen=True)
class ConversationRecord:
    """One conversation's row, its threads' rows and its primary customer."""

    conversation: dict[str, Any]
    threads: list[dict[str, Any]] = field(default_factory=list)
    customer: CustomerRecord | None = None


def conversation_record(document: dict[str, Any]) -> ConversationRecord:
    """The rows for a Mailbox API conversation (``_embedded.threads`` when present).

    Raises ``ValueError`` when the document has no integer ``id``.
    """
    conversation_id = _int(document.get("id"))
    if conversation_id is None:
        raise ValueError("the conversation has no id")
    customer = _object(document.get("primaryCustomer")) or _object(document.get("customer"))
    customer_row = customer_record(customer) if customer and _int(customer.get("id")) else None
    tags = [
        str(tag.get("tag") or tag.get("name") or "") if isinstance(tag, dict) else str(tag)
        for tag in _list(document.get("tags"))
    ]
    created = parse_time(document.get("createdAt"))
    row = {
        "id": conversation_id,
        "number": _int(document.get("number")),
        "mailbox_id": _int(document.get("mailboxId")),
        "customer_id": customer_row["id"] if customer_row else None,
        "customer_email": customer_row["email"] if customer_row else None,
        "subject": _str(document.get("subject")) or "",
        "status": _str(document.get("status")),
        "state": _str(document.get("state")),
        "type": _str(document.get("type")),
        "tags": [tag for tag in tags if tag],
        "created_at": created,
        "modified_at": parse_time(document.get("userUpdatedAt")) or created,
    }
    embedded = _object(document.get("_embedded")) or {}
    threads = [
        thread
        for item in _list(embedded.get("threads"))
        if (thread := thread_row(conversation_id, item)) is not None
    ]
    return ConversationRecord(row, threads, customer_row)


def thread_row(conversation_id: int, document: Any) -> dict[str, Any] | None:
    """A thread's row, or ``None`` for something that is not a thread with an id."""
    thread = _object(document)
    if thread is None or _int(thread.get("id")) is None:
        return None
    kind = _str(thread.get("type")) or "unknown"
    author = _object(thread.get("createdBy")) or {}
    by = _str(author.get("type"))
    if kind == "lineitem":
        who = "system"  # an activity line ("assigned to …"), not a message
    elif by == "customer" or (by is None and kind == "customer"):
        who = "customer"
    elif by == "user" or kind in ("message", "note", "chat", "phone"):
        who = "agent"
    else:
        who = "system"
    return {
        "id": _int(thread.get("id")),
        "conversation_id": conversation_id,
        "type": kind[:30],
        "author": who,
        "author_email": _email(author.get("email")),
        "text": html_to_text(_str(thread.get("body")) or ""),
        "created_at": parse_time(thread.get("createdAt")),
    }


def customer_record(document: dict[str, Any]) -> CustomerRecord:
    """A customer's row from a ``primaryCustomer`` or a ``customer.*`` webhook body."""
    email = document.get("email")
    if not email:
        embedded = _object(document.get("_embedded")) or {}
        emails = [_object(item) or {} for item in _list(embedded.get("emails"))]
        email = next((item.get("value") for item in emails if item.get("value")), None)
    return {
        "id": _int(document.get("id")),
        "email": _email(email),
        "first_name": _str(document.get("first") or document.get("firstName")),
        "last_name": _str(document.get("last") or document.get("lastName")),
    }


def html_to_text(html: str) -> str:
    """The text of a message body: line breaks where the HTML had them, no markup, no
    character references, runs of blank lines and spaces squeezed."""
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
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _squeeze(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.replace("\r", "").split("\n")]
    return _BLANK_RUNS.sub("\n\n", "\n".join(lines)).strip()


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _email(value: Any) -> str | None:
    return value.strip().lower()[:320] if isinstance(value, str) and "@" in value else None


def _object(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
