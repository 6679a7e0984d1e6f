"""The sidebar service without HTTP: a lookup in, a :class:`Sidebar` out. Shared by the server,
``deskside preview`` and ``deskside check``."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property

from deskside.admission import Admission
from deskside.cache import build_cache
from deskside.card import Sidebar
from deskside.config import Settings
from deskside.layout import CardLayout, build_sidebar
from deskside.lookup import Lookup
from deskside.protocols import Protocol, build_protocol
from deskside.resolve import Profile, Resolver
from deskside.sources import build_source

__all__ = ["BUSY", "Answer", "SidebarService"]

BUSY = "skipped: the server is busy"
"""Why a source shows nothing in a shed answer (see :mod:`deskside.admission`)."""


@dataclass(frozen=True)
class Answer:
    """A lookup's answer: the sources' results, and the sidebar laid out from them when it is
    first asked for (an answer already encoded for the helpdesk is never laid out again)."""

    profile: Profile
    card: CardLayout
    reuse_key: Hashable | None = None
    """Equal for answers laid out from the same cached data; None for fresh data."""

    @property
    def sidebar(self) -> Sidebar:
        return self._laid_out[0]

    @property
    def problems(self) -> list[str]:
        """Card expressions that failed for this customer (also logged)."""
        return self._laid_out[1]

    @cached_property
    def _laid_out(self) -> tuple[Sidebar, list[str]]:
        problems: list[str] = []
        return build_sidebar(self.card, self.profile, problems=problems), problems


class SidebarService:
    """The sources, resolver, card layout and helpdesk protocols one config describes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resolver = Resolver(
            {name: build_source(name, config) for name, config in settings.sources.items()},
            deadline_seconds=settings.server.deadline_ms / 1000,
            cache=build_cache(settings.cache.get_secret_value()),
        )
        self.admission = Admission(
            settings.server.deadline_ms / 1000, enabled=settings.server.shed_load
        )
        """Decides which helpdesk requests get :meth:`shed` answers instead (the server asks)."""
        self.protocols: list[Protocol] = [
            build_protocol(name, config) for name, config in settings.helpdesks.items()
        ]

    async def answer(
        self, lookup: Lookup, *, refresh: bool = False, since: float | None = None
    ) -> Answer:
        """Resolve ``lookup`` within the deadline (from ``since``, the event loop's time the
        request arrived, else now); its sidebar is laid out when first asked for."""
        return self._answer(await self.resolver.resolve(lookup, refresh=refresh, since=since))

    async def shed(self, lookup: Lookup) -> Answer:
        """``lookup``'s sidebar from the cache alone, without asking any source: what a worker
        that cannot answer in time says at once (a source with nothing cached is unavailable)."""
        return self._answer(await self.resolver.from_cache(lookup, BUSY))

    def _answer(self, profile: Profile) -> Answer:
        return Answer(profile=profile, card=self.settings.card, reuse_key=_reuse_key(profile))

    async def aclose(self) -> None:
        await self.admission.aclose()
        await self.resolver.aclose()


def _reuse_key(profile: Profile) -> Hashable | None:
    """What a sidebar laid out from ``profile`` depends on, when all of it came from the cache:
    the addresses, what the helpdesk said and which cached answers were used."""
    results = profile.results.values()
    if not all(result.cached and result.ok for result in results):
        return None
    key = (
        profile.lookup.emails,
        tuple(sorted(profile.lookup.context.items(), key=str)),
        tuple((name, result.fetched_at) for name, result in profile.results.items()),
    )
    try:
        hash(key)
    except TypeError:
        return None
    return key
