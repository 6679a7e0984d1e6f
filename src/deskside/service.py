"""The sidebar service without HTTP: a lookup in, a :class:`Sidebar` out. Shared by the server,
``deskside preview`` and ``deskside check``."""

from __future__ import annotations

from dataclasses import dataclass

from deskside.cache import build_cache
from deskside.card import Sidebar
from deskside.config import Settings
from deskside.layout import build_sidebar
from deskside.lookup import Lookup
from deskside.protocols import Protocol, build_protocol
from deskside.resolve import Profile, Resolver
from deskside.sources import build_source

__all__ = ["Answer", "SidebarService"]


@dataclass(frozen=True)
class Answer:
    profile: Profile
    sidebar: Sidebar
    problems: list[str]
    """Card expressions that failed for this customer (also logged)."""


class SidebarService:
    """The sources, resolver, card layout and helpdesk protocols one config describes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.resolver = Resolver(
            {name: build_source(name, config) for name, config in settings.sources.items()},
            deadline_seconds=settings.server.deadline_ms / 1000,
            cache=build_cache(settings.cache.get_secret_value()),
        )
        self.protocols: list[Protocol] = [
            build_protocol(name, config) for name, config in settings.helpdesks.items()
        ]

    async def answer(self, lookup: Lookup, *, refresh: bool = False) -> Answer:
        """Resolve ``lookup`` within the deadline and lay out its sidebar."""
        profile = await self.resolver.resolve(lookup, refresh=refresh)
        problems: list[str] = []
        sidebar = build_sidebar(self.settings.card, profile, problems=problems)
        return Answer(profile=profile, sidebar=sidebar, problems=problems)

    async def aclose(self) -> None:
        await self.resolver.aclose()
