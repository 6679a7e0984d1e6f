"""Sources: where customer data lives. A source kind is one module; this is their registry.

A module is a source kind when it defines ``SOURCE``: its :class:`Source` subclass, whose
``config_model`` is the :class:`SourceConfig` subclass that validates ``[sources.NAME]``
tables with ``kind = "<the class's kind>"``. The registry holds every such module of this
package (found with :mod:`pkgutil`: a new built-in kind is one new module) and every module
named by an entry point of the group ``deskside.sources`` (a source kind from another
installed package; the entry point's name is the kind)::

    [project.entry-points."deskside.sources"]
    crm = "acme_deskside.crm"

Nothing else in deskside switches on a source's kind: the config, ``deskside check`` and the
tests read this registry. Importing a module must stay cheap (a heavy SDK is imported where
the source uses it), since the config loads every registered kind's model.
"""

from __future__ import annotations

import functools
import importlib
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
    "build_source",
    "config_union",
    "source_kinds",
]

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
    """Where it is declared, e.g. ``deskside.sources.sql``."""


@functools.cache
def source_kinds() -> Mapping[str, SourceKind]:
    """Every registered kind by name: the built-ins (alphabetical), then the installed ones.

    Raises :class:`SourceKindError` when a module breaks the contract or two declare one kind.
    """
    kinds: dict[str, SourceKind] = {}
    modules = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
    ]
    found: list[tuple[str | None, types.ModuleType]]
    found = [(None, module) for module in modules if hasattr(module, "SOURCE")]
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        loaded = entry_point.load()
        if not isinstance(loaded, types.ModuleType):
            raise SourceKindError(
                f"the entry point {entry_point.name} = {entry_point.value!r} ({ENTRY_POINT_GROUP}) "
                "must name a module that defines SOURCE"
            )
        found.append((entry_point.name, loaded))
    for name, module in found:
        declared = _declared(module)
        if name is not None and name != declared.kind:
            raise SourceKindError(
                f"the entry point {name!r} ({ENTRY_POINT_GROUP}) names {module.__name__}, whose "
                f"kind is {declared.kind!r}: name the entry point {declared.kind!r}"
            )
        if declared.kind in kinds:
            raise SourceKindError(
                f"two modules declare the source kind {declared.kind!r}: "
                f"{kinds[declared.kind].module} and {declared.module}"
            )
        kinds[declared.kind] = declared
    return types.MappingProxyType(kinds)


def _declared(module: types.ModuleType) -> SourceKind:
    """The kind ``module`` declares with ``SOURCE``, checked."""
    source = getattr(module, "SOURCE", None)
    where = module.__name__
    if not (isinstance(source, type) and issubclass(source, Source)):
        raise SourceKindError(f"{where}.SOURCE must be a subclass of deskside.sources.Source")
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
    (kind,) = [k for k in source_kinds().values() if type(config) is k.config]
    return kind.source(name, config)
