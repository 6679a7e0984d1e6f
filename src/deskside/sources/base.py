"""The one interface every source implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pydantic import Field

from deskside.breaker import CircuitBreaker
from deskside.configtypes import ConfigModel
from deskside.errors import SourceError
from deskside.lookup import Lookup

__all__ = ["CHECK_LOOKUP", "Record", "Source", "SourceConfig", "SourceQueryError"]

Record = dict[str, Any]
"""One row or object a source found: column/key names to values."""

CHECK_LOOKUP = Lookup(emails=("check@deskside.invalid",))
"""What a check looks up: an address no customer has (``.invalid`` is reserved, RFC 2606)."""


class SourceQueryError(SourceError):
    """The source was reached but refused what its config asks of it (a query with a syntax
    error, a missing table or column): a mistake in the config key ``key``, e.g. ``query``."""

    def __init__(self, message: str, *, key: str) -> None:
        super().__init__(message)
        self.key = key


class SourceConfig(ConfigModel):
    """Keys every ``[sources.NAME]`` table accepts besides its own. A kind's model adds
    ``kind: Literal["<kind>"]``: that is how a table selects it."""

    label: str | None = None
    """How the source is named to agents, e.g. in "Billing unavailable"; default: NAME."""
    cache_ttl_seconds: float = Field(default=300, ge=0)
    """How long a found answer is reused for the same addresses; 0 turns caching off."""
    negative_ttl_seconds: float = Field(default=30, ge=0)
    """How long "not found" is reused (short: a new sign-up should show soon); 0: never."""
    stale_grace_seconds: float = Field(default=86_400, ge=0)
    """How long past ``cache_ttl_seconds`` a found answer is still shown, marked "as of …",
    when the source fails or is too slow; 0: never."""
    breaker_failures: int = Field(default=5, ge=1)
    """Failures in a row after which the source is skipped for ``breaker_reset_seconds``."""
    breaker_reset_seconds: float = Field(default=30, gt=0)
    """How long a failing source is skipped before one request tries it again."""


class Source(ABC):
    """Where customer data lives. ``fetch`` returns every record for the lookup's addresses.

    The contract every kind keeps (``tests/test_source_contract.py`` holds each to it): a
    failure is a :class:`~deskside.errors.SourceError` whose message never holds the looked-up
    addresses nor a secret; ``fetch`` may be cancelled at any await (the deadline) and then
    leaves no task or connection of its own behind; ``aclose`` releases every connection.

    A source raises :class:`~deskside.errors.SourceError` (or anything else) when it cannot
    answer; the resolver contains it. An empty list means "no such customer here".
    """

    kind: ClassVar[str]
    """What ``kind = "…"`` in ``[sources.NAME]`` selects; also shown by ``deskside check``."""
    config_model: ClassVar[type[SourceConfig]]
    """The model of this kind's table (its ``kind`` is ``Literal[<kind>]``)."""

    def __init__(self, name: str, config: SourceConfig) -> None:
        self.name = name
        self.label = config.label or name.replace("_", " ").capitalize()
        self.cache_ttl_seconds = config.cache_ttl_seconds
        self.negative_ttl_seconds = config.negative_ttl_seconds
        self.stale_grace_seconds = config.stale_grace_seconds
        self.breaker = CircuitBreaker(config.breaker_failures, config.breaker_reset_seconds)

    @abstractmethod
    async def fetch(self, lookup: Lookup) -> list[Record]:
        """Every record for ``lookup.emails``; ``[]`` when there is none."""

    async def check(self) -> None:  # noqa: B027 - optional hook with a do-nothing default
        """Raise :class:`~deskside.errors.SourceError` if the source could not answer a lookup:
        reach it and, where that is cheap, run what a lookup runs for :data:`CHECK_LOOKUP`
        (raising :class:`SourceQueryError` when what the config asks is refused). Used by
        ``deskside check`` and ``/readyz``, which bound how long it may take."""

    async def aclose(self) -> None:  # noqa: B027
        """Release connections; called once when the server stops."""
