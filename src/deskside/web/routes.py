"""The web UI under ``/ui/``: login, Preview, Setup and (with ``[insights]``) the insights
pages, server-rendered with Jinja2 (autoescaped) from the same app, with its own CSS and a few
lines of JS at ``/ui/static``.

Every page but the login (and the invitations) needs a session of at least the role the
permission table (:mod:`deskside.web.roles`) names (a GET without one is sent to ``/ui/login``);
every POST needs the session's CSRF token as well (see :mod:`deskside.web.pages`). Each page
has its module with its router; this one puts them together.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from fastapi import APIRouter
from starlette.staticfiles import StaticFiles

from deskside.config import Settings
from deskside.service import SidebarService
from deskside.web.fallback_pages import insights_off_routes, not_found_routes
from deskside.web.home_pages import home_routes
from deskside.web.login_pages import login_routes
from deskside.web.pages import STATIC_DIR, UI_PREFIX, Pages
from deskside.web.preview_pages import preview_routes
from deskside.web.setup_pages import setup_routes

if TYPE_CHECKING:  # imported when used: the insights stack loads only with [insights]
    from deskside.insights.service import InsightsService

__all__ = ["UI_PREFIX", "web_routes"]


def web_routes(
    settings: Settings, service: SidebarService, insights: InsightsService | None
) -> APIRouter:
    """The UI's routes and its static files; include only when ``settings.admin.ui_enabled``."""
    pages = Pages(settings, insights_enabled=insights is not None)
    sso = insights is not None and settings.ui.oidc is not None
    router = APIRouter(include_in_schema=False)
    router.mount(f"{UI_PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    router.include_router(home_routes(pages))
    router.include_router(login_routes(pages, sso=sso))
    router.include_router(preview_routes(pages, settings, service))
    router.include_router(setup_routes(pages, settings, service))
    if insights is not None:
        router.include_router(_insights_routes(pages, settings, service, insights))
    else:
        router.include_router(insights_off_routes(pages))
    router.include_router(not_found_routes(pages))  # the last: it takes every other path
    return router


def _insights_routes(
    pages: Pages, settings: Settings, service: SidebarService, insights: InsightsService
) -> APIRouter:
    """The insights pages (Insights, Topics, merges, Help Scout, Reports, Audit), People, the
    workspace switcher and (with ``[ui.oidc]``) single sign-on; the header's workspace
    switcher is set up on ``pages``."""
    # Imported only here: these pages need the insights stack (scikit-learn, SciPy, alembic,
    # lxml), which a process without [insights] never loads.
    from deskside.web.audit_pages import audit_routes
    from deskside.web.connection_pages import connection_routes
    from deskside.web.insights_pages import insights_routes
    from deskside.web.merge_pages import merge_routes
    from deskside.web.people_pages import people_routes
    from deskside.web.reports_pages import reports_routes
    from deskside.web.workspace_pages import workspace_choices, workspace_routes

    pages.workspace_choices = partial(workspace_choices, insights)
    router = APIRouter(include_in_schema=False)
    router.include_router(audit_routes(pages, insights))
    router.include_router(merge_routes(pages, insights))
    router.include_router(insights_routes(pages, settings, service, insights))
    router.include_router(connection_routes(pages, settings, service, insights))
    router.include_router(reports_routes(pages, insights))
    router.include_router(people_routes(pages, settings, insights))
    router.include_router(workspace_routes(pages, insights))
    if settings.ui.oidc is not None:
        from deskside.web.sso import sso_routes

        router.include_router(sso_routes(pages, settings, insights))
    return router
