"""Where ``/ui`` leads: to Insights on a server with ``[insights]``, else to Preview."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.web.pages import UI_PREFIX, Pages

__all__ = ["home_routes"]


def home_routes(pages: Pages) -> APIRouter:
    """``GET /ui`` and ``GET /ui/``: redirects to the first page (after the login)."""
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())
    first = f"{UI_PREFIX}/insights" if pages.insights_enabled else f"{UI_PREFIX}/preview"

    @router.get(UI_PREFIX)
    async def ui_root(request: Request) -> Response:
        return pages.redirect(request, UI_PREFIX + "/")

    @router.get(UI_PREFIX + "/")
    async def home(request: Request) -> Response:
        return pages.redirect(request, first)

    return router
