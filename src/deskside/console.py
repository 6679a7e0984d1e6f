"""What every command shares: the two consoles, the ``--config`` option, failing cleanly, and
help that shows no value for flags."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup, TyperOption

from deskside.errors import ConfigError

if TYPE_CHECKING:  # Typer's own Click, as its classes are annotated with
    from typer._click import Command, Context, HelpFormatter

__all__ = [
    "CONFIG_ENV",
    "CommandGroup",
    "ConfigOption",
    "err",
    "fail",
    "out",
    "report_config_error",
]

CONFIG_ENV = "DESKSIDE_CONFIG"
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", envvar=CONFIG_ENV, help="The config file.", show_default=True),
]


def fail(message: str) -> NoReturn:
    """Print ``message`` (plain text, shown as written) as an error and exit with status 2."""
    err.print(f"[red]✗[/] {escape(message)}")
    raise typer.Exit(2)


def report_config_error(exc: ConfigError) -> NoReturn:
    """Print every problem of ``exc`` and exit with status 2."""
    for problem in exc.problems:
        err.print(f"[red]✗[/] {escape(problem)}")
    raise typer.Exit(2) from None


class CommandGroup(TyperGroup):
    """Commands whose ``--help`` shows no value column for flags.

    Typer's Rich help prints a type for every option, ``<bool>`` for ``--json`` or ``--help``
    too, though a flag takes no value; an empty metavar leaves the column blank.
    """

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _hide_flag_values(command, ctx)
        return command

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        _hide_flag_values(self, ctx)
        super().format_help(ctx, formatter)


def _hide_flag_values(command: Command, ctx: Context) -> None:
    """An empty metavar for each flag of ``command``, ``--help`` included."""
    for param in [*command.params, command.get_help_option(ctx)]:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
