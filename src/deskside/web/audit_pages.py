"""The Audit page under ``/ui/audit`` (admins): every change people made in the caller's
workspace, filtered by who, action and date range, and the same entries as CSV
(``/ui/audit.csv``) or JSON (``/ui/audit.json``) downloads. The entries come from
:mod:`deskside.insights.audit`: the workspace's own, and (for a workspace other than the
default one) the changes to its people, kept with the people in the default workspace's
database."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.insights import audit
from deskside.insights.service import InsightsService, WorkspaceService
from deskside.web.guard import identity_of
from deskside.web.pages import UI_PREFIX, Pages
from deskside.web.workspace_pages import LiveWorkspace

__all__ = ["audit_routes"]


def audit_routes(pages: Pages, insights: InsightsService) -> APIRouter:
    """The Audit page and its downloads, for :func:`deskside.web.routes.web_routes` to include."""
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())
    caller = LiveWorkspace(pages, insights)

    async def read(
        request: Request,
    ) -> tuple[list[audit.AuditEntry], dict[str, str], WorkspaceService] | Response:
        """The entries the query asks for, newest first, what it asked, and the workspace."""
        viewed = await caller.viewing(request)
        if isinstance(viewed, Response):
            return viewed
        session, live = viewed
        asked = {
            key: request.query_params.get(key, "")[:100]
            for key in ("who", "action", "since", "until")
        }
        try:
            wanted = audit.audit_filter(**asked)
        except ValueError as exc:
            return pages.refusal(request, session, 400, str(exc), title="Audit", active="audit")
        found = await audit.workspace_entries(live.store, insights.store, wanted, limit=10_000)
        return found, asked, live

    @router.get(UI_PREFIX + "/audit")
    async def audit_view(request: Request) -> Response:
        found = await read(request)
        if isinstance(found, Response):
            return found
        entries, asked, live = found
        actions = set(await audit.actions(live.store))
        if live.store is not insights.store:
            actions |= set(await audit.actions(insights.store))
        query = urlencode({key: value for key, value in asked.items() if value})
        return pages.page(
            request,
            "audit.html",
            session=identity_of(request),
            title="Audit",
            active="audit",
            entries=entries[:500],
            total=len(entries),
            asked=asked,
            actions=sorted(actions),
            query=f"?{query}" if query else "",
        )

    @router.get(UI_PREFIX + "/audit.csv")
    async def audit_csv(request: Request) -> Response:
        found = await read(request)
        if isinstance(found, Response):
            return found
        return Response(
            audit.to_csv(found[0]),
            media_type="text/csv; charset=utf-8",
            headers={**pages.headers, "Content-Disposition": 'attachment; filename="audit.csv"'},
        )

    @router.get(UI_PREFIX + "/audit.json")
    async def audit_json(request: Request) -> Response:
        found = await read(request)
        if isinstance(found, Response):
            return found
        return Response(
            json.dumps(audit.to_json(found[0]), indent=1),
            media_type="application/json",
            headers={**pages.headers, "Content-Disposition": 'attachment; filename="audit.json"'},
        )

    return router
