"""``deskside users add|list|set-role|remove|audit`` and ``deskside tokens
create|list|revoke``: the people of the web UI and the insights API with their role in a
workspace (``--workspace``), kept in the default workspace's store. Add them with
:func:`register`.

An invitation link or a token is printed once, to whoever runs the command; only its SHA-256
is stored. Like every insights command module, the store is imported when a command runs.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from deskside.console import CommandGroup, ConfigOption, fail, out
from deskside.insights import DEFAULT_WORKSPACE
from deskside.insights.cli import (
    DatabaseOption,
    WorkspaceOption,
    insights_context,
    require_workspace,
    run_with_store,
)

if TYPE_CHECKING:
    from deskside.insights.people import People
    from deskside.insights.store import Store

__all__ = ["register", "tokens_app", "users_app"]

_DEFAULT_CONFIG = Path("deskside.toml")
_BY = "cli"

users_app = typer.Typer(
    help="People who log in to the web UI, with a role: viewer, editor or admin.",
    no_args_is_help=True,
    cls=CommandGroup,
)
tokens_app = typer.Typer(
    help="API tokens of people (with their role) for the insights API.",
    no_args_is_help=True,
    cls=CommandGroup,
)

EmailArgument = Annotated[str, typer.Argument(metavar="EMAIL", show_default=False)]
RoleOption = Annotated[str, typer.Option("--role", help="viewer, editor or admin.")]
UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="The server's address in the link. Default: \\[server] public_url, else "
        "http://host:port of \\[server].",
        show_default=False,
    ),
]


def _people_do(config: Path, database: str | None, workspace: str, work: Any) -> Any:
    """Run ``work(people)`` on the people of ``workspace``; a refusal exits with status 1, an
    unknown workspace with status 2."""
    from deskside.insights.people import People, PersonError

    _, store = insights_context(config, database)

    async def run(store: Store) -> Any:
        await require_workspace(store, workspace)
        try:
            return await work(People(store, workspace))
        except (PersonError, ValueError) as exc:
            return exc

    outcome = run_with_store(store, run)
    if isinstance(outcome, ValueError):
        out.print(Text(f"✗ {outcome}", style="red"))
        raise typer.Exit(1)
    return outcome


def _base_url(config: Path, given: str | None) -> str:
    if given:
        return given.rstrip("/")
    server: dict[str, Any] = {}
    if config.is_file():
        try:
            server = tomllib.loads(config.read_text(encoding="utf-8")).get("server", {})
        except (OSError, tomllib.TOMLDecodeError):
            fail(f"{config}: cannot read the config (deskside check says why)")
    if server.get("public_url"):
        return str(server["public_url"]).rstrip("/")
    return f"http://{server.get('host', '127.0.0.1')}:{server.get('port', 8000)}"


def _in(workspace: str, preposition: str = "in") -> str:
    """`` in the workspace NAME``, or nothing for the default one."""
    return "" if workspace == DEFAULT_WORKSPACE else f" {preposition} the workspace {workspace}"


def _role(name: str) -> Any:
    from deskside.members import Role

    try:
        return Role.parse(name)
    except ValueError as exc:
        fail(str(exc))


@users_app.command("add")
def add(
    email: EmailArgument,
    role: RoleOption = "viewer",
    url: UrlOption = None,
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Add a person to a workspace with a role and print their one-time invitation link
    (valid 72 hours), where they set their password.

    Someone who is a person of another workspace already just joins this one: no link.
    """
    from deskside.insights.people import invitation_url

    chosen = _role(role)

    async def work(people: People) -> str | None:
        _, token = await people.add(email, chosen, by=_BY)
        return token

    token = _people_do(config, database, workspace, work)
    if token is None:
        out.print(
            Text(
                f"✓ {email} joined the workspace {workspace} as {chosen.name}; they log in as "
                "they do already."
            )
        )
        return
    out.print(
        Text(
            f"✓ added {email}{_in(workspace)} as {chosen.name}. Send them this link (it works "
            "once, for 72 h):"
        )
    )
    print(invitation_url(_base_url(config, url), token))


