"""The people of the web UI and the insights API, in the insights store: who they are, their
role (per workspace; one, ``default``, for now), their one-time invitations, their API tokens,
and the audit of who logged in and who changed whom.

Invitation links and API tokens are random; only their SHA-256 is stored. The audit shares the
erasure audit's table (``erasure_audit``) and, like it, never holds customers' data.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from deskside.insights import audit
from deskside.insights.models import (
    DEFAULT_WORKSPACE,
    ErasureAudit,
    Invitation,
    Membership,
    Person,
    PersonToken,
    utcnow,
)
from deskside.insights.store import Store
from deskside.lookup import normalise_emails
from deskside.web.guard import Member, token_digest
from deskside.web.roles import Role

__all__ = [
    "INVITATION_HOURS",
    "PEOPLE_ACTIONS",
    "Listed",
    "People",
    "PersonError",
    "TokenListed",
    "invitation_url",
]

INVITATION_HOURS = 72
TOKEN_PREFIX = "dsk_"  # noqa: S105 - how a token begins, not a secret
PEOPLE_ACTIONS = (
    "login",
    "login_failed",
    "logout_all",
    "person_added",
    "person_removed",
    "role_changed",
    "invitation_used",
    "token_created",
    "token_revoked",
)
"""The audit's actions about people (the others are erasures: ``forget``, ``retention``, …)."""


class PersonError(ValueError):
    """What cannot be done, said for the person asking (no such person, already there, …)."""


@dataclass(frozen=True)
class Listed:
    """A person as lists show them."""

    id: int
    email: str
    role: Role
    invited: bool
    """Whether they have not set a password yet."""
    created_at: datetime


@dataclass(frozen=True)
class TokenListed:
    id: int
    person: str
    name: str
    created_at: datetime


