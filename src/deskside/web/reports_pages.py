"""The Reports page (``/ui/reports``): the bug and feature reports of the caller's workspace,
each exported to (or updated in) a GitHub issue on request.

Only a server with an ``[insights]`` table imports this module (see
:func:`deskside.web.routes.web_routes`).
"""

from __future__ import annotations

import os
from functools import partial
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.insights.models import row_id
from deskside.insights.privacy import erasure
from deskside.insights.reports import github as github_issues
from deskside.insights.reports import report as reporting
from deskside.insights.service import InsightsService, WorkspaceService
from deskside.web.pages import UI_PREFIX, Pages, safe_href
from deskside.web.workspace_pages import LiveWorkspace

__all__ = ["reports_routes"]


def reports_routes(pages: Pages, insights: InsightsService) -> APIRouter:
    """The Reports page and its GitHub export."""
    page, refusal, redirect = pages.page, pages.refusal, pages.redirect
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())
    caller = LiveWorkspace(pages, insights)
    viewing, deciding = caller.viewing, caller.deciding

    @router.get(UI_PREFIX + "/reports")
    async def reports_view(request: Request) -> Response:
        viewed = await viewing(request)
        if isinstance(viewed, Response):
            return viewed
        session, live = viewed
        found = await reporting.build_reports(live.store, trending=await live.trends())
        return page(
            request,
            "reports.html",
            session=session,
            title="Reports",
            active="reports",
            reports=found,
            github=live.settings.reports.github_repository if github_token(live) else None,
            exported=request.query_params.get("exported"),
            issue=safe_href(request.query_params.get("issue")),
        )

    def github_token(live: WorkspaceService) -> str:
        configured = live.settings.reports.github_token
        if configured is not None:
            return configured.get_secret_value()
        return os.environ.get("GITHUB_TOKEN", "")

    @router.post(UI_PREFIX + "/reports/{topic_id}/export/github")
    async def export_view(request: Request, topic_id: str) -> Response:
        """Open the topic's GitHub issue, or update the one opened before."""
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, _form, live = decided
        options = live.settings.reports
        token = github_token(live)
        failed = partial(
            refusal,
            request,
            session,
            title="Reports",
            active="reports",
            back=("/reports", "Back to Reports"),
        )
        if not options.github_repository or not token:
            return failed(400, "Set [insights.reports] github_repository and github_token.")
        topic = row_id(topic_id)
        found = (
            await reporting.build_reports(
                live.store, trending=await live.trends(), topic_ids=[topic]
            )
            if topic is not None
            else []
        )
        if not found:
            return failed(404, f"No bug or feature report for topic {topic_id}.")
        try:
            async with github_issues.GitHubIssues(
                options.github_repository, token, options.github_api_url, by=session.actor
            ) as github:
                result = await github.export(live.store, found[0])
                exported = [found[0].topic_id]
                await erasure.rewrite_erased_exports_quietly(live.store, github, exported=exported)
        except github_issues.GitHubError as exc:
            return failed(502, f"GitHub refused the export: {exc}")
        query = urlencode({"exported": str(topic), "issue": result.url})
        return redirect(request, f"{UI_PREFIX}/reports?{query}#topic-{topic}")

    return router
