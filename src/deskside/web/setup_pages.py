"""The Setup page (``GET /ui/setup``): the values to paste into each helpdesk (built by
:func:`deskside.web.preview.desk_setups`), with this server's public address, and each
source's check; with ``[insights]``, the Help Scout webhook of the caller's workspace."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.config import Settings
from deskside.insights import DEFAULT_WORKSPACE, HELPSCOUT_WEBHOOK_PATH
from deskside.proxy import public_base_url
from deskside.service import SidebarService
from deskside.web.guard import identity_of
from deskside.web.pages import UI_PREFIX, Pages
from deskside.web.preview import DeskSetup, check_sources, desk_setups

__all__ = ["setup_routes", "webhook_path"]


def webhook_path(workspace: str) -> str:
    """Where Help Scout sends ``workspace``'s webhooks."""
    if workspace == DEFAULT_WORKSPACE:
        return HELPSCOUT_WEBHOOK_PATH
    return f"{HELPSCOUT_WEBHOOK_PATH}/{workspace}"


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
        desks = desk_setups(service, base, webhook)
        if pages.insights_enabled:
            desks = [_workspace_webhook(desk, base, session.workspace) for desk in desks]
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


def _workspace_webhook(desk: DeskSetup, base: str, workspace: str) -> DeskSetup:
    """``desk`` as the Setup page of ``workspace`` shows it: the Help Scout webhook's URL,
    which :func:`~deskside.web.preview.desk_setups` gives at the default workspace's path,
    at ``workspace``'s (:func:`webhook_path`)."""
    if desk.kind != "helpscout_webhook":
        return desk
    url = base.rstrip("/") + webhook_path(workspace)
    values = [
        replace(value, value=url) if value.label == "Webhook URL" else value
        for value in desk.values
    ]
    return replace(desk, values=values)