class People:
    """People of one store; every method is one short transaction."""

    def __init__(self, store: Store, workspace: str = DEFAULT_WORKSPACE) -> None:
        self.store = store
        self.workspace = workspace

    # What the guard asks on every request

    async def member(self, person_id: int) -> Member | None:
        async with self.store.read() as session:
            found = (
                await session.execute(
                    select(Person.id, Person.email, Membership.role, Person.session_generation)
                    .join(Membership, Membership.person_id == Person.id)
                    .where(Person.id == person_id, Membership.workspace == self.workspace)
                )
            ).first()
        return Member(found[0], found[1], Role.parse(found[2]), found[3]) if found else None

    async def token_member(self, digest: str) -> Member | None:
        async with self.store.read() as session:
            person = await session.scalar(
                select(PersonToken.person_id).where(PersonToken.digest == digest)
            )
        return await self.member(person) if person is not None else None

    async def login_of(self, email: str) -> tuple[Member, str | None] | None:
        """The person ``email`` names (any case) and their password hash (None: invited, no
        password yet); None when nobody has that address."""
        address = _address(email)
        if address is None:
            return None
        async with self.store.read() as session:
            found = (
                await session.execute(
                    select(Person.id, Person.password_hash).where(Person.email == address)
                )
            ).first()
        if found is None:
            return None
        member = await self.member(found[0])
        return (member, found[1]) if member is not None else None

    # Management

    async def add(self, email: str, role: Role, *, by: str) -> tuple[int, str]:
        """Add ``email`` with ``role``; their id and a one-time invitation token (valid
        :data:`INVITATION_HOURS` hours)."""
        address = _address(email)
        if address is None:
            raise PersonError(f"{email!r} is not an email address")
        try:
            async with self.store.session() as session:
                person = Person(email=address, session_generation=0, created_at=utcnow())
                session.add(person)
                await session.flush()
                session.add(
                    Membership(person_id=person.id, workspace=self.workspace, role=role.name)
                )
                token = await _invite(session, person.id)
                _audit(session, by, "person_added", f"person {person.id} as {role.name}")
        except IntegrityError:
            raise PersonError(f"{address} is already a person here") from None
        return person.id, token

    async def invite_again(self, email: str, *, by: str) -> str:
        """A new invitation token for ``email`` (to set a new password)."""
        async with self.store.session() as session:
            person = await _person(session, email)
            token = await _invite(session, person.id)
            _audit(session, by, "person_added", f"person {person.id} invited again")
        return token

    async def invitation(self, token: str) -> str | None:
        """The email of the person a valid (unused, unexpired) invitation token invites."""
        async with self.store.read() as session:
            return await session.scalar(
                select(Person.email)
                .join(Invitation, Invitation.person_id == Person.id)
                .where(
                    Invitation.digest == token_digest(token),
                    Invitation.used_at.is_(None),
                    Invitation.expires_at > utcnow(),
                )
            )

    async def accept(self, token: str, password_hash: str) -> Member | None:
        """Use the invitation ``token`` to set the person's password (ending their sessions);
        None when the token is unknown, used or expired. It works once."""
        now = utcnow()
        async with self.store.session() as session:
            person = await session.scalar(
                update(Invitation)
                .where(
                    Invitation.digest == token_digest(token),
                    Invitation.used_at.is_(None),
                    Invitation.expires_at > now,
                )
                .values(used_at=now)
                .returning(Invitation.person_id)
            )
            if person is None:
                return None
            await session.execute(
                update(Person)
                .where(Person.id == person)
                .values(
                    password_hash=password_hash,
                    session_generation=Person.session_generation + 1,
                )
            )
            _audit(session, f"person:{person}", "invitation_used", f"person {person}")
        return await self.member(person)

    async def listed(self) -> list[Listed]:
        async with self.store.read() as session:
            rows = await session.execute(
                select(Person.id, Person.email, Membership.role, Person.password_hash)
                .add_columns(Person.created_at)
                .join(Membership, Membership.person_id == Person.id)
                .where(Membership.workspace == self.workspace)
                .order_by(Person.email)
            )
            return [
                Listed(pid, email, Role.parse(role), hashed is None, created)
                for pid, email, role, hashed, created in rows
            ]

    async def set_role(self, email: str, role: Role, *, by: str) -> None:
        async with self.store.session() as session:
            person = await _person(session, email)
            await session.execute(
                update(Membership)
                .where(Membership.person_id == person.id, Membership.workspace == self.workspace)
                .values(role=role.name)
            )
            _audit(session, by, "role_changed", f"person {person.id} to {role.name}")

    async def remove(self, email: str, *, by: str) -> None:
        """Remove the person, their tokens and invitations; their sessions end at once."""
        async with self.store.session() as session:
            person = await _person(session, email)
            for table in (PersonToken, Invitation, Membership):
                await session.execute(delete(table).where(table.person_id == person.id))
            await session.execute(delete(Person).where(Person.id == person.id))
            _audit(session, by, "person_removed", f"person {person.id}")

    async def log_out_everywhere(self, person_id: int, *, by: str) -> None:
        async with self.store.session() as session:
            await session.execute(
                update(Person)
                .where(Person.id == person_id)
                .values(session_generation=Person.session_generation + 1)
            )
            _audit(session, by, "logout_all", f"person {person_id}")

    # API tokens

    async def create_token(self, email: str, name: str, *, by: str) -> tuple[int, str]:
        """A new API token of ``email`` (with their role): its id and the token, shown once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.store.session() as session:
            person = await _person(session, email)
            row = PersonToken(
                person_id=person.id,
                digest=token_digest(token),
                name=name.strip()[:100] or "token",
                created_at=utcnow(),
            )
            session.add(row)
            await session.flush()
            _audit(session, by, "token_created", f"token {row.id} of person {person.id}")
        return row.id, token

    async def tokens(self) -> list[TokenListed]:
        async with self.store.read() as session:
            rows = await session.execute(
                select(PersonToken.id, Person.email, PersonToken.name, PersonToken.created_at)
                .join(Person, Person.id == PersonToken.person_id)
                .order_by(PersonToken.id)
            )
            return [TokenListed(*row) for row in rows]

    async def revoke_token(self, token_id: int, *, by: str) -> None:
        async with self.store.session() as session:
            gone = await session.scalar(
                delete(PersonToken)
                .where(PersonToken.id == token_id)
                .returning(PersonToken.person_id)
            )
            if gone is None:
                raise PersonError(f"there is no token {token_id}")
            _audit(session, by, "token_revoked", f"token {token_id} of person {gone}")

    # The audit

    async def record(self, by: str, action: str, detail: str) -> None:
        """An audit row: now, ``by`` whom, ``action`` (one of :data:`PEOPLE_ACTIONS`)."""
        async with self.store.session() as session:
            _audit(session, by, action, detail)

    async def audit(self, limit: int = 100) -> list[ErasureAudit]:
        """The newest audit rows about people first."""
        async with self.store.read() as session:
            newest = (
                select(ErasureAudit)
                .where(ErasureAudit.action.in_(PEOPLE_ACTIONS))
                .order_by(ErasureAudit.id.desc())
                .limit(limit)
            )
            return list(await session.scalars(newest))


def invitation_url(base: str, token: str) -> str:
    """Where the person invited with ``token`` sets their password (``base``: the server's
    address as people reach it). The token is in the query string, which no log line holds."""
    return f"{base.rstrip('/')}/ui/invitation?token={token}"


def _address(email: str) -> str | None:
    found = normalise_emails([email[:320]], fold_plus=False)
    return found[0] if found else None


async def _person(session: AsyncSession, email: str) -> Person:
    address = _address(email)
    person = (
        await session.scalar(select(Person).where(Person.email == address)) if address else None
    )
    if person is None:
        raise PersonError(f"there is no person {email}")
    return person


async def _invite(session: AsyncSession, person_id: int) -> str:
    token = secrets.token_urlsafe(32)
    expires = utcnow() + timedelta(hours=INVITATION_HOURS)
    await session.execute(
        delete(Invitation).where(Invitation.person_id == person_id, Invitation.used_at.is_(None))
    )
    session.add(Invitation(digest=token_digest(token), person_id=person_id, expires_at=expires))
    return token


def _audit(session: AsyncSession, by: str, action: str, detail: str) -> None:
    audit.record(session, by, action, detail)
