"""``deskside workspaces add|list|remove``: the workspaces of an instance, each one Help Scout
account with all deskside keeps about it. Add them with :func:`register`.

The list lives in the default workspace's store; each workspace's data in a database of its
own (:mod:`deskside.insights.workspaces`). Like every insights command module, the store is
imported when a command runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from deskside.console import CommandGroup, ConfigOption, fail, out
from deskside.insights import DEFAULT_WORKSPACE
from deskside.insights.cli import (
    DatabaseOption,
    insights_context,
    require_workspace,
    run_with_store,
    workspace_stores,
)

if TYPE_CHECKING:
    from deskside.insights.store import Store

__all__ = ["register", "workspaces_app"]

_DEFAULT_CONFIG = Path("deskside.toml")

workspaces_app = typer.Typer(
    help="Workspaces: one Help Scout account each, with its own conversations, topics, "
    "reports and people's roles. Commands take --workspace NAME.",
    no_args_is_help=True,
    cls=CommandGroup,
)

NameArgument = Annotated[
    str,
    typer.Argument(
        metavar="NAME",
        help="1-30 lower-case letters, digits or hyphens, starting with a letter.",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class _Listed:
    name: str
    conversations: int
    people: int
    """How many people have a role there."""


@workspaces_app.command("add")
def add(
    name: NameArgument,
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
) -> None:
    """Add a workspace with an empty database of its own (a file beside the insights database,
    or a PostgreSQL schema in it)."""
    from deskside.insights.helpscout.webhook_paths import webhook_path
    from deskside.insights.workspaces import Workspaces, check_name

    try:
        check_name(name)
    except ValueError as exc:
        fail(str(exc))
    _, control = insights_context(config, database)
    if not run_with_store(control, lambda control: Workspaces(control).add(name)):
        out.print(Text(f"✗ there is a workspace {name} already", style="red"))
        raise typer.Exit(1)
    out.print(Text(f"✓ added the workspace {name}", style="green"))
    out.print(
        f"Next: `deskside connect helpscout --workspace {name}` (its webhooks go to "
        f"{webhook_path(name)}), and `deskside users add EMAIL --role R --workspace {name}`."
    )


@workspaces_app.command("list")
def list_workspaces(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """Every workspace, the default one first: its conversations and how many people have a
    role there."""
    found = run_with_store(insights_context(config, database)[1], _listed)
    if as_json:
        out.print_json(json.dumps([asdict(item) for item in found]))
        return
    table = Table("name", "conversations", "people")
    for item in found:
        table.add_row(Text(item.name), str(item.conversations), str(item.people))
    out.print(table)


async def _listed(control: Store) -> list[_Listed]:
    from sqlalchemy import func, select

    from deskside.insights.models import Conversation, Membership

    async with control.read() as session:
        rows = await session.execute(
            select(Membership.workspace, func.count()).group_by(Membership.workspace)
        )
        people = {workspace: int(count) for workspace, count in rows}
    found = []
    async with workspace_stores(control) as stores:
        for store in stores:
            async with store.read() as session:
                count = await session.scalar(select(func.count()).select_from(Conversation))
            found.append(_Listed(store.workspace, int(count or 0), people.get(store.workspace, 0)))
    return found


@workspaces_app.command("remove")
def remove(
    name: NameArgument,
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a workspace and ALL its data for good: conversations, customers, topics, reports,
    corrections, its Help Scout connection and audit, and its people's roles and tokens there.

    Run `deskside disconnect helpscout --workspace NAME` first to delete its webhook in Help
    Scout. The default workspace cannot be removed.
    """
    from deskside.insights.workspaces import Workspaces

    if name == DEFAULT_WORKSPACE:
        fail("the default workspace cannot be removed")
    _, control = insights_context(config, database)

    async def work(control: Store) -> bool:
        await require_workspace(control, name)
        if not yes:
            typer.confirm(
                f"Delete the workspace {name} and all its data for good? This cannot be undone",
                abort=True,
            )
        return await Workspaces(control).remove(name)

    if not run_with_store(control, work):
        fail(f"the workspace {name} was removed meanwhile")
    out.print(Text(f"✓ removed the workspace {name}: all its data is deleted", style="green"))


def register(app: typer.Typer) -> None:
    """Add ``workspaces`` to ``app``."""
    app.add_typer(workspaces_app, name="workspaces")
