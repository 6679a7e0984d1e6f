"""The insights commands that read and work the store: ``conversations``, ``events`` and
``worker``; and what every insights command shares: ``--database``, ``--workspace`` and
opening the store of a workspace.

Like every insights command module, this one imports only light modules at the top; what a
command needs (the store, SQLAlchemy, the worker) is imported when it runs, so that
``deskside --help`` and the sidebar commands never load the insights stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from deskside.console import ConfigOption, err, fail, out, report_config_error
from deskside.errors import ConfigError
from deskside.insights import DEFAULT_WORKSPACE

if TYPE_CHECKING:
    from deskside.insights.analysis import queries
    from deskside.insights.settings import InsightsSettings
    from deskside.insights.store import Store

__all__ = [
    "DatabaseOption",
    "EveryWorkspaceOption",
    "WorkspaceOption",
    "insights_context",
    "register",
    "require_workspace",
    "require_workspace_of",
    "run_with_store",
    "workspace_flag",
    "workspace_stores",
]

T = TypeVar("T")
_DEFAULT_CONFIG = Path("deskside.toml")

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="DESKSIDE_DATABASE",
        help="The insights database URL. Default: \\[insights] database, else insights.db in "
        "the data directory.",
        show_default=False,
    ),
]
WorkspaceOption = Annotated[
    str,
    typer.Option(
        "--workspace",
        "-w",
        envvar="DESKSIDE_WORKSPACE",
        help="The workspace (one Help Scout account and its data): deskside workspaces list.",
    ),
]
EveryWorkspaceOption = Annotated[
    str | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar="DESKSIDE_WORKSPACE",
        help="Only this workspace. Default: every workspace.",
        show_default=False,
    ),
]


def insights_context(
    config: str | Path | None, database: str | None, workspace: str = DEFAULT_WORKSPACE
) -> tuple[InsightsSettings, Store]:
    """The ``[insights]`` settings of ``config`` (if that file exists) as ``workspace`` sees
    them, and that workspace's unopened store; :func:`run_with_store` checks that it exists.
    A name no workspace can have exits with status 2."""
    from deskside.config import load_insights_settings
    from deskside.insights.store import Store, database_url
    from deskside.insights.workspaces import NAME

    if workspace != DEFAULT_WORKSPACE and not NAME.fullmatch(workspace):
        _no_such_workspace(workspace)
    try:
        settings = load_insights_settings(config)
    except ConfigError as exc:
        report_config_error(exc)
    try:
        url = database_url(database, settings)
        _refuse_a_missing_folder(url)
        store = Store(url, workspace=workspace)
    except ValueError as exc:
        fail(f"insights database: {exc}")
    return settings.of_workspace(workspace), store


def workspace_flag(workspace: str) -> str:
    """`` --workspace NAME`` for the commands a message suggests, or nothing for the default
    workspace."""
    return "" if workspace == DEFAULT_WORKSPACE else f" --workspace {workspace}"


async def require_workspace(control: Store, name: str) -> None:
    """Exit with status 2 unless workspace ``name`` exists (``control``: the default
    workspace's store, open)."""
    from deskside.insights.workspaces import Workspaces

    if not await Workspaces(control).exists(name):
        _no_such_workspace(name)


def _no_such_workspace(name: str) -> NoReturn:
    fail(f"no workspace is called {name[:40]!r}: `deskside workspaces list`")


@contextlib.asynccontextmanager
async def workspace_stores(control: Store, only: str | None = None) -> AsyncIterator[list[Store]]:
    """The open stores of workspace ``only`` or, without it, of every workspace (the default
    one first); ``control``: the default workspace's store, open, and left open after. An
    unknown ``only`` exits with status 2."""
    from deskside.insights.workspaces import Workspaces

    workspaces = Workspaces(control)
    if only is not None:
        await require_workspace(control, only)
    names = [only] if only is not None else await workspaces.names()
    async with contextlib.AsyncExitStack() as stack:
        stores = []
        for name in names:
            store = workspaces.store(name)
            if store is not control:
                stack.push_async_callback(store.aclose)
                await store.open()
            stores.append(store)
        yield stores


def _refuse_a_missing_folder(url: str) -> None:
    """Exit with status 2 when ``url`` is an SQLite file in a folder that does not exist: the
    path is most likely mistyped."""
    from sqlalchemy import make_url

    parsed = make_url(url)
    path = parsed.database or ""
    if (
        parsed.get_backend_name() != "sqlite"
        or path in ("", ":memory:")
        or path.startswith("file:")
    ):
        return
    folder = Path(path).parent
    if not folder.is_dir():
        fail(f"insights database {path}: the folder {folder} does not exist; create it first")


def run_with_store(store: Store, work: Callable[[Store], Awaitable[T]]) -> T:
    """Open ``store``, run ``work`` with it, close it. A database error, or a workspace that
    does not exist (checked before its database is created), exits with status 2."""
    from sqlalchemy.exc import SQLAlchemyError

    async def main() -> T:
        try:
            await require_workspace_of(store)
            await store.open()
            return await work(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(main())
    except (SQLAlchemyError, OSError) as exc:
        fail(f"insights database: {str(exc).splitlines()[0]}")


async def require_workspace_of(store: Store) -> None:
    """Exit with status 2 when the workspace of ``store`` does not exist, before its
    database is created."""
    from deskside.insights.store import Store

    if store.workspace == DEFAULT_WORKSPACE:
        return
    control = Store(store.database_url)
    try:
        await control.open()
        await require_workspace(control, store.workspace)
    finally:
        await control.aclose()


def conversations(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
) -> None:
    """List the stored conversations (from webhooks and imports), newest first."""
    from deskside.insights.analysis import queries

    _, store = insights_context(config, database, workspace)

    async def read(store: Store) -> list[queries.ConversationSummary]:
        async with store.read() as session:
            return await queries.list_conversations(session, limit=limit)

    found = run_with_store(store, read)
    if as_json:
        out.print_json(json.dumps([item.model_dump(mode="json") for item in found]))
        return
    table = Table("id", "number", "subject", "customer", "messages", "status")
    for item in found:
        table.add_row(
            str(item.id),
            str(item.number or ""),
            Text(item.subject),
            Text(item.customer or ""),
            str(item.messages),
            item.status or "",
        )
    out.print(table)
    if not found:
        err.print("No conversations stored yet: `deskside import` or send webhooks.")


def events(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    status: Annotated[
        Literal["pending", "done", "parked"] | None, typer.Option(help="Only these.")
    ] = None,
    retry: Annotated[bool, typer.Option("--retry", help="Queue parked events again.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The webhook inbox: counts by status, and the latest events with their errors."""
    from deskside.insights.analysis import queries

    _, store = insights_context(config, database, workspace)

    async def read(store: Store) -> tuple[int, dict[str, int], list[queries.EventSummary]]:
        async with store.session() as session:
            requeued = await queries.retry_parked(session) if retry else 0
            counts = await queries.event_counts(session)
            return requeued, counts, await queries.list_events(session, status=status)

    requeued, counts, latest = run_with_store(store, read)
    if as_json:
        document = {"counts": counts, "events": [e.model_dump(mode="json") for e in latest]}
        out.print_json(json.dumps(document))
        return
    if retry:
        out.print(f"{requeued} parked event(s) queued again.")
    out.print("  ".join(f"{name}: {count}" for name, count in counts.items()))
    table = Table("id", "event", "status", "attempts", "received", "error")
    for event in latest:
        table.add_row(
            str(event.id),
            event.event,
            event.status,
            str(event.attempts),
            f"{event.received_at:%Y-%m-%d %H:%M:%S}",
            Text(event.last_error or ""),
        )
    out.print(table)


def worker(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: EveryWorkspaceOption = None,
    drain: Annotated[
        bool, typer.Option("--drain", help="Stop when no event is due instead of waiting.")
    ] = False,
) -> None:
    """Process stored webhook events (besides, or instead of, the server's own worker).

    Without --workspace, it works through every workspace there is, all at once, and takes
    up a workspace added later within seconds (with --drain: those there when it starts).

    Ctrl-C or SIGTERM stops it after the batch in hand (exit status 130 or 0); a second Ctrl-C
    stops at once. Unfinished events stay pending for the next run either way.
    """
    from deskside.insights.ingest.every_workspace import EveryWorkspace
    from deskside.insights.ingest.worker import Worker
    from deskside.insights.stopping import GracefulStop

    settings, control = insights_context(config, database)
    stopping: list[Callable[[], None]] = []

    def stop_everything() -> None:
        for stop_one in stopping:
            stop_one()

    stop = GracefulStop(on_stop=stop_everything)

    def attempts_of(name: str) -> int:
        return settings.of_workspace(name).worker_attempts

    async def drained(processor: Worker) -> int:
        total = 0
        while not stop.requested and (processed := await processor.run_once()):
            total += processed
        return total

    async def work(control: Store) -> dict[str, int]:
        if workspace is None and not drain:
            every = EveryWorkspace(control, attempts_of)
            stopping.append(every.stop)
            with stop:
                return await every.run()
        async with workspace_stores(control, workspace) as stores:
            processors = [Worker(store, attempts=attempts_of(store.workspace)) for store in stores]
            stopping.extend(processor.stop for processor in processors)
            with stop:
                runs = (drained(p) if drain else p.run() for p in processors)
                totals = await asyncio.gather(*runs)
        return {store.workspace: total for store, total in zip(stores, totals, strict=True)}

    try:
        totals = run_with_store(control, work)
    except KeyboardInterrupt:
        err.print("Stopped; unfinished events stay pending for the next run.")
        raise typer.Exit(130) from None
    if len(totals) > 1:
        out.print("  ".join(f"{name}: {total}" for name, total in totals.items()))
    out.print(f"{sum(totals.values())} event(s) processed.")
    if stop.requested:
        err.print("Stopped; unfinished events stay pending for the next run.")
        raise typer.Exit(130 if stop.requested == signal.SIGINT else 0)


def register(app: typer.Typer) -> None:
    """Add the insights commands to ``app``."""
    for command in (conversations, events, worker):
        app.command()(command)
