"""The helpdesk registry: every helpdesk deskside answers, found as plugins.

A helpdesk is **one module** that sets ``HELPDESK`` to its :class:`~deskside.protocols.Protocol`
subclass; that class declares everything about it (config model, verify/parse/respond, setup
values, preview fragment, demo request, example request and ``check_answer`` for ``probe``,
OpenAPI description). The registry is, in this order:

1. every module of the built-in package :mod:`deskside.protocols` (found with :mod:`pkgutil`;
   ``base`` and names starting with ``_`` are not helpdesks), so a new built-in helpdesk is one
   new module and nothing else;
2. the entry points of the group ``deskside.helpdesks`` of every installed distribution, each
   naming a module (with ``HELPDESK``) or the Protocol class itself, e.g. in a plugin's
   ``pyproject.toml``::

       [project.entry-points."deskside.helpdesks"]
       intercom = "deskside_intercom"

A kind already registered is not replaced. Both functions list the kinds in the order people
meet them (the Preview and Setup pages, ``deskside demo``): by the class attribute
``list_order`` (an int, :data:`DEFAULT_LIST_ORDER` when unset: the established helpdesks set
less, a catch-all endpoint more), then by kind.

Light on purpose: :func:`kinds` reads each built-in class's ``kind``, ``title``, ``method``,
``signature_header``, ``scheme`` and ``list_order`` from the module's source without importing
it (they must be literals in the body of a direct subclass of ``Protocol``), so the command
line lists kinds and signs requests without loading FastAPI, the renderers or the sources.
:func:`protocol_classes` imports the modules.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from deskside.signing import Scheme

if TYPE_CHECKING:  # the protocols are heavy: imported by protocol_classes() only
    from deskside.protocols.base import Protocol

__all__ = [
    "BUILTIN_PACKAGE",
    "DEFAULT_LIST_ORDER",
    "ENTRY_POINT_GROUP",
    "Helpdesk",
    "in_list_order",
    "kinds",
    "protocol_class",
    "protocol_classes",
]

BUILTIN_PACKAGE = "deskside.protocols"
ENTRY_POINT_GROUP = "deskside.helpdesks"
T = TypeVar("T")
P = TypeVar("P", bound="Protocol")
_NOT_HELPDESKS = frozenset({"base"})
_LIGHT = ("kind", "title", "method", "signature_header", "scheme")
_DEFAULTS: dict[str, Any] = {"method": "POST", "list_order": 100}
"""The light attributes a class may leave out, as :class:`Protocol` (or this module) sets them."""
DEFAULT_LIST_ORDER: int = _DEFAULTS["list_order"]
"""Where a helpdesk that sets no ``list_order`` is listed: after the established ones, before
a catch-all endpoint."""


@dataclass(frozen=True)
class Helpdesk:
    """A helpdesk kind (the ``kind`` of a ``[helpdesks.NAME]`` table) and how it signs."""

    kind: str
    title: str
    method: str
    scheme: Scheme | None
    """None: no signature, the request carries a secret itself as a bearer token."""
    signature_header: str
    """The header the signature (or token) travels in (lower-case); Helper's is ``Bearer …``."""
    module: str
    """The module that defines it."""
    list_order: int = DEFAULT_LIST_ORDER
    """Lower is listed first (see the module's docstring)."""


def _builtin_modules() -> list[tuple[str, Path | None]]:
    """``(module name, source file)`` of every built-in helpdesk, without importing any."""
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    found = []
    for info in pkgutil.iter_modules(locations):
        if info.ispkg or info.name.startswith("_") or info.name in _NOT_HELPDESKS:
            continue
        path = getattr(info.module_finder, "path", None)
        source = Path(path) / f"{info.name}.py" if path else None
        found.append((f"{BUILTIN_PACKAGE}.{info.name}", source))
    return sorted(found)


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.value.id != "Scheme":
            raise ValueError(node.value.id)
        return Scheme[node.attr]
    return ast.literal_eval(node)


