"""Who a person is to deskside, shared by the web UI's guard and the insights store's people:
the three roles (:class:`Role`), a person as the guard needs them (:class:`Member`) and how a
person's API token is stored (:func:`token_digest`). Neither side imports the other for these.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import IntEnum

from deskside.insights import DEFAULT_WORKSPACE

__all__ = ["Member", "Role", "token_digest"]


class Role(IntEnum):
    """Ordered: a role may do everything a lower one may."""

    viewer = 1
    editor = 2
    admin = 3

    @classmethod
    def parse(cls, name: str) -> Role:
        """The role called ``name``; ``ValueError`` naming the three otherwise."""
        try:
            return cls[name.strip().lower()]
        except KeyError:
            raise ValueError("a role is viewer, editor or admin") from None


@dataclass(frozen=True)
class Member:
    """A person as the guard needs them: id, email, role in ``workspace`` and session
    generation."""

    id: int
    email: str
    role: Role
    generation: int
    workspace: str = DEFAULT_WORKSPACE


def token_digest(token: str) -> str:
    """How a person's API token is stored: hex SHA-256 (the tokens are 32 random bytes)."""
    return hashlib.sha256(token.encode()).hexdigest()
