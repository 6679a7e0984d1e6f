"""Keeps the store's insight current: every conversation classified from what its customer
wrote, relabels by agents learnt from, and the topics regrouped.

One process at a time keeps it current (:meth:`Analysis.update`, under the store's
``analysis`` lease); any process reads the results from the store and records people's
decisions there. The classifier trains on the shipped examples, the configured example files and
every stored correction; when any process stores a correction, the next
:meth:`Analysis.classify_pending` retrains first, in a thread, while the old model keeps
answering, and the next :meth:`Analysis.group` regroups. Trending notes are stored with the
topics.

Conversations may be deleted while a pass works (webhooks keep arriving): each write keeps
only the conversations still stored, in the same transaction that writes (see
:func:`~.labelling.still_stored`), so a pass always finishes; the deleted ones leave the topic
model too.
"""

from __future__ import annotations

import asyncio
import logging

from deskside.insights.analysis.grouping import Grouping
from deskside.insights.analysis.labelling import UnknownConversation
from deskside.insights.analysis.merges import UnknownTopic
from deskside.insights.privacy.retention import Retention
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, finish_before_cancel, take_lease

__all__ = ["ANALYSIS_LEASE", "Analysis", "UnknownConversation", "UnknownTopic"]

log = logging.getLogger("deskside.insights.analysis")

ANALYSIS_LEASE = "analysis"
"""The store's lease of the process that keeps the analysis current."""
_LEASE_SECONDS = 30.0
"""How long the lease outlives its holder: another process takes over after that."""


class Analysis(Grouping):
    """Classification (:class:`~.labelling.Labelling`) and, through it, topics
    (:class:`~.grouping.Grouping`) for the conversations in ``store``, kept current by
    :meth:`update`."""

    def __init__(self, store: Store, settings: InsightsSettings) -> None:
        super().__init__(store, settings)
        self.leading = False
        """Whether this process holds the analysis lease, as of its last try to take it."""
        self._retention = Retention(store, settings)

    async def update(self) -> None:
        """Bring everything up to date: labels for what is new, then the topics and which of
        them trend. One process at a time (see the module docstring)."""
        await self._refresh_article_titles()
        await self.classify_pending()
        await self.group()
        await self.save_trends()

    async def update_unless_elsewhere(self, holder: str) -> bool:
        """:meth:`update` as ``holder`` (a name unique to this process) unless another process
        holds the analysis lease; the lease is kept meanwhile, and afterwards until it
        expires or is released. Whether it ran."""
        if not await take_lease(self.store, ANALYSIS_LEASE, holder, _LEASE_SECONDS):
            self.leading = False
            return False
        if not self.leading:  # taking over: another process may have grouped meanwhile
            self._grouped_with = None
            self.leading = True

        async def keep_lease() -> None:
            while True:
                await asyncio.sleep(_LEASE_SECONDS / 3)
                await finish_before_cancel(
                    take_lease(self.store, ANALYSIS_LEASE, holder, _LEASE_SECONDS)
                )

        keeper = asyncio.create_task(keep_lease())
        try:
            if await self._retention.keep():  # keep_days; an erasure or a purge removed rows
                self._grouped_with = None
            await self.update()
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        return True