def read_light(source: str, module: str) -> Helpdesk | None:
    """The light attributes of the class ``HELPDESK`` names in ``source``, or None when they
    are not all literals in its body (the module must then be imported to know them)."""
    tree = ast.parse(source)
    names = [
        node.value.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Name)
        and any(isinstance(t, ast.Name) and t.id == "HELPDESK" for t in node.targets)
    ]
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name in names]
    if len(classes) != 1 or [ast.unparse(base) for base in classes[0].bases] != ["Protocol"]:
        return None  # another base class may set what the body leaves out
    values: dict[str, Any] = dict(_DEFAULTS)
    for node in classes[0].body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and (target.id in _LIGHT or target.id in _DEFAULTS):
            try:
                values[target.id] = _literal(value)
            except (ValueError, KeyError, TypeError):
                return None
    if set(values) != set(_LIGHT) | set(_DEFAULTS) or type(values["list_order"]) is not int:
        return None
    return Helpdesk(module=module, **values)


def _list_order(cls: type[Protocol]) -> int:
    order = getattr(cls, "list_order", DEFAULT_LIST_ORDER)
    if type(order) is not int:
        raise TypeError(f"{cls.__qualname__}.list_order must be an int, not {order!r}")
    return order


def _light_of(cls: type[Protocol], module: str) -> Helpdesk:
    return Helpdesk(
        cls.kind, cls.title, cls.method, cls.scheme, cls.signature_header, module, _list_order(cls)
    )


def _protocol_of(loaded: Any) -> type[Protocol]:
    """The Protocol class a module (its ``HELPDESK``) or an entry point's object names."""
    cls = loaded.HELPDESK if isinstance(loaded, ModuleType) else loaded
    from deskside.protocols.base import Protocol

    if not (isinstance(cls, type) and issubclass(cls, Protocol)):
        raise TypeError(f"{loaded!r} names no deskside Protocol class (set HELPDESK)")
    return cls


def _plugins() -> list[tuple[str, Any]]:
    """``(module, entry point)`` of other distributions' helpdesks."""
    return [(ep.value.split(":")[0], ep) for ep in entry_points(group=ENTRY_POINT_GROUP)]


def _listed(found: dict[str, T], order: Callable[[T], int]) -> dict[str, T]:
    """``found`` by ``order`` of each value, then by kind."""
    return dict(sorted(found.items(), key=lambda item: (order(item[1]), item[0])))


@cache
def kinds() -> Mapping[str, Helpdesk]:
    """Every helpdesk kind and how it signs, in listing order (a built-in's kind wins over a
    plugin's), without importing built-ins."""
    found: dict[str, Helpdesk] = {}
    for module, source in _builtin_modules():
        light = read_light(source.read_text(encoding="utf-8"), module) if source else None
        if light is None:
            light = _light_of(_protocol_of(importlib.import_module(module)), module)
        found.setdefault(light.kind, light)
    for module, ep in _plugins():
        if module.startswith(f"{BUILTIN_PACKAGE}."):
            continue  # deskside's own entry points: found above
        cls = _protocol_of(ep.load())
        found.setdefault(cls.kind, _light_of(cls, module))
    return _listed(found, lambda helpdesk: helpdesk.list_order)


@cache
def protocol_classes() -> Mapping[str, type[Protocol]]:
    """Every helpdesk's Protocol class by kind, in :func:`kinds` order (imports them all)."""
    classes: dict[str, type[Protocol]] = {}
    for module, _source in _builtin_modules():
        cls = _protocol_of(importlib.import_module(module))
        classes.setdefault(cls.kind, cls)
    for module, ep in _plugins():
        if not module.startswith(f"{BUILTIN_PACKAGE}."):
            cls = _protocol_of(ep.load())
            classes.setdefault(cls.kind, cls)
    return _listed(classes, _list_order)


def in_list_order(protocols: Iterable[P]) -> list[P]:
    """Configured helpdesks in :func:`kinds` order; those of one kind keep the order they came
    in, an unknown kind comes last."""
    rank = {kind: index for index, kind in enumerate(kinds())}
    return sorted(protocols, key=lambda protocol: rank.get(protocol.kind, len(rank)))


def protocol_class(kind: str) -> type[Protocol]:
    """The Protocol class of ``kind``; KeyError for an unknown kind."""
    return protocol_classes()[kind]
