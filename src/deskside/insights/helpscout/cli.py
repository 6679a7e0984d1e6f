"""The Help Scout commands: ``connect helpscout``, ``disconnect helpscout``, ``mailboxes`` and
``import``. Add them with :func:`register`.

Tokens, codes and secrets are never printed. The Help Scout client, the store and the import
are imported when a command runs, not with the CLI (see :mod:`deskside.insights.cli`).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from deskside.console import ConfigOption, err, fail, out, report_config_error
from deskside.errors import ConfigError
from deskside.insights import DEFAULT_WORKSPACE, HELPSCOUT_WEBHOOK_PATH
from deskside.insights.cli import (
    DatabaseOption,
    WorkspaceOption,
    insights_context,
    run_with_store,
    workspace_flag,
)
from deskside.insights.helpscout.webhook_paths import webhook_path
from deskside.insights.stopping import GracefulStop

if TYPE_CHECKING:
    from deskside.insights.ingest.backfill import ImportProgress, ImportResult
    from deskside.insights.models import Mailbox
    from deskside.insights.privacy.retention import Disconnected
    from deskside.insights.settings import InsightsSettings
    from deskside.insights.store import Store

__all__ = ["connect", "disconnect", "mailboxes", "register", "webhook_target"]

T = TypeVar("T")
_DEFAULT_CONFIG = Path("deskside.toml")

ProviderArgument = Annotated[Literal["helpscout"], typer.Argument(help="The helpdesk: helpscout.")]


def register(app: typer.Typer) -> None:
    """Add ``connect``, ``disconnect``, ``mailboxes`` and ``import`` to ``app``."""
    app.command()(connect)
    app.command()(disconnect)
    app.command()(mailboxes)
    app.command("import")(import_command)


# -- connect ----------------------------------------------------------------------------------


def connect(
    provider: ProviderArgument,
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            help="Also register a Help Scout webhook to your deskside (its address, or its "
            "/webhooks/helpscout; the workspace's own path is added: "
            "/webhooks/helpscout/NAME), with a new secret stored encrypted.",
        ),
    ] = None,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the authorisation URL; do not open it.")
    ] = False,
) -> None:
    """Connect deskside to Help Scout and store the mailboxes.

    oauth mode: approve deskside in the browser; Help Scout sends it back to redirect_url.

    A loopback redirect_url (http://127.0.0.1:PORT/...) is answered by deskside itself.

    Any other: paste the address the browser was sent to, or its code.

    client_credentials mode: no browser; your own account's app id and secret.
    """
    from deskside.insights.helpscout.authorize import authorize
    from deskside.insights.helpscout.client import HelpScoutAPI
    from deskside.insights.ingest.backfill import selected_mailboxes, sync_mailboxes

    del provider  # one choice for now
    settings, store = insights_context(config, database, workspace)
    if webhook_url is not None:
        webhook_url = webhook_target(webhook_url, workspace)
    _require_credentials(settings)

    async def work(store: Store) -> tuple[list[Mailbox], str | None]:
        async with HelpScoutAPI(settings, store) as api:
            if settings.helpscout.mode == "client_credentials":
                await api.connect_client_credentials()
            else:
                await authorize(api, settings.helpscout, open_browser=not no_browser)
            found = await sync_mailboxes(store, api)
            webhook_id = None
            if webhook_url is not None:
                webhook_id = await api.register_webhook(
                    webhook_url, await selected_mailboxes(store)
                )
            return found, webhook_id

    try:
        found, webhook_id = _run(store, work)
    except KeyboardInterrupt:
        err.print(
            f"Stopped. Run `deskside connect helpscout{workspace_flag(workspace)}` again to "
            "finish connecting."
        )
        raise typer.Exit(130) from None
    out.print(f"[green]✓[/] connected to Help Scout ({settings.helpscout.mode})")
    if webhook_id is not None:
        out.print(
            f"[green]✓[/] webhook {webhook_id} registered to {escape(str(webhook_url))}; its "
            "secret is stored encrypted"
        )
    else:
        out.print(
            f"Help Scout's webhooks for this workspace go to https://your-deskside"
            f"{webhook_path(workspace)} (--webhook-url registers one)."
        )
    _print_mailboxes(found)
    flag = workspace_flag(workspace)
    out.print(
        f"Next: choose mailboxes with `deskside mailboxes --select ID{flag}` (none chosen: "
        f"all), then `deskside import --since 90d{flag}`."
    )


def webhook_target(url: str, workspace: str) -> str:
    """The URL to register for ``workspace``'s webhooks, given ``--webhook-url``: the server's
    address, or its ``/webhooks/helpscout``, gets the workspace's path (:func:`webhook_path`);
    any other path is kept (a proxy's). Exits with status 2 for a URL Help Scout cannot use
    or one of another workspace."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        fail("--webhook-url must be an https:// URL that Help Scout can reach")
    path = parts.path.rstrip("/")
    before, found, after = path.rpartition(HELPSCOUT_WEBHOOK_PATH)
    if found and after.strip("/") and after.strip("/") != workspace:
        fail(
            f"--webhook-url: {path} takes the webhooks of the workspace {after.strip('/')!r}; "
            f"this one's path is {webhook_path(workspace)}"
        )
    if not path or (found and not after):
        path = (before if found else path) + webhook_path(workspace)
    return parts._replace(path=path).geturl()


def _require_credentials(settings: InsightsSettings) -> None:
    """Refuse before any browser or network step: no key or no app credentials."""
    from deskside.insights.helpscout.connection import config_problems

    problems = config_problems(settings)
    if problems:
        report_config_error(ConfigError(problems))


# -- disconnect -------------------------------------------------------------------------------


def disconnect(
    provider: ProviderArgument,
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    delete_data: Annotated[
        bool,
        typer.Option(
            "--delete-data",
            help="Also delete everything imported or received by webhook (conversations, "
            "customers, mailboxes, deliveries) and the labels and topics made from it.",
        ),
    ] = False,
) -> None:
    """Forget the Help Scout connection and delete the webhook deskside registered.

    Imports then refuse until you connect again.

    The imported conversations stay, unless --delete-data.
    """
    from deskside.insights.privacy.retention import disconnect_helpscout

    del provider
    settings, store = insights_context(config, database, workspace)

    async def work(store: Store) -> Disconnected:
        return await disconnect_helpscout(settings, store, delete_data=delete_data, by="cli")

    outcome = _run(store, work)
    report = outcome.report
    if not report.was_connected:
        out.print("Help Scout was not connected.")
    else:
        out.print("[green]✓[/] disconnected from Help Scout: the token is forgotten; imports stop")
    if report.webhook_deleted:
        out.print("[green]✓[/] the webhook deskside registered is deleted")
    elif report.webhook_deleted is False:
        err.print(
            "[yellow]![/] could not delete deskside's webhook in Help Scout: remove it under "
            "Manage → Apps → Webhooks"
        )
    if outcome.removed is not None:
        out.print(
            f"[green]✓[/] deleted the imported data: {outcome.removed.total} rows "
            "(deskside erasures lists it)"
        )
        if settings.helpscout.webhook_secret:
            err.print(
                "[yellow]![/] webhooks set up in Help Scout by hand still arrive: remove them "
                "under Manage → Apps → Webhooks, or remove [insights.helpscout] webhook_secret"
            )
    elif report.was_connected:
        out.print("The imported conversations stay: --delete-data removes them.")
    if report.was_connected:
        out.print(
            "To revoke deskside's access in Help Scout as well: Your Profile → Authorized Apps."
        )


# -- mailboxes --------------------------------------------------------------------------------


def mailboxes(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    select_ids: Annotated[
        list[int] | None,
        typer.Option(
            "--select",
            help="Import only these mailboxes (repeat the option); the others are unselected.",
        ),
    ] = None,
    select_all: Annotated[
        bool,
        typer.Option(
            "--all", help="Import every mailbox, also ones added later (clears the selection)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """List the Help Scout mailboxes and which are selected for import.

    The list is refreshed from Help Scout when connected. --select or --all changes the
    selection.
    """
    from sqlalchemy import select

    from deskside.insights.helpscout.client import HelpScoutAPI
    from deskside.insights.helpscout.connection import HelpScoutError
    from deskside.insights.ingest.backfill import sync_mailboxes
    from deskside.insights.models import Mailbox

    if select_ids and select_all:
        fail("--select and --all: use one")
    settings, store = insights_context(config, database, workspace)

    async def work(store: Store) -> tuple[list[Mailbox], str | None]:
        problem = None
        if await _connected(store):
            try:
                async with HelpScoutAPI(settings, store) as api:
                    await sync_mailboxes(store, api)
            except (HelpScoutError, ConfigError) as exc:
                problem = str(exc) if isinstance(exc, HelpScoutError) else exc.problems[0]
        async with store.session() as session:
            found = list(await session.scalars(select(Mailbox).order_by(Mailbox.name)))
            if select_ids or select_all:
                unknown = sorted(set(select_ids or ()) - {mailbox.id for mailbox in found})
                if unknown:
                    fail(
                        f"no such mailbox: {', '.join(map(str, unknown))} (see `deskside "
                        "mailboxes`; connect first if the list is empty)"
                    )
                for mailbox in found:  # none selected means all, new ones included
                    mailbox.selected = not select_all and mailbox.id in (select_ids or ())
        return found, problem

    found, problem = _run(store, work)
    if problem:
        err.print(f"[yellow]![/] showing the stored list; Help Scout: {escape(problem)}")
    if as_json:
        rows = [
            {"id": m.id, "name": m.name, "email": m.email, "selected": m.selected} for m in found
        ]
        out.print_json(json.dumps(rows))
        return
    if not found:
        flag = workspace_flag(workspace)
        err.print(f"No mailboxes stored: run `deskside connect helpscout{flag}` first.")
        return
    _print_mailboxes(found)
    if not any(mailbox.selected for mailbox in found):
        err.print("None selected: `deskside import` takes every mailbox.")


async def _connected(store: Store) -> bool:
    from deskside.insights.helpscout.connection import PROVIDER
    from deskside.insights.models import Connection

    async with store.read() as session:
        return await session.get(Connection, PROVIDER) is not None


def _print_mailboxes(found: list[Mailbox]) -> None:
    table = Table("id", "name", "email", "selected", title="Help Scout mailboxes")
    for mailbox in found:
        table.add_row(
            str(mailbox.id), Text(mailbox.name), Text(mailbox.email or ""), "✓" * mailbox.selected
        )
    out.print(table)


# -- import -----------------------------------------------------------------------------------


def import_command(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    since: Annotated[
        str,
        typer.Option(
            help="Conversations changed since: 90d, 12h, 4w (counted from the start of this "
            "UTC day or hour, so a rerun today resumes), or a date or time "
            "(2024-01-31, 2024-01-31T09:00:00Z).",
        ),
    ] = "90d",
    mailbox: Annotated[
        list[int] | None,
        typer.Option(help="Only this mailbox (repeatable). Default: the selected ones, else all."),
    ] = None,
    again: Annotated[
        bool,
        typer.Option(
            "--again", help="Run a finished import (same --since and mailboxes) once more."
        ),
    ] = False,
) -> None:
    """Import Help Scout conversations with their threads into the insights store.

    Stopped by Ctrl-C, a crash or a Help Scout outage? Run it again: it resumes.

    Nothing is stored twice; a finished import is not repeated unless --again.
    """
    from deskside.insights.helpscout.client import HelpScoutAPI
    from deskside.insights.helpscout.connection import HelpScoutError, iso_utc
    from deskside.insights.ingest.backfill import import_conversations, parse_since

    try:
        moment = parse_since(since)
    except ValueError as exc:
        fail(f"--since {since}: {exc}")
    settings, store = insights_context(config, database, workspace)
    reached: list[ImportProgress] = []

    async def work(store: Store) -> ImportResult:
        with contextlib.ExitStack() as showing:
            bar = _progress_bar()
            task = bar.add_task("Importing", total=None)

            def show_bar() -> None:
                if not bar.live.is_started:
                    showing.enter_context(bar)

            def show(progress: ImportProgress) -> None:
                if not reached:  # from the first page on; a resumed pass counts from here
                    show_bar()
                    bar.reset(task, completed=progress.resumed_at, total=progress.total)
                reached.append(progress)
                bar.update(task, completed=progress.imported, total=progress.total)
                if ctrl_c.requested:  # the page is committed: stop here
                    raise KeyboardInterrupt

            # Ctrl-C stops the import after the page being written (a second one at once).
            ctrl_c = showing.enter_context(GracefulStop(signals=[signal.SIGINT]))

            def waiting(seconds: float, why: str) -> None:
                if seconds <= 0:
                    bar.update(task, description="Importing")
                elif err.is_terminal:
                    show_bar()
                    bar.update(task, description=f"waiting {math.ceil(seconds)} s ({why})")
                else:  # no live bar to show it in: a line, for the log
                    err.print(f"waiting {math.ceil(seconds)} s ({why})", highlight=False)

            async with HelpScoutAPI(settings, store, on_wait=waiting) as api:
                return await import_conversations(store, api, moment, mailbox, show, again=again)

    try:
        result = run_with_store(store, work)
    except HelpScoutError as exc:
        if not reached:
            fail(str(exc))
        fail(
            f"{exc}. Stopped after {reached[-1].imported} conversations: re-run the same "
            "command to resume where it stopped."
        )
    except ConfigError as exc:
        report_config_error(exc)
    except KeyboardInterrupt:
        done = reached[-1].imported if reached else None
        so_far = f" after {done} conversations" if done is not None else ""
        err.print(f"Stopped{so_far}. Re-run the same command to resume where it stopped.")
        raise typer.Exit(130) from None
    if result.already_done:
        out.print(
            f"Already imported: the {result.pass_imported} conversations changed since "
            f"{iso_utc(moment)} in these mailboxes; the webhook keeps them current. "
            "--again fetches them all once more."
        )
        return
    resumed = " (resumed)" if result.resumed else ""
    out.print(
        f"[green]✓[/] imported {result.imported} conversations{resumed}; "
        f"{result.pass_imported} changed since {iso_utc(moment)}"
    )
    if result.skipped:
        err.print(f"[yellow]![/] {result.skipped} conversation(s) without an id were skipped")


def _progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("conversations"),
        TimeRemainingColumn(),
        console=err,
    )


# -- shared -----------------------------------------------------------------------------------


def _run(store: Store, work: Callable[[Store], Awaitable[T]]) -> T:
    """:func:`run_with_store`, with Help Scout and configuration errors as clean failures."""
    from deskside.insights.helpscout.connection import HelpScoutError

    try:
        return run_with_store(store, work)
    except HelpScoutError as exc:
        fail(str(exc))
    except ConfigError as exc:
        report_config_error(exc)
