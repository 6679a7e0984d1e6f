"""The insights commands that read and work the store: ``conversations``, ``events`` and
``worker``.

Like every insights command module, this one imports only light modules at the top; what a
command needs (the store, SQLAlchemy, the worker) is imported when it runs, so that
``deskside --help`` and the sidebar commands never load the insights stack.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from deskside.console import ConfigOption, err, fail, out, report_config_error
from deskside.errors import ConfigError

if TYPE_CHECKING:
    from deskside.insights import queries
    from deskside.insights.settings import InsightsSettings
    from deskside.insights.store import Store

__all__ = ["DatabaseOption", "insights_context", "register", "run_with_store"]

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


def insights_context(
    config: str | Path | None, database: str | None
) -> tuple[InsightsSettings, Store]:
    """The ``[insights]`` settings of ``config`` (if that file exists) and an unopened store."""
    from deskside.config import load_insights_settings
    from deskside.insights.store import Store, database_url

    try:
        settings = load_insights_settings(config)
    except ConfigError as exc:
        report_config_error(exc)
    try:
        url = database_url(database, settings)
        _refuse_a_missing_folder(url)
        return settings, Store(url)
    except ValueError as exc:
        fail(f"insights database: {exc}")


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
    """Open ``store``, run ``work`` with it, close it; a database error exits with status 2."""
    from sqlalchemy.exc import SQLAlchemyError

    async def main() -> T:
        try:
            await store.open()
            return await work(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(main())
    except (SQLAlchemyError, OSError) as exc:
        fail(f"insights database: {str(exc).splitlines()[0]}")


def conversations(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 100,
) -> None:
    """List the stored conversations (from webhooks and imports), newest first."""
    from deskside.insights import queries

    _, store = insights_context(config, database)

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
    status: Annotated[
        Literal["pending", "done", "parked"] | None, typer.Option(help="Only these.")
    ] = None,
    retry: Annotated[bool, typer.Option("--retry", help="Queue parked events again.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """The webhook inbox: counts by status, and the latest events with their errors."""
    from deskside.insights import queries

    _, store = insights_context(config, database)

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
    drain: Annotated[
        bool, typer.Option("--drain", help="Stop when no event is due instead of waiting.")
    ] = False,
) -> None:
    """Process stored webhook events (besides, or instead of, the server's own worker)."""
    from deskside.insights.worker import Worker

    settings, store = insights_context(config, database)
    processor = Worker(store, attempts=settings.worker_attempts)

    async def work(store: Store) -> int:
        if not drain:
            await processor.run()
        total = 0
        while processed := await processor.run_once():
            total += processed
        return total

    try:
        total = run_with_store(store, work)
    except KeyboardInterrupt:
        err.print("Stopped; unfinished events stay pending for the next run.")
        raise typer.Exit(130) from None
    out.print(f"{total} event(s) processed.")


def register(app: typer.Typer) -> None:
    """Add the insights commands to ``app``."""
    for command in (conversations, events, worker):
        app.command()(command)
