"""What ``/ui`` answers where there is no page: the insights pages (and People) on a server
without ``[insights]`` say how to turn them on; any other path is a "Not found" page."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.web.guard import identity_of
from deskside.web.pages import UI_PREFIX, Pages

__all__ = ["INSIGHTS_SECTIONS", "insights_off_routes", "not_found_routes"]

INSIGHTS_SECTIONS = ("/insights", "/topics", "/connection", "/reports")
"""The paths under ``/ui`` of the insights pages (:mod:`~deskside.web.insights_pages`,
:mod:`~deskside.web.connection_pages`, :mod:`~deskside.web.reports_pages`)."""

_INSIGHTS_OFF = (
    "Insights are off: add an [insights] table to the config to store and classify "
    "Help Scout conversations."
)
_PEOPLE_OFF = (
    "People and roles are kept in the insights store: add an [insights] table to the config. "
    "Until then, log in with the admin password."
)


def insights_off_routes(pages: Pages) -> APIRouter:
    """Every insights page and the People page, GET and POST, on a server without
    ``[insights]``: a 404 page saying how to turn them on (a POST checked as every form)."""
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())

    async def insights_off(request: Request) -> Response:
        if request.method == "POST":
            checked = await pages.changing(request)
            if isinstance(checked, Response):
                return checked
            session = checked[0]
        else:
            session = identity_of(request)
        path = request.url.path.removeprefix(pages.root(request))
        message = _PEOPLE_OFF if path.startswith(UI_PREFIX + "/people") else _INSIGHTS_OFF
        return pages.refusal(request, session, 404, message)

    for section in (*INSIGHTS_SECTIONS, "/people"):
        for path in (UI_PREFIX + section, UI_PREFIX + section + "/{rest:path}"):
            router.add_api_route(path, insights_off, methods=["GET", "POST"])
    return router


def not_found_routes(pages: Pages) -> APIRouter:
    """A page, not JSON, for a path under ``/ui/`` that names none: include it last."""
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())

    @router.get(UI_PREFIX + "/{path:path}")
    async def not_found(request: Request, path: str) -> Response:
        session = identity_of(request)
        back = ("/", "Back to the start")
        message = f"There is no page {UI_PREFIX}/{path}."
        return pages.refusal(
            request, session, 404, message, title="Not found", active=None, back=back
        )

    return router
