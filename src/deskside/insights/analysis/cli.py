"""``deskside classify``: label JSON lines from stdin with the conversation classifier.

A line that cannot be labelled (not UTF-8, not JSON, not an object, no text) gets an error
object in its place, naming the line but never quoting it, and the rest go on; the command
then exits 1. Add it to an app with :func:`register`. The heavy imports (scikit-learn) happen
only when the command runs, so the rest of the CLI starts as fast as before.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.markup import escape

from deskside.console import ConfigOption, err, fail
from deskside.insights import DEFAULT_WORKSPACE
from deskside.insights.cli import (
    DatabaseOption,
    WorkspaceOption,
    insights_context,
    require_workspace_of,
)

if TYPE_CHECKING:
    from deskside.insights.analysis.classify import Classifier, Example
    from deskside.insights.store import Store

__all__ = [
    "CORRECTIONS_TABLE",
    "BadLine",
    "classify",
    "read_inputs",
    "register",
    "stored_corrections",
]

CORRECTIONS_TABLE = "labelled_examples"
"""The table of agents' corrections (columns ``text`` and ``label``) read when it exists."""

_Item = TypeVar("_Item")
_BATCH = 2000
_NAMED_LINES = 5
"""How many bad lines the summary on stderr names by number."""


@dataclass(frozen=True)
class BadLine:
    """A line of input that cannot be labelled: its number, its ``id`` when it has one, and
    why, in words of our own (the line's text may be a customer's message)."""

    line: int
    error: str
    id: Any = None

    def document(self) -> dict[str, Any]:
        """What stands in the output in the line's place."""
        document: dict[str, Any] = {"line": self.line}
        if self.id is not None:
            document["id"] = self.id
        document["error"] = self.error
        return document


