"""``kind = "python"``: the customer's records from a function of yours.

``function = "package.module:function"`` is imported when the config is loaded. It is called
as ``function(lookup, **options)`` and returns a mapping (one record), a list of mappings, or
``None``/``[]`` (not found). ``async def`` functions are awaited; plain ones run in a worker
thread, so a slow one never holds up the other sources.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import field_validator, model_validator

from deskside.errors import SourceError
from deskside.lookup import Lookup
from deskside.sources.base import Record, Source, SourceConfig

__all__ = ["SOURCE", "PythonSource", "PythonSourceConfig", "import_function"]

log = logging.getLogger(__name__)


class PythonSourceConfig(SourceConfig):
    """Which function to call, and the keyword arguments it gets besides the lookup."""

    kind: Literal["python"]
    function: str
    """``package.module:function`` (or ``module:Class.method``), importable by the server."""
    options: dict[str, Any] = {}
    """Keyword arguments: ``{ region = "eu" }`` calls ``function(lookup, region="eu")``."""

    @field_validator("function")
    @classmethod
    def _importable(cls, reference: str) -> str:
        import_function(reference)
        return reference

    @model_validator(mode="after")
    def _accepts_options(self) -> PythonSourceConfig:
        function = import_function(self.function)
        try:
            signature = inspect.signature(function)
        except (TypeError, ValueError):  # some builtins have none: nothing to check
            return self
        try:
            signature.bind(None, **self.options)
        except TypeError as exc:
            raise ValueError(
                f"{self.function} cannot be called as {self.function}(lookup"
                + "".join(f", {name}=…" for name in self.options)
                + f"): {exc}"
            ) from None
        return self


def import_function(reference: str) -> Callable[..., Any]:
    """The callable ``reference`` (``module:attribute.path``) names; ``ValueError`` if none."""
    module_name, colon, attribute_path = reference.partition(":")
    if not colon or not module_name or not attribute_path:
        raise ValueError(f"{reference!r} is not a function reference: write package.module:name")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import {module_name}: {exc} (is it installed, or on PYTHONPATH?)"
        ) from None
    except Exception as exc:
        raise ValueError(
            f"cannot import {module_name}: it raised {type(exc).__name__}: {exc}"
        ) from None
    for attribute in attribute_path.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise ValueError(f"{module_name} has no attribute {attribute_path}") from None
    if not callable(target):
        raise ValueError(f"{reference} is not callable (it is a {type(target).__name__})")
    return target  # type: ignore[no-any-return]


class PythonSource(Source):
    """Calls the configured function; what it returns becomes the source's records.

    Anything but a mapping, a list of mappings or ``None`` is a :class:`SourceError`; so is an
    exception the function raises (where it raised is logged; its message, which may hold the
    addresses, is neither logged nor shown).
    """

    kind = "python"
    config_model = PythonSourceConfig

    def __init__(self, name: str, config: PythonSourceConfig) -> None:
        super().__init__(name, config)
        self._reference = config.function
        self._function = import_function(config.function)
        self._options = dict(config.options)
        self._is_async = _is_async(self._function)

    async def fetch(self, lookup: Lookup) -> list[Record]:
        try:
            if self._is_async:
                result = await self._function(lookup, **self._options)
            else:
                result = await asyncio.to_thread(self._function, lookup, **self._options)
                if inspect.isawaitable(result):
                    result = await result
        except Exception as exc:
            where = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
            log.error(  # where it raised, not its message: that may hold the addresses
                "source %s: %s raised %s\n%s", self.name, self._reference, type(exc).__name__, where
            )
            raise SourceError(f"{self._reference} raised {type(exc).__name__}") from exc
        return _as_records(self._reference, result)


def _is_async(function: Callable[..., Any]) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004 - async callable instances too
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)


def _as_records(reference: str, result: Any) -> list[Record]:
    if result is None:
        return []
    if isinstance(result, Mapping):
        return [dict(result)]
    if isinstance(result, list | tuple):
        for position, item in enumerate(result):
            if not isinstance(item, Mapping):
                raise SourceError(
                    f"{reference} returned a list whose item {position} is a "
                    f"{type(item).__name__}, not a mapping"
                )
        return [dict(item) for item in result]
    raise SourceError(
        f"{reference} returned a {type(result).__name__}: "
        "expected a mapping, a list of mappings, or None"
    )


SOURCE = PythonSource
"""This module's source kind (see :mod:`deskside.sources`)."""
