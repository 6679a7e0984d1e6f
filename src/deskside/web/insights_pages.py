"""The web UI's Insights page (labels, the chart, relabelling) and the Topics pages (rename,
split; merging is :mod:`deskside.web.merge_pages`'s).

Only a server with an ``[insights]`` table imports this module (it needs the insights stack);
see :func:`deskside.web.routes.web_routes`.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.config import Settings
from deskside.insights.analysis import merges
from deskside.insights.analysis.engine import UnknownConversation, UnknownTopic
from deskside.insights.analysis.labels import LABELS, UNSURE
from deskside.insights.models import row_id
from deskside.insights.reports import facts as customer_facts
from deskside.insights.reports import report as reporting
from deskside.insights.service import InsightsService, WorkspaceService
from deskside.service import SidebarService
from deskside.web import dashboard
from deskside.web.guard import Identity
from deskside.web.pages import UI_PREFIX, Pages, conversation_ref, count_of
from deskside.web.workspace_pages import LiveWorkspace, form_ids

__all__ = ["insights_routes"]

log = logging.getLogger("deskside.web")

FILTERS = (*LABELS, "unlabelled", UNSURE)
"""What the conversation list can be narrowed to (``?label=``)."""


def insights_routes(
    pages: Pages, settings: Settings, service: SidebarService, insights: InsightsService
) -> APIRouter:
    """The Insights and Topics pages; a topic's report reads plans and revenue through
    ``service``'s sources."""
    page, refusal, redirect = pages.page, pages.refusal, pages.redirect
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())
    caller = LiveWorkspace(pages, insights)
    viewing, deciding = caller.viewing, caller.deciding

    @router.get(UI_PREFIX + "/insights")
    async def insights_view(request: Request, label: str | None = None) -> Response:
        viewed = await viewing(request)
        if isinstance(viewed, Response):
            return viewed
        session, live = viewed
        chosen = label if label in FILTERS else None
        summary = await dashboard.overview(live.store)
        rows = await dashboard.conversations(live.store, label=chosen)
        topics = await dashboard.topics(live.store, await live.trends())
        changed = None  # the relabelled conversation, as the page names it
        relabelled = row_id(request.query_params.get("relabelled", ""))
        if relabelled is not None:
            number = await dashboard.conversation_number(live.store, relabelled)
            changed = conversation_ref(number, relabelled)
        return page(
            request,
            "insights.html",
            session=session,
            title="Insights",
            active="insights",
            overview=summary,
            series=dashboard.SERIES,
            conversations=rows,
            label=chosen,
            topics=topics[:10],
            topic_count=len(topics),
            topic_names={topic.id: topic.name for topic in topics},
            changed=changed,
            changed_label=request.query_params.get("label_now"),
        )

    @router.post(UI_PREFIX + "/insights/conversations/{conversation_id}/label")
    async def relabel_view(request: Request, conversation_id: str) -> Response:
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, form, live = decided
        shown = form.get("filter")
        query = {"label": shown} if shown in FILTERS else {}
        back = ("/insights" + (f"?{urlencode(query)}" if query else ""), "Back to Insights")
        conversation = row_id(conversation_id)
        try:
            if conversation is None:
                raise UnknownConversation(conversation_id)
            label = await live.analysis.relabel(
                conversation, form.get("label", ""), by=session.actor
            )
        except UnknownConversation:
            message = f"There is no conversation {conversation_id}."
            return refusal(request, session, 404, message, back=back)
        except ValueError as exc:
            return refusal(request, session, 400, str(exc), back=back)
        query = {"relabelled": str(conversation), "label_now": label, **query}
        return redirect(request, f"{UI_PREFIX}/insights?{urlencode(query)}#c{conversation}")

    # ── Topics ───────────────────────────────────────────────────────────────────────────────

    @router.get(UI_PREFIX + "/topics")
    async def topics_view(request: Request) -> Response:
        """Every topic, by label (Insights lists the first ten)."""
        viewed = await viewing(request)
        if isinstance(viewed, Response):
            return viewed
        session, live = viewed
        by_label: dict[str, list[Any]] = {label: [] for label in LABELS}
        for topic in await dashboard.topics(live.store, await live.trends()):
            by_label.setdefault(topic.label, []).append(topic)
        return page(
            request,
            "topics.html",
            session=session,
            title="Topics",
            active="insights",
            by_label={label: found for label, found in by_label.items() if found},
        )

    @router.get(UI_PREFIX + "/topics/{topic_id}")
    async def topic_view(request: Request, topic_id: str) -> Response:
        viewed = await viewing(request)
        if isinstance(viewed, Response):
            return viewed
        session, live = viewed
        trending = await live.trends()
        wanted = row_id(topic_id)
        found = await dashboard.topics(live.store, trending, ids=[wanted]) if wanted else []
        if not found:
            return no_topic(request, session, topic_id)
        topic = found[0]
        siblings = await dashboard.topics(live.store, trending, label=topic.label)
        report = None
        if topic.label in reporting.REPORT_KINDS:
            report = await _report(live, topic.id, trending)
        return page(
            request,
            "topic.html",
            session=session,
            title=topic.name,
            active="insights",
            topic=topic,
            report=report,
            conversations=await dashboard.conversations(live.store, topic=topic.id, limit=1000),
            merge_targets=[t for t in siblings if t.id != topic.id],
            done=request.query_params.get("done"),
            undo=count_of(request.query_params.get("undo", "")),
            undo_minutes=merges.UNDO_MINUTES,
        )

    async def _report(
        live: WorkspaceService, topic_id: int, trending: dict[int, str]
    ) -> reporting.Report | None:
        """The topic's report, with plans and revenue when the workspace's
        ``[insights.reports]`` says how to find them (through this server's own sources and
        cache)."""
        facts: customer_facts.CustomerFacts | None = None
        own = settings.model_copy(update={"insights": live.settings})
        try:
            facts = customer_facts.CustomerFacts(own, service.resolver.resolve)
        except ValueError:
            log.warning("ui: [insights.reports] plan or revenue_cents is not a valid expression")
        found = await reporting.build_reports(
            live.store,
            facts=facts if facts is not None and facts.configured else None,
            trending=trending,
            topic_ids=[topic_id],
        )
        return found[0] if found else None

    def no_topic(request: Request, session: Identity, topic_id: str) -> Response:
        message = f"There is no topic {topic_id} (any more)."
        return refusal(request, session, 404, message, back=("/topics", "All topics"))

    async def topic_action(request: Request, topic_id: str, action: str) -> Response:
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, form, live = decided
        analysis = live.analysis
        topic = row_id(topic_id)
        target, done = topic, action
        try:
            if topic is None:
                raise UnknownTopic(topic_id)
            if action == "rename":
                await analysis.rename_topic(topic, form.get("name", ""), by=session.actor)
            else:
                chosen = await form_ids(request, "conversation")
                target = await analysis.split_topic(
                    topic, chosen, form.get("name", "").strip() or None, by=session.actor
                )
        except UnknownTopic:
            return no_topic(request, session, topic_id)
        except ValueError as exc:
            back = (f"/topics/{topic}", "Back to the topic")
            return refusal(request, session, 400, str(exc), back=back)
        log.info("ui: topic %d: %s", topic, action)
        return redirect(request, f"{UI_PREFIX}/topics/{target}?{urlencode({'done': done})}")

    @router.post(UI_PREFIX + "/topics/{topic_id}/rename")
    async def rename_view(request: Request, topic_id: str) -> Response:
        return await topic_action(request, topic_id, "rename")

    @router.post(UI_PREFIX + "/topics/{topic_id}/split")
    async def split_view(request: Request, topic_id: str) -> Response:
        return await topic_action(request, topic_id, "split")

    return router
