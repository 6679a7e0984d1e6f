"""``deskside classify`` run in-process, as the classifier tests call it."""

from __future__ import annotations

import json
from collections.abc import Sequence

import typer
from typer.testing import CliRunner, Result

from deskside.insights.analysis import cli as classify_cli


def cli_app() -> typer.Typer:
    """An app with ``classify`` registered the way ``deskside.cli`` registers it."""
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """deskside"""

    classify_cli.register(app)
    return app


def run_classify(
    args: Sequence[str], inputs: Sequence[dict[str, object]] | str | bytes, **env: str
) -> Result:
    """``deskside classify ARGS`` with ``inputs`` (JSON lines) on stdin, no config, no store."""
    stdin = (
        inputs if isinstance(inputs, str | bytes) else "".join(json.dumps(i) + "\n" for i in inputs)
    )
    return CliRunner().invoke(
        cli_app(),
        ["classify", "--config", "no-such-deskside.toml", *args],
        input=stdin,
        env={"DESKSIDE_DATABASE": "", **env},
    )