def classify(
    examples: Annotated[
        list[Path] | None,
        typer.Option(
            "--examples",
            help="Labelled examples (CSV with text,label or title,body,label columns, or JSON "
            "lines with the same keys) to learn from besides the shipped ones; repeatable. "
            "Two or more labels with 10+ examples each make those labels the only ones "
            "predicted.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ] = None,
    database: DatabaseOption = None,
    config: ConfigOption = Path("deskside.toml"),
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    labels: Annotated[
        str | None,
        typer.Option(help="Only these labels, comma-separated (default: see --examples)."),
    ] = None,
    llm_url: Annotated[
        str | None,
        typer.Option(
            envvar="DESKSIDE_LLM_URL",
            help="An OpenAI-compatible API (e.g. http://127.0.0.1:8080/v1) to ask first; the "
            "local model answers whenever it fails.",
            show_default=False,
        ),
    ] = None,
    llm_model: Annotated[
        str, typer.Option(envvar="DESKSIDE_LLM_MODEL", help="The model name sent to it.")
    ] = "default",
    llm_api_key: Annotated[
        str | None,
        typer.Option(envvar="DESKSIDE_LLM_API_KEY", hidden=True, show_default=False),
    ] = None,
    docs_api_key: Annotated[
        str | None,
        typer.Option(
            envvar="DESKSIDE_HELPSCOUT_DOCS_API_KEY",
            help="A Help Scout Docs API key: article titles make 'docs' likelier for close "
            "matches.",
            show_default=False,
        ),
    ] = None,
    docs_api_url: Annotated[
        str, typer.Option(envvar="DESKSIDE_HELPSCOUT_DOCS_API_URL", hidden=True)
    ] = "https://docsapi.helpscout.net",
) -> None:
    """Label JSON lines {"id": …, "text": …} (or {"id": …, "title": …, "body": …}) from
    stdin: writes {"id": …, "label": …, "confidence": …, "unsure": …} per line. Labels: bug,
    feature, docs, question, other. "unsure" is true below a confidence of 0.5: check those
    first.

    Model: multinomial logistic regression on TF-IDF words, characters, the title and the
    issue template's structure (scikit-learn, no downloads), its confidence calibrated.

    A line that cannot be labelled gets {"line": N, "error": …} instead; the others go on,
    and the exit code is then 1.

    With a database, it learns from the agents' corrections stored in the workspace too.
    """
    from deskside.insights.analysis import classify as model

    started = time.perf_counter()
    extra: list[Example] = []
    for path in examples or ():
        try:
            extra += model.read_examples_file(path)
        except (model.ExamplesError, OSError, UnicodeDecodeError) as exc:
            fail(f"--examples: {exc}")
    if database is not None or workspace != DEFAULT_WORKSPACE or _configured_database(config):
        extra += _corrections(config, database, workspace)
    everything = [*model.load_shipped_examples(), *extra]
    chosen = _labels(labels) if labels else model.labels_for(everything)
    classifier = model.Classifier()
    try:
        classifier.train(everything, labels=chosen)
    except ValueError as exc:
        fail(str(exc))
    if docs_api_key:
        classifier.use_article_titles(_article_titles(docs_api_key, docs_api_url))
    err.print(
        f"Trained on {len(everything)} examples ({len(extra)} yours) in "
        f"{time.perf_counter() - started:.1f} s; labels: {', '.join(classifier.labels)}.",
        highlight=False,
    )
    answer = _answerer(classifier, llm_url, llm_model, llm_api_key)
    count, bad = 0, 0
    first_bad: list[int] = []
    try:
        for batch in _batches(read_inputs(sys.stdin.buffer), _BATCH):
            texts = [item[1] for item in batch if not isinstance(item, BadLine)]
            predictions = iter(answer(texts) if texts else [])
            documents = []
            for item in batch:
                if isinstance(item, BadLine):
                    documents.append(item.document())
                    bad += 1
                    if len(first_bad) < _NAMED_LINES:
                        first_bad.append(item.line)
                else:
                    p = next(predictions)
                    documents.append(
                        {
                            "id": item[0],
                            "label": p.label,
                            "confidence": p.confidence,
                            "unsure": p.unsure,
                        }
                    )
                    count += 1
            sys.stdout.write("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in documents))
            sys.stdout.flush()
    except ValueError as exc:
        fail(str(exc))
    err.print(f"{count} labelled in {time.perf_counter() - started:.1f} s.", highlight=False)
    if bad:
        named = ", ".join(map(str, first_bad)) + (", …" if bad > len(first_bad) else "")
        err.print(
            f"[yellow]![/] {bad} line(s) could not be labelled (line {named}): their "
            'output lines say why under "error".'
        )
        raise typer.Exit(1)


def read_inputs(lines: Iterable[bytes]) -> Iterator[tuple[Any, str] | BadLine]:
    """``(id, text)`` per JSON line (``text``, or ``title`` and ``body``), or a
    :class:`BadLine` for one that is not such an object; blank lines are skipped."""
    for number, raw in enumerate(lines, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            yield BadLine(number, "not UTF-8 text")
            continue
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as exc:  # its message says where, never what
            yield BadLine(number, f"not JSON ({exc.msg})")
            continue
        except (ValueError, RecursionError):  # a number too long, arrays nested too deep
            yield BadLine(number, "not JSON that can be read")
            continue
        if not isinstance(document, dict):
            yield BadLine(number, 'not a JSON object: expected {"id": …, "text": …}')
            continue
        text = document.get("text")
        if text is None and ("title" in document or "body" in document):
            parts = (document.get("title"), document.get("body"))
            text = "\n\n".join(part for part in parts if isinstance(part, str) and part)
        if not isinstance(text, str):
            yield BadLine(number, 'no "text" string', document.get("id"))
            continue
        yield document.get("id"), text


async def stored_corrections(store: Store) -> list[Example]:
    """Agents' corrections from the :data:`CORRECTIONS_TABLE` table (``text``, ``label``) when
    the store has one, else none; rows with an unknown label are skipped. Reads only: the
    schema is not created or upgraded."""
    from sqlalchemy import String, column, inspect, select, table

    from deskside.insights.analysis.classify import LABELS, Example

    async with store.read() as session:
        exists = await session.run_sync(
            lambda sync: inspect(sync.connection()).has_table(CORRECTIONS_TABLE)
        )
        if not exists:
            return []
        rows = await session.execute(
            select(column("text", String), column("label", String)).select_from(
                table(CORRECTIONS_TABLE)
            )
        )
        return [
            Example(str(text), str(label), "correction")
            for text, label in rows
            if text and label in LABELS
        ]


def register(app: typer.Typer) -> None:
    """Add ``classify`` to ``app``; its help ends saying whether the sentence encoder is
    stacked."""
    usage = f"{inspect.cleandoc(classify.__doc__ or '')}\n\n{_encoder_line()}"
    app.command(help=usage)(classify)


def _encoder_line() -> str:
    """The help's words on the sentence encoder (found without importing its runtime)."""
    from deskside.insights.analysis import encoder

    reason = encoder.unavailable_reason()
    if reason is None:
        return (
            f"Sentence encoder: in use, {encoder.ENCODER_NAME} embeddings stacked with the "
            f"TF-IDF blocks (ONNX Runtime, int8; {encoder.ENVIRONMENT_SWITCH}=off: without)."
        )
    return f"Sentence encoder: not used, {reason} (see deskside models)."


def _labels(given: str) -> tuple[str, ...]:
    from deskside.insights.analysis.labels import canonical_label

    try:
        return tuple(dict.fromkeys(canonical_label(p) for p in given.split(",") if p.strip()))
    except ValueError as exc:
        fail(f"--labels: {exc}")


def _configured_database(config: Path) -> bool:
    if not config.is_file():
        return False
    settings, _ = insights_context(config, None)
    return settings.database is not None


def _corrections(config: Path, database: str | None, workspace: str) -> list[Example]:
    from sqlalchemy.exc import SQLAlchemyError

    _, store = insights_context(config, database, workspace)

    async def read() -> list[Example]:
        try:
            await require_workspace_of(store)
            return await stored_corrections(store)
        finally:
            await store.aclose()

    try:
        return asyncio.run(read())
    except (SQLAlchemyError, OSError) as exc:
        fail(f"insights database: {str(exc).splitlines()[0]}")


def _article_titles(api_key: str, base_url: str) -> list[str]:
    from deskside.insights.helpscout.docs import DocsAPIError, fetch_article_titles

    try:
        titles = asyncio.run(fetch_article_titles(api_key, base_url=base_url))
    except DocsAPIError as exc:
        err.print(f"[yellow]![/] {escape(str(exc))}; classifying without article titles.")
        return []
    err.print(f"{len(titles)} Help Scout Docs article titles.", highlight=False)
    return titles


def _answerer(classifier: Classifier, url: str | None, model_name: str, api_key: str | None) -> Any:
    if not url:
        return classifier.predict
    from deskside.insights.analysis.llm import LLMClassifier, LLMSettings

    llm = LLMClassifier(LLMSettings(url=url, model=model_name, api_key=api_key), classifier)
    return lambda texts: asyncio.run(llm.classify(texts))


def _batches(items: Iterator[_Item], size: int) -> Iterator[list[_Item]]:
    batch: list[_Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
