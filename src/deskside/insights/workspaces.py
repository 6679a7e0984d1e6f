"""Workspaces: one Help Scout account each, with everything deskside keeps about it (the
connection, mailboxes, conversations, topics, reports, classifier corrections and audit).

Each workspace's data lives in a database of its own (:func:`~deskside.insights.store.
workspace_location`: a SQLite file beside ``[insights] database``, or a PostgreSQL schema in
it), so isolation does not hang on every query remembering a filter: a workspace's
:class:`~deskside.insights.store.Store` cannot name another's rows. The default workspace is
``[insights] database`` itself, and that database also lists the other workspaces and holds
the people and their roles in each.
"""

from __future__ import annotations

import re

from sqlalchemy import delete, select

from deskside.insights.models import DEFAULT_WORKSPACE, Membership, PersonToken, Workspace
from deskside.insights.store import Store

__all__ = [
    "DEFAULT_WORKSPACE",
    "NAME",
    "UnknownWorkspace",
    "Workspaces",
    "check_name",
]

NAME = re.compile(r"[a-z][a-z0-9-]{0,29}")
"""A workspace's name: lower-case letters, digits and hyphens, starting with a letter; it
names its webhook URL (``/webhooks/helpscout/<name>``), its file or schema."""


class UnknownWorkspace(LookupError):
    """No workspace has that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no workspace is called {name[:40]!r}")
        self.name = name


def check_name(name: str) -> str:
    """``name`` when it can name a workspace; ``ValueError`` saying what one looks like."""
    if not NAME.fullmatch(name):
        raise ValueError(
            "a workspace's name is 1-30 lower-case letters, digits or hyphens, starting with a "
            "letter (e.g. acme-eu)"
        )
    return name


class Workspaces:
    """The workspaces of an instance, read from and written to the default workspace's store
    (``control``, open). Stores of the others are made with :meth:`store` and opened by the
    caller."""

    def __init__(self, control: Store) -> None:
        if control.workspace != DEFAULT_WORKSPACE:
            raise ValueError("the workspaces are listed in the default workspace's store")
        self.control = control

    async def names(self) -> list[str]:
        """Every workspace, the default one first, the others by name."""
        async with self.control.read() as session:
            others = await session.scalars(select(Workspace.name).order_by(Workspace.name))
            return [DEFAULT_WORKSPACE, *others]

    async def exists(self, name: str) -> bool:
        if name == DEFAULT_WORKSPACE:
            return True
        if not NAME.fullmatch(name):
            return False
        async with self.control.read() as session:
            return await session.get(Workspace, name) is not None

    def store(self, name: str, *, pool_size: int = 5) -> Store:
        """An unopened store of workspace ``name`` (the control store itself for the default
        one); whether the workspace exists is the caller's to check (:meth:`exists`)."""
        if name == DEFAULT_WORKSPACE:
            return self.control
        return Store(self.control.database_url, workspace=check_name(name), pool_size=pool_size)

    async def add(self, name: str) -> bool:
        """Create workspace ``name`` with an empty database; False when it exists already."""
        check_name(name)
        if await self.exists(name):
            return False
        store = self.store(name)
        try:
            await store.open()
        finally:
            await store.aclose()
        async with self.control.session() as session:
            session.add(Workspace(name=name))
        return True

    async def remove(self, name: str) -> bool:
        """Delete workspace ``name`` and all its data for good, with its people's roles and
        tokens there; False when there is no such workspace. Not the default one."""
        if name == DEFAULT_WORKSPACE:
            raise ValueError("the default workspace cannot be removed")
        if not await self.exists(name):
            return False
        async with self.control.session() as session:
            await session.execute(delete(Membership).where(Membership.workspace == name))
            await session.execute(delete(PersonToken).where(PersonToken.workspace == name))
            await session.execute(delete(Workspace).where(Workspace.name == name))
        await self.store(name).destroy()
        return True
