"""The insights commands that read and work the store: ``conversations`` and ``worker``."""

from __future__ import annotations

from typing import Annotated

import typer

from deskside.config import load_insights_settings
from deskside.console import ConfigOption, report_config_error
from deskside.errors import ConfigError
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, database_url

__all__ = ["DatabaseOption", "insights_context", "register"]

DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        envvar="DESKSIDE_DATABASE",
        help="The insights database URL. Default: [insights] database, else insights.db in "
        "the data directory.",
        show_default=False,
    ),
]


def insights_context(config: str | None, database: str | None) -> tuple[InsightsSettings, Store]:
    """The ``[insights]`` settings of ``config`` (if that file exists) and an unopened store."""
    try:
        settings = load_insights_settings(config)
    except ConfigError as exc:
        report_config_error(exc)
    return settings, Store(database_url(database, settings))


def register(app: typer.Typer) -> None:
    """Add the insights commands to ``app``."""
    del app  # commands arrive with the inbox and worker
