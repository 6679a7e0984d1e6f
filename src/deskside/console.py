"""What every command shares: the two consoles, the ``--config`` option, and failing cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from deskside.errors import ConfigError

__all__ = ["CONFIG_ENV", "ConfigOption", "err", "fail", "out", "report_config_error"]

CONFIG_ENV = "DESKSIDE_CONFIG"
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", envvar=CONFIG_ENV, help="The config file.", show_default=True),
]


def fail(message: str) -> NoReturn:
    """Print ``message`` as an error and exit with status 2."""
    err.print(f"[red]✗[/] {message}")
    raise typer.Exit(2)


def report_config_error(exc: ConfigError) -> NoReturn:
    """Print every problem of ``exc`` and exit with status 2."""
    for problem in exc.problems:
        err.print(f"[red]✗[/] {problem}", markup=True)
    raise typer.Exit(2) from None
