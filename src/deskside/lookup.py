"""What a helpdesk asked about: the customer's addresses, normalised once for every source."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MAX_EMAILS", "Lookup", "normalise_emails"]

MAX_EMAILS = 20
"""More addresses than this in one request are ignored: no real customer has them."""

_MAX_EMAIL_LENGTH = 320


@dataclass(frozen=True)
class Lookup:
    """The customer a helpdesk asked about.

    ``emails`` is never empty, lower-cased, trimmed and de-duplicated, in the order sent
    (with folded ``name@`` forms after their ``name+tag@`` originals). ``context`` holds what
    else the helpdesk said (mailbox, conversation, agent) for expressions and hooks.
    """

    emails: tuple[str, ...]
    name: str | None = None
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def email(self) -> str:
        """The first address: the one the helpdesk considers primary."""
        return self.emails[0]


def normalise_emails(raw: Iterable[object], *, fold_plus: bool = True) -> tuple[str, ...]:
    """Trim, lower-case and de-duplicate addresses, dropping anything that is not one.

    With ``fold_plus`` an address ``name+tag@host`` is followed by ``name@host``, so a
    customer's plus-addressed second account and their main one are both looked up.
    """
    seen: dict[str, None] = {}
    for value in raw:
        if not isinstance(value, str):
            continue
        email = value.strip().lower()
        if not _looks_like_email(email):
            continue
        seen.setdefault(email, None)
        if fold_plus:
            local, _, domain = email.rpartition("@")
            base, plus, _tag = local.partition("+")
            if plus and base:
                seen.setdefault(f"{base}@{domain}", None)
        if len(seen) >= MAX_EMAILS:
            break
    return tuple(seen)[:MAX_EMAILS]


def _looks_like_email(value: str) -> bool:
    if not value or len(value) > _MAX_EMAIL_LENGTH or " " in value:
        return False
    if not value.isprintable():  # control characters, lone surrogates (cannot be encoded)
        return False
    local, at, domain = value.rpartition("@")
    return bool(at and local and domain and "." in domain.strip("."))
