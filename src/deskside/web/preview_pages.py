"""The Preview page: every helpdesk's answer for the addresses typed in (``GET /ui/preview``)
and a probe of one helpdesk's live endpoint (``POST /ui/preview/probe``); what they show is
built by :mod:`deskside.web.preview`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.config import Settings
from deskside.service import SidebarService
from deskside.web.guard import Identity, identity_of
from deskside.web.pages import UI_PREFIX, Pages
from deskside.web.preview import parse_emails, preview, probe_desk

__all__ = ["DEMO_EMAILS", "preview_routes"]

DEMO_EMAILS = ("owner@acme.example", "pat@initech.example", "mallory@evil.example")
"""The demo's customers, offered on the page."""


def preview_routes(pages: Pages, settings: Settings, service: SidebarService) -> APIRouter:
    """The Preview page's two routes, answering through the server's own ``service``."""
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())

    async def preview_page(
        request: Request,
        session: Identity,
        raw: str,
        probed: Mapping[str, Any] | None = None,
    ) -> Response:
        fold_plus = settings.lookup.fold_plus_addressing
        emails = parse_emails(raw, fold_plus=fold_plus) if raw.strip() else []
        result = await preview(service, emails) if emails else None
        if result is not None and probed:
            for desk in result.desks:
                if desk.name == probed["desk"]:
                    desk.probe = probed["report"]
        error = "Not an email address." if raw.strip() and not emails else None
        return pages.page(
            request,
            "preview.html",
            session=session,
            title="Preview",
            active="preview",
            email=raw,
            result=result,
            probed_email=probed["email"] if probed else None,
            error=error,
            demo_emails=list(DEMO_EMAILS),
        )

    @router.get(UI_PREFIX + "/preview")
    async def preview_view(request: Request, email: str = "") -> Response:
        return await preview_page(request, identity_of(request), email[:2000])

    @router.post(UI_PREFIX + "/preview/probe")
    async def probe_view(request: Request) -> Response:
        checked = await pages.changing(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        raw = form.get("email", "")[:2000]
        emails = parse_emails(raw, fold_plus=False)
        desk = form.get("desk", "")
        probed = None
        if emails:  # a helpdesk asks about one address: the first
            report = await probe_desk(service, desk, str(request.base_url), emails[0])
            if report is not None:
                probed = {"desk": desk, "report": report, "email": emails[0]}
        return await preview_page(request, session, raw, probed)

    return router
