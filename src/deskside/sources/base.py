"""The one interface every source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import Field

from deskside.configtypes import ConfigModel
from deskside.lookup import Lookup

__all__ = ["Record", "Source", "SourceConfig"]

Record = dict[str, Any]
"""One row or object a source found: column/key names to values."""


class SourceConfig(ConfigModel):
    """Keys every ``[sources.NAME]`` table accepts besides its own."""

    label: str | None = None
    """How the source is named to agents, e.g. in "Billing unavailable"; default: NAME."""
    cache_ttl_seconds: float = Field(default=300, ge=0)
    """How long a found answer is reused for the same addresses; 0 turns caching off."""


class Source(ABC):
    """Where customer data lives. ``fetch`` returns every record for the lookup's addresses.

    A source raises :class:`~deskside.errors.SourceError` (or anything else) when it cannot
    answer; the resolver contains it. An empty list means "no such customer here".
    """

    kind: ClassVar[str]

    def __init__(self, name: str, config: SourceConfig) -> None:
        self.name = name
        self.label = config.label or name.replace("_", " ").capitalize()
        self.cache_ttl_seconds = config.cache_ttl_seconds

    @abstractmethod
    async def fetch(self, lookup: Lookup) -> list[Record]:
        """Every record for ``lookup.emails``; ``[]`` when there is none."""

    async def check(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Raise if the source cannot be reached; used by ``deskside check`` and ``/readyz``."""

    async def aclose(self) -> None:  # noqa: B027
        """Release connections; called once when the server stops."""
