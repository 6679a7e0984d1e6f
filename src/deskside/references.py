"""Which names the config's expressions and templates read, and the ones nothing defines.

At run time an undefined name is empty, never an error (a source that found nothing must not
break the card), so ``crn.note`` for ``crm.note`` makes a field silently disappear. Reading
every expression and template with Jinja's own parser catches that when the config is loaded.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import TemplateSyntaxError, meta, nodes
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel

from deskside.expressions import Expression, TextTemplate

__all__ = ["BUILT_IN_NAMES", "Location", "Problem", "unknown_names"]

BUILT_IN_NAMES = frozenset({"now", "today", "email", "emails", "helpdesk", "records"})
"""What every expression sees besides the sources (see ``layout.expression_context``)."""

Location = tuple[str | int, ...]
"""A key path in the config file: ``("card", "fields", 2, "value")``."""

_ENV = ImmutableSandboxedEnvironment()
_RECORDS = "records"


@dataclass(frozen=True)
class Problem:
    location: Location
    message: str


def unknown_names(
    config: BaseModel,
    sources: Collection[str],
    *,
    extra_expressions: Mapping[Location, str] | None = None,
) -> list[Problem]:
    """Every name read by an expression or template in ``config`` (at any depth) that is neither
    a source, a built-in name nor one of Jinja's globals; ``records.NAME`` must name a source.

    ``extra_expressions`` are expressions the config holds as plain strings, by location.
    """
    known = frozenset(sources) | BUILT_IN_NAMES | frozenset(_ENV.globals)
    problems = []
    pieces = [*_compiled(config, ()), *(extra_expressions or {}).items()]
    for location, source in pieces:
        try:
            read = _names(source, expression=not isinstance(source, TextTemplate))
        except TemplateSyntaxError:
            continue  # reported where the piece is compiled
        for name in read:
            if name.startswith(f"{_RECORDS}."):
                wrong = name.removeprefix(f"{_RECORDS}.")
                if wrong not in sources:
                    problems.append(Problem(location, _unknown(wrong, sources, prefix=_RECORDS)))
            elif name not in known:
                problems.append(Problem(location, _unknown(name, sorted(sources), built_in=True)))
    return problems


def _compiled(model: BaseModel, location: Location) -> Iterator[tuple[Location, Any]]:
    """Every expression and template in ``model``, with its location."""
    for key in type(model).model_fields:
        value = getattr(model, key)
        private = (model.__pydantic_private__ or {}).get(f"_{key}")
        yield from _walk(private if isinstance(private, TextTemplate) else value, (*location, key))


def _walk(value: Any, location: Location) -> Iterator[tuple[Location, Any]]:
    if isinstance(value, Expression | TextTemplate):
        yield location, value
    elif isinstance(value, BaseModel):
        yield from _compiled(value, location)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _walk(item, (*location, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*location, str(key)))


def _names(piece: Any, *, expression: bool) -> list[str]:
    """The undeclared names ``piece`` reads, in order, and ``records.NAME`` for each source it
    takes from ``records`` by a constant name."""
    source = str(piece)
    if expression:
        parser = Parser(_ENV, source, state="variable")
        tree = nodes.Template([nodes.Output([parser.parse_expression()])])
        tree.set_environment(_ENV)
    else:
        tree = _ENV.parse(source)
    undeclared = meta.find_undeclared_variables(tree)
    names = [n.name for n in tree.find_all(nodes.Name) if n.ctx == "load" and n.name in undeclared]
    if _RECORDS in undeclared:
        names += [f"{_RECORDS}.{name}" for name in _taken_from_records(tree)]
    return list(dict.fromkeys(names))


def _taken_from_records(tree: nodes.Node) -> Iterator[str]:
    """``X`` of every ``records.X`` and ``records['X']``."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Getattr) and _is_records(node.node):
            yield node.attr
        elif isinstance(node, nodes.Getitem) and _is_records(node.node):
            key = node.arg.value if isinstance(node.arg, nodes.Const) else None
            if isinstance(key, str):
                yield key


def _is_records(node: nodes.Node) -> bool:
    return isinstance(node, nodes.Name) and node.name == _RECORDS


def _unknown(
    name: str, sources: Collection[str], *, prefix: str = "", built_in: bool = False
) -> str:
    shown = f"{prefix}.{name}" if prefix else name
    candidates = [*sources, *(sorted(BUILT_IN_NAMES) if built_in else [])]
    close = difflib.get_close_matches(name, candidates, n=1)
    if close:
        suggestion = f"{prefix}.{close[0]}" if prefix else close[0]
        return f"`{shown}` names no source: did you mean `{suggestion}`?"
    listed = ", ".join(sorted(sources))
    also = f" (or {', '.join(sorted(BUILT_IN_NAMES))})" if built_in else ""
    return f"`{shown}` names no source; the sources are {listed}{also}"
