"""Merging topics in the web UI: the merge form names its target, a confirmation page shows
both topics (and the name the merged topic will have), and the topic page then offers an Undo
for :data:`~deskside.insights.analysis.merges.UNDO_MINUTES` minutes."""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.insights.analysis.merges import UNDO_MINUTES, UnknownTopic
from deskside.insights.models import row_id
from deskside.insights.service import InsightsService
from deskside.web import dashboard
from deskside.web.guard import Identity
from deskside.web.pages import UI_PREFIX, Pages
from deskside.web.workspace_pages import LiveWorkspace

__all__ = ["merge_routes"]

log = logging.getLogger("deskside.web")


def merge_routes(pages: Pages, insights: InsightsService) -> APIRouter:
    """The merge and undo routes, for :func:`deskside.web.routes.web_routes` to include."""
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())
    deciding = LiveWorkspace(pages, insights).deciding

    def no_topic(request: Request, session: Identity, topic_id: str) -> Response:
        message = f"There is no topic {topic_id} (any more)."
        return pages.refusal(request, session, 404, message, back=("/topics", "All topics"))

    @router.post(UI_PREFIX + "/topics/{topic_id}/merge")
    async def merge_view(request: Request, topic_id: str) -> Response:
        """Without ``confirmed``: the confirmation page; with it, the merge (into ``into``,
        named ``name`` when not blank), then the merged topic with its Undo."""
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, form, live = decided
        back = (f"/topics/{topic_id}", "Back to the topic")
        source, target = row_id(topic_id), row_id(form.get("into", ""))
        trending = await live.trends()
        found = await dashboard.topics(live.store, trending, ids=[source]) if source else []
        if source is None or not found:
            return no_topic(request, session, topic_id)
        if target is None:
            return pages.refusal(request, session, 400, "choose the topic to merge into", back=back)
        name = " ".join(form.get("name", "").split())[:200]
        if form.get("confirmed") != "1":
            targets = await dashboard.topics(live.store, trending, ids=[target])
            if not targets:
                return no_topic(request, session, str(target))
            if target == source or targets[0].label != found[0].label:
                message = "choose another topic of the same label to merge into"
                return pages.refusal(request, session, 400, message, back=back)
            return pages.page(
                request,
                "merge_confirm.html",
                session=session,
                title="Merge two topics",
                active="insights",
                source=found[0],
                target=targets[0],
                name=name,
                undo_minutes=UNDO_MINUTES,
            )
        try:
            merge = await live.analysis.merge_topics(
                source, target, by=session.actor, name=name or None
            )
        except UnknownTopic:
            return no_topic(request, session, str(target))
        except ValueError as exc:
            return pages.refusal(request, session, 400, str(exc), back=back)
        log.info("ui: topic %d: merge", source)
        query = urlencode({"done": "merge", "undo": str(merge)})
        return pages.redirect(request, f"{UI_PREFIX}/topics/{target}?{query}")

    @router.post(UI_PREFIX + "/topics/{topic_id}/undo-merge")
    async def undo_view(request: Request, topic_id: str) -> Response:
        """Undo the merge ``merge`` (within the minutes allowed): both topics as they were."""
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, form, live = decided
        back = (f"/topics/{topic_id}", "Back to the topic")
        merge = row_id(form.get("merge", ""))
        try:
            if merge is None:
                raise LookupError("no merge")
            restored = await live.analysis.undo_merge(merge, by=session.actor)
        except LookupError:
            return pages.refusal(request, session, 404, "There is no such merge.", back=back)
        except ValueError as exc:
            return pages.refusal(request, session, 409, f"Cannot undo: {exc}.", back=back)
        log.info("ui: topic %d: merge undone", restored)
        return pages.redirect(request, f"{UI_PREFIX}/topics/{restored}?done=unmerged")

    return router
