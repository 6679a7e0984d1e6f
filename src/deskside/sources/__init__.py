"""Sources: where customer data lives. A source kind is one module; this is their registry.

A module is a source kind when it defines ``SOURCE``: its :class:`Source` subclass, whose
``config_model`` is the :class:`SourceConfig` subclass that validates ``[sources.NAME]``
tables with ``kind = "<the class's kind>"``. The registry holds every such module of this
package (found with :mod:`pkgutil`: a new built-in kind is one new module; a kind's helpers
live in a subpackage of their own, such as ``sql_drivers``, loaded only when used) and every
module named by an entry point of the group ``deskside.sources`` (a source kind from another
installed package; the entry point's name is the kind, its value the module or the
``Source`` subclass itself)::

    [project.entry-points."deskside.sources"]
    crm = "acme_deskside.crm"

Nothing else in deskside switches on a source's kind: the config, ``deskside check`` and the
tests read this registry. Importing a module must stay cheap (a heavy SDK is imported where
the source uses it), since the config loads every registered kind's model.
"""

from __future__ import annotations

import functools
import importlib
import logging
import pkgutil
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Annotated, Any

from pydantic import Field

from deskside.sources.base import Record, Source, SourceConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "Record",
    "Source",
    "SourceConfig",
    "SourceKind",
    "SourceKindError",
    "build_source",
    "config_union",
    "source_kinds",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "deskside.sources"
"""The entry-point group through which an installed package adds source kinds."""


class SourceKindError(TypeError):
    """A module offered as a source kind does not keep the contract (see the module doc)."""


@dataclass(frozen=True)
class SourceKind:
    """One registered kind: what ``kind = "…"`` selects."""

    kind: str
    source: type[Source]
    config: type[SourceConfig]
    module: str
    """Where it is declared: ``deskside.sources.sql``, or the entry point that names it."""


@functools.cache
def source_kinds() -> Mapping[str, SourceKind]:
    """Every registered kind by name: the built-ins (alphabetical), then the installed ones.

    A built-in module that breaks the contract raises :class:`SourceKindError`. An installed
    one that fails to import, breaks the contract, is named otherwise than its kind or claims
    a kind already registered is left out with a warning saying why: deskside still starts,
    and a config that uses it is told the kind is unknown.
    """
    kinds: dict[str, SourceKind] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "SOURCE"):
            declared = _declared(module.SOURCE, module.__name__)
            kinds[declared.kind] = declared
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        where = f"{entry_point.value} (entry point {entry_point.name!r} of {ENTRY_POINT_GROUP})"
        try:
            loaded = entry_point.load()
            is_module = isinstance(loaded, types.ModuleType)
            source = getattr(loaded, "SOURCE", None) if is_module else loaded
            declared = _declared(source, where)
            if declared.kind != entry_point.name:
                raise SourceKindError(f"{where}: its kind is {declared.kind!r}: name it so")
            if declared.kind in kinds:
                raise SourceKindError(f"{where}: {kinds[declared.kind].module} declares it already")
        except SourceKindError as exc:
            log.warning("source kind left out: %s", exc)
            continue
        except Exception as exc:
            log.warning("source kind left out: %s: %s: %s", where, type(exc).__name__, exc)
            continue
        kinds[declared.kind] = declared
    return types.MappingProxyType(kinds)


def _declared(source: object, where: str) -> SourceKind:
    """The kind ``source`` (a module's ``SOURCE``, or what an entry point names) declares."""
    if not (isinstance(source, type) and issubclass(source, Source)):
        raise SourceKindError(f"{where}: SOURCE must be a subclass of deskside.sources.Source")
    config = getattr(source, "config_model", None)
    if not (isinstance(config, type) and issubclass(config, SourceConfig)):
        raise SourceKindError(f"{where}: {source.__name__}.config_model must be a SourceConfig")
    field = config.model_fields.get("kind")
    annotation = field.annotation if field is not None else None
    literal = typing.get_origin(annotation) is typing.Literal
    if not literal or typing.get_args(annotation) != (getattr(source, "kind", None),):
        raise SourceKindError(
            f"{where}: {config.__name__} needs `kind: Literal[{getattr(source, 'kind', '…')!r}]`, "
            f"the kind {source.__name__} declares"
        )
    return SourceKind(kind=source.kind, source=source, config=config, module=where)


def config_union() -> Any:
    """The type of a ``[sources.NAME]`` table: the registered config models, told apart by
    ``kind`` (pydantic then lists the known kinds when a table names another)."""
    models = tuple(kind.config for kind in source_kinds().values())
    return Annotated[typing.Union[models], Field(discriminator="kind")]  # noqa: UP007


def build_source(name: str, config: SourceConfig) -> Source:
    """The source ``config`` (the table ``[sources.NAME]``) describes, named ``name``."""
    by_config = {kind.config: kind.source for kind in source_kinds().values()}
    if type(config) not in by_config:
        raise SourceKindError(f"{type(config).__name__} is no registered source kind's model")
    return by_config[type(config)](name, config)
