"""The people of the web UI and the insights API, in the default workspace's store: who they
are, their role in each workspace they belong to, their one-time invitations, their API tokens
(each acting in one workspace), and the audit of who logged in and who changed whom.

Invitation links and API tokens are random; only their SHA-256 is stored. The audit shares the
erasure audit's table (``erasure_audit``) and, like it, never holds customers' data.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, update
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
from deskside.members import Member, Role, token_digest

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
    """Whether they have not set a password yet, and were invited to."""
    created_at: datetime
    single_sign_on: bool = False
    """Whether they have no password and were never invited: they sign in with single sign-on."""

    @property
    def status(self) -> str:
        """``active``, ``invited`` or ``single sign-on``, as lists say."""
        return "single sign-on" if self.single_sign_on else "invited" if self.invited else "active"


@dataclass(frozen=True)
class TokenListed:
    id: int
    person: str
    name: str
    created_at: datetime


class People:
    """The people of workspace ``workspace`` (``store``: the default workspace's, where all
    people are); every method is one short transaction."""

    def __init__(self, store: Store, workspace: str = DEFAULT_WORKSPACE) -> None:
        self.store = store
        self.workspace = workspace

    def of(self, workspace: str) -> People:
        """The same people's directory, for ``workspace``."""
        return self if workspace == self.workspace else People(self.store, workspace)

    # What the guard asks on every request

    async def member(self, person_id: int, workspace: str | None = None) -> Member | None:
        """The person with their role in ``workspace`` (default: this directory's); None
        when they do not belong to it."""
        workspace = workspace or self.workspace
        async with self.store.read() as session:
            found = (
                await session.execute(
                    select(Person.id, Person.email, Membership.role, Person.session_generation)
                    .join(Membership, Membership.person_id == Person.id)
                    .where(Person.id == person_id, Membership.workspace == workspace)
                )
            ).first()
        if found is None:
            return None
        return Member(found[0], found[1], Role.parse(found[2]), found[3], workspace)

    async def token_member(self, digest: str) -> Member | None:
        """The token's person with their role in the token's workspace."""
        async with self.store.read() as session:
            found = (
                await session.execute(
                    select(PersonToken.person_id, PersonToken.workspace).where(
                        PersonToken.digest == digest
                    )
                )
            ).first()
        return await self.member(found[0], found[1]) if found is not None else None

    async def workspaces_of(self, person_id: int) -> list[str]:
        """The workspaces the person belongs to, the default one first, the others by name."""
        async with self.store.read() as session:
            names = await session.scalars(
                select(Membership.workspace).where(Membership.person_id == person_id)
            )
            return sorted(names, key=lambda name: (name != DEFAULT_WORKSPACE, name))

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
        if member is None:  # not of this directory's workspace: their first one
            joined = await self.workspaces_of(found[0])
            member = await self.member(found[0], joined[0]) if joined else None
        return (member, found[1]) if member is not None else None

    # Management

    async def add(
        self, email: str, role: Role, *, by: str, invite: bool = True
    ) -> tuple[int, str | None]:
        """Add ``email`` to this workspace with ``role``: their id and a one-time invitation
        token (valid :data:`INVITATION_HOURS` hours), or None for the token when they are a
        person of another workspace already (they log in as before) or ``invite`` is False (a
        newcomer of single sign-on: no password to set)."""
        address = _address(email)
        if address is None:
            raise PersonError(f"{email!r} is not an email address")
        token: str | None = None
        try:
            async with self.store.session() as session:
                person = await session.scalar(select(Person).where(Person.email == address))
                if person is None:
                    person = Person(email=address, session_generation=0, created_at=utcnow())
                    session.add(person)
                    await session.flush()
                    token = await _invite(session, person.id) if invite else None
                session.add(
                    Membership(person_id=person.id, workspace=self.workspace, role=role.name)
                )
                await session.flush()
                self._audit(session, by, "person_added", f"person {person.id} as {role.name}")
        except IntegrityError:
            raise PersonError(f"{address} is already a person here") from None
        return person.id, token

    async def invite_again(self, email: str, *, by: str) -> str:
        """A new invitation token for ``email`` (to set a new password)."""
        async with self.store.session() as session:
            person = await self._member_row(session, email)
            token = await _invite(session, person.id)
            self._audit(session, by, "person_added", f"person {person.id} invited again")
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
            self._audit(session, f"person:{person}", "invitation_used", f"person {person}")
        joined = await self.workspaces_of(person)
        return await self.member(person, joined[0]) if joined else None

    async def listed(self) -> list[Listed]:
        async with self.store.read() as session:
            rows = await session.execute(
                select(Person.id, Person.email, Membership.role, Person.password_hash)
                .add_columns(Person.created_at, exists().where(Invitation.person_id == Person.id))
                .join(Membership, Membership.person_id == Person.id)
                .where(Membership.workspace == self.workspace)
                .order_by(Person.email)
            )
            return [
                Listed(
                    pid,
                    email,
                    Role.parse(role),
                    invited=hashed is None and asked,
                    created_at=created,
                    single_sign_on=hashed is None and not asked,
                )
                for pid, email, role, hashed, created, asked in rows
            ]

    async def set_role(self, email: str, role: Role, *, by: str) -> None:
        async with self.store.session() as session:
            person = await self._member_row(session, email)
            await session.execute(
                update(Membership)
                .where(Membership.person_id == person.id, Membership.workspace == self.workspace)
                .values(role=role.name)
            )
            self._audit(session, by, "role_changed", f"person {person.id} to {role.name}")

    async def remove(self, email: str, *, by: str) -> None:
        """Remove the person from this workspace with their tokens there; a person left in
        no workspace is removed with their invitations. Their sessions here end at once."""
        async with self.store.session() as session:
            person = await self._member_row(session, email)
            for table in (PersonToken, Membership):
                await session.execute(
                    delete(table).where(
                        table.person_id == person.id, table.workspace == self.workspace
                    )
                )
            left = await session.scalar(
                select(Membership.workspace).where(Membership.person_id == person.id).limit(1)
            )
            if left is None:
                await session.execute(delete(Invitation).where(Invitation.person_id == person.id))
                await session.execute(delete(PersonToken).where(PersonToken.person_id == person.id))
                await session.execute(delete(Person).where(Person.id == person.id))
            self._audit(session, by, "person_removed", f"person {person.id}")

    async def log_out_everywhere(self, person_id: int, *, by: str) -> None:
        async with self.store.session() as session:
            await session.execute(
                update(Person)
                .where(Person.id == person_id)
                .values(session_generation=Person.session_generation + 1)
            )
            self._audit(session, by, "logout_all", f"person {person_id}")

    async def _member_row(self, session: AsyncSession, email: str) -> Person:
        """The person ``email`` names, if they belong to this workspace."""
        person = await _person(session, email)
        joined = await session.scalar(
            select(Membership.role).where(
                Membership.person_id == person.id, Membership.workspace == self.workspace
            )
        )
        if joined is None:
            raise PersonError(f"{person.email} is not a person of the workspace {self.workspace}")
        return person

    def _audit(self, session: AsyncSession, by: str, action: str, detail: str) -> None:
        audit.record(session, by, action, detail, workspace=self.workspace)

    # API tokens

    async def create_token(self, email: str, name: str, *, by: str) -> tuple[int, str]:
        """A new API token of ``email``, acting in this workspace with their role here: its id
        and the token, shown once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.store.session() as session:
            person = await self._member_row(session, email)
            row = PersonToken(
                person_id=person.id,
                digest=token_digest(token),
                name=name.strip()[:100] or "token",
                workspace=self.workspace,
                created_at=utcnow(),
            )
            session.add(row)
            await session.flush()
            self._audit(session, by, "token_created", f"token {row.id} of person {person.id}")
        return row.id, token

    async def tokens(self) -> list[TokenListed]:
        async with self.store.read() as session:
            rows = await session.execute(
                select(PersonToken.id, Person.email, PersonToken.name, PersonToken.created_at)
                .join(Person, Person.id == PersonToken.person_id)
                .where(PersonToken.workspace == self.workspace)
                .order_by(PersonToken.id)
            )
            return [TokenListed(*row) for row in rows]

    async def revoke_token(self, token_id: int, *, by: str) -> None:
        async with self.store.session() as session:
            gone = await session.scalar(
                delete(PersonToken)
                .where(PersonToken.id == token_id, PersonToken.workspace == self.workspace)
                .returning(PersonToken.person_id)
            )
            if gone is None:
                raise PersonError(f"there is no token {token_id}")
            self._audit(session, by, "token_revoked", f"token {token_id} of person {gone}")

    # The audit

    async def record(self, by: str, action: str, detail: str) -> None:
        """An audit row: now, ``by`` whom, ``action`` (one of :data:`PEOPLE_ACTIONS`)."""
        async with self.store.session() as session:
            self._audit(session, by, action, detail)

    async def audit(self, limit: int = 100) -> list[ErasureAudit]:
        """The newest audit rows about this workspace's people first."""
        async with self.store.read() as session:
            newest = (
                select(ErasureAudit)
                .where(
                    ErasureAudit.action.in_(PEOPLE_ACTIONS),
                    ErasureAudit.workspace == self.workspace,
                )
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
