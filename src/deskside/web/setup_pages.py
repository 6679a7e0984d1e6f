"""The Setup page (``GET /ui/setup``): the values to paste into each helpdesk (built by
:func:`deskside.web.preview.desk_setups`), with this server's public address, and each
source's check; with ``[insights]``, the Help Scout webhook of the caller's workspace."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.config import Settings
from deskside.proxy import public_base_url
from deskside.service import SidebarService
from deskside.web.guard import identity_of
from deskside.web.pages import UI_PREFIX, Pages
from deskside.web.preview import check_sources, desk_setups

__all__ = ["setup_routes"]


def setup_routes(pages: Pages, settings: Settings, service: SidebarService) -> APIRouter:
    """The Setup page's route (with the Help Scout webhook when ``pages.insights_enabled``)."""
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())

    @router.get(UI_PREFIX + "/setup")
    async def setup_view(request: Request) -> Response:
        session = identity_of(request)
        base = public_base_url(request, settings.server.public_url)
        webhook = None
        if pages.insights_enabled:
            helpscout = settings.insights.of_workspace(session.workspace).helpscout
            webhook = [s.get_secret_value() for s in helpscout.webhook_secret]
        desks = desk_setups(service, base, webhook, workspace=session.workspace)
        return pages.page(
            request,
            "setup.html",
            session=session,
            title="Setup",
            active="setup",
            desks=desks,
            checks=await check_sources(service),
        )

    return router