@users_app.command("invite")
def invite(
    email: EmailArgument,
    url: UrlOption = None,
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Print a new invitation link for a person (a forgotten password; the old link stops)."""
    from deskside.insights.people import invitation_url

    token = _people_do(
        config, database, workspace, lambda people: people.invite_again(email, by=_BY)
    )
    print(invitation_url(_base_url(config, url), token))


@users_app.command("list")
def list_people(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """Everyone of the workspace, with their role there and whether they set a password yet."""
    found = _people_do(config, database, workspace, lambda people: people.listed())
    if as_json:
        rows = [{"email": p.email, "role": p.role.name, "invited": p.invited} for p in found]
        out.print_json(json.dumps(rows))
        return
    if not found:
        out.print("Nobody yet: add someone with deskside users add EMAIL --role R.")
        return
    table = Table("email", "role", "status", "since (UTC)")
    for person in found:
        since = f"{person.created_at:%Y-%m-%d}"
        table.add_row(Text(person.email), person.role.name, person.status, since)
    out.print(table)


@users_app.command("set-role")
def set_role(
    email: EmailArgument,
    role: Annotated[str, typer.Argument(metavar="ROLE", help="viewer, editor or admin.")],
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Change a person's role (it takes effect on their next request)."""
    chosen = _role(role)
    _people_do(config, database, workspace, lambda people: people.set_role(email, chosen, by=_BY))
    out.print(Text(f"✓ {email} is now {chosen.name}"))


@users_app.command("remove")
def remove(
    email: EmailArgument,
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Remove a person from the workspace with their tokens there; their sessions there end on
    their next request. Someone left in no workspace is deleted."""
    _people_do(config, database, workspace, lambda people: people.remove(email, by=_BY))
    out.print(Text(f"✓ removed {email}{_in(workspace, 'from')}"))


@users_app.command("audit")
def audit(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """Logins, failed logins, people added and removed, role and token changes: when, who,
    what."""
    found = _people_do(config, database, workspace, lambda people: people.audit(limit))
    if as_json:
        rows = [
            {"at": r.at.isoformat(), "actor": r.actor, "action": r.action, "detail": r.detail}
            for r in found
        ]
        out.print_json(json.dumps(rows))
        return
    table = Table("when (UTC)", "who", "what")
    for row in found:
        table.add_row(
            f"{row.at:%Y-%m-%d %H:%M:%S}", Text(row.actor), Text(f"{row.action}: {row.detail}")
        )
    out.print(table)


@tokens_app.command("create")
def create(
    email: EmailArgument,
    name: Annotated[str, typer.Option(help="What the token is for.")] = "token",
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Print a new API token of a person, acting in the workspace with their role there
    (shown this once): Authorization: Bearer <token>."""
    created = _people_do(
        config, database, workspace, lambda people: people.create_token(email, name, by=_BY)
    )
    out.print(Text(f"✓ token {created[0]} of {email}{_in(workspace)} (shown once):"))
    print(created[1])


@tokens_app.command("list")
def list_tokens(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Every token: its id, whose it is and its name (never the token)."""
    found = _people_do(config, database, workspace, lambda people: people.tokens())
    table = Table("id", "person", "name", "created (UTC)")
    for token in found:
        table.add_row(
            str(token.id), Text(token.person), Text(token.name), f"{token.created_at:%Y-%m-%d}"
        )
    out.print(table)


@tokens_app.command("revoke")
def revoke(
    token_id: Annotated[int, typer.Argument(metavar="ID", help="As tokens list shows it.")],
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
) -> None:
    """Revoke a token: it stops working at once."""
    _people_do(config, database, workspace, lambda people: people.revoke_token(token_id, by=_BY))
    out.print(Text(f"✓ token {token_id} revoked"))


def register(app: typer.Typer) -> None:
    """Add ``users`` and ``tokens`` to ``app``."""
    app.add_typer(users_app, name="users")
    app.add_typer(tokens_app, name="tokens")
