"""The web UI under ``/ui/``: login, Preview, Setup and (with ``[insights]``) the insights
pages, server-rendered with Jinja2 (autoescaped) from the same app, with its own CSS and a few
lines of JS at ``/ui/static``.

Every page but the login (and the invitations) needs a session of at least the role the
permission table (:mod:`deskside.web.roles`) names (a GET without one is sent to ``/ui/login``);
every POST needs the session's CSRF token as well (see :mod:`deskside.web.pages`). The People
page and the invitations need the insights store (:mod:`deskside.web.people_pages`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import replace
from functools import cache, partial
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

from deskside.config import Settings
from deskside.proxy import public_base_url
from deskside.service import SidebarService
from deskside.web.auth import CSRF_FIELD, PasswordHash, read_form
from deskside.web.guard import ADMIN_NAME, Identity, directory_of, identify, identity_of
from deskside.web.pages import STATIC_DIR, UI_PREFIX, Pages
from deskside.web.preview import (
    DeskSetup,
    check_sources,
    desk_setups,
    parse_emails,
    preview,
    probe_desk,
)
from deskside.web.roles import Role

if TYPE_CHECKING:
    from deskside.insights.service import InsightsService

__all__ = ["INSIGHTS_SECTIONS", "UI_PREFIX", "web_routes"]

log = logging.getLogger("deskside.web")

INSIGHTS_SECTIONS = ("/insights", "/topics", "/connection", "/reports")
"""The paths under ``/ui`` of the insights pages (see :mod:`deskside.web.insights_pages`)."""


def _local_next(target: str | None) -> str:
    """``target`` when it is a path under ``/ui/`` of this server, else ``/ui/``."""
    if (
        target
        and target.startswith(UI_PREFIX + "/")
        and not target.startswith("//")
        and "\\" not in target
        and all(32 < ord(c) < 127 for c in target)
    ):
        return target
    return UI_PREFIX + "/"


def web_routes(
    settings: Settings, service: SidebarService, insights: InsightsService | None
) -> APIRouter:
    """The UI's routes and its static files; include only when ``settings.admin.ui_enabled``."""
    pages = Pages(settings, insights_enabled=insights is not None)
    auth_of, redirect = pages.auth_of, pages.redirect
    page, refusal, changing = pages.page, pages.refusal, pages.changing
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())
    router.mount(f"{UI_PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    # ── Login ────────────────────────────────────────────────────────────────────────────────

    @router.get(UI_PREFIX)
    async def ui_root(request: Request) -> Response:
        return redirect(request, UI_PREFIX + "/")

    @router.get(UI_PREFIX + "/")
    async def home(request: Request) -> Response:
        return redirect(request, f"{UI_PREFIX}/insights" if insights else f"{UI_PREFIX}/preview")

    @router.get(UI_PREFIX + "/login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        if await identify(request) is not None:
            return redirect(request, _local_next(next))
        return login_page(request, next=_local_next(next))

    def login_page(
        request: Request, *, next: str, error: str | None = None, status: int = 200
    ) -> Response:
        auth = auth_of(request)
        token, cookie = auth.login_token(request)
        response = page(
            request,
            "login.html",
            session=None,
            status=status,
            title="Log in",
            login_token=token,
            next=next,
            error=error,
            sso=insights is not None and settings.ui.oidc is not None,
        )
        if cookie is not None:
            auth.set_login_cookie(response, request, cookie)
        return response

    @router.post(UI_PREFIX + "/login")
    async def login(request: Request) -> Response:
        auth = auth_of(request)
        client = request.client.host if request.client else "-"
        form = await read_form(request)
        target = _local_next(form.get("next"))
        wait = auth.limiter.retry_after(client)
        if wait > 0:
            log.warning("ui: login from %s refused: too many failed attempts", client)
            response = login_page(
                request,
                next=target,
                error=f"Too many failed attempts: try again in {wait:.0f} seconds.",
                status=429,
            )
            response.headers["retry-after"] = str(int(wait) + 1)
            return response
        if not auth.login_token_valid(request, form.get(CSRF_FIELD)):
            return login_page(
                request,
                next=target,
                error="The login form expired: please try again.",
                status=403,
            )
        checked = await check_login(request, form.get("username", ""), form.get("password", ""))
        directory = directory_of(request)
        if checked is None:
            auth.limiter.failed(client)
            log.warning("ui: failed login from %s", client)
            if directory is not None:  # names the person, never what was typed
                named = await directory.login_of(form.get("username", ""))
                detail = f"person {named[0].id}" if named else "not a person: the admin password"
                await directory.record(f"ui:{client}", "login_failed", detail)
            return login_page(request, next=target, error="Wrong password.", status=401)
        who, generation = checked
        auth.limiter.succeeded(client)
        log.info("ui: %s logged in from %s", "a person" if who.person_id else ADMIN_NAME, client)
        if directory is not None:
            await directory.record(f"ui:{who.name}", "login", f"from {client}")
        response = redirect(request, target)
        pages.start_session(response, request, who.person_id, generation, who.workspace)
        return response

    @cache
    def unmatchable() -> PasswordHash:
        """A hash no password matches (of a random one), made on first use."""
        return PasswordHash.new(secrets.token_urlsafe(24))

    async def check_login(
        request: Request, username: str, password: str
    ) -> tuple[Identity, int] | None:
        """Who ``username`` and ``password`` log in as (in their first workspace), and their
        session generation: the person of that email, else (any other name, ``admin`` or none)
        the admin password; None when they do not match."""
        if not password or len(password) > 1024:
            return None
        directory = directory_of(request)
        found = await directory.login_of(username) if directory is not None else None
        if found is not None:
            member, hashed = found
            # Invited, without a password yet: as slow as a wrong password, and as refused
            known = PasswordHash.parse(hashed) if hashed is not None else unmatchable()
            if not await run_in_threadpool(known.matches, password) or hashed is None:
                return None
            who = Identity(member.email, member.role, member.id, workspace=member.workspace)
            return who, member.generation
        if await auth_of(request).check_password(password):
            return Identity(ADMIN_NAME, Role.admin), 0
        return None

    @router.post(UI_PREFIX + "/logout")
    async def logout(request: Request) -> Response:
        checked = await changing(request)
        if isinstance(checked, Response):
            return checked
        response = redirect(request, f"{UI_PREFIX}/login")
        auth_of(request).clear_session(response, request)
        return response

    # ── Preview ──────────────────────────────────────────────────────────────────────────────

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
        return page(
            request,
            "preview.html",
            session=session,
            title="Preview",
            active="preview",
            email=raw,
            result=result,
            probed_email=probed["email"] if probed else None,
            error=error,
            demo_emails=["owner@acme.example", "pat@initech.example", "mallory@evil.example"],
        )

    @router.get(UI_PREFIX + "/preview")
    async def preview_view(request: Request, email: str = "") -> Response:
        return await preview_page(request, identity_of(request), email[:2000])

    @router.post(UI_PREFIX + "/preview/probe")
    async def probe_view(request: Request) -> Response:
        checked = await changing(request)
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

    # ── Setup ────────────────────────────────────────────────────────────────────────────────

    @router.get(UI_PREFIX + "/setup")
    async def setup_view(request: Request) -> Response:
        session = identity_of(request)
        base = public_base_url(request, settings.server.public_url)
        webhook = None
        if insights is not None:
            helpscout = settings.insights.of_workspace(session.workspace).helpscout
            webhook = [s.get_secret_value() for s in helpscout.webhook_secret]
        desks = desk_setups(service, base, webhook)
        if insights is not None:
            desks = [_workspace_webhook(desk, base, session.workspace) for desk in desks]
        return page(
            request,
            "setup.html",
            session=session,
            title="Setup",
            active="setup",
            desks=desks,
            checks=await check_sources(service),
        )

    # ── Insights ─────────────────────────────────────────────────────────────────────────────

    if insights is not None:
        # Imported only here: the insights pages need the insights stack (scikit-learn, SciPy,
        # alembic, lxml), which a process without [insights] never loads.
        from deskside.web.insights_pages import insights_routes
        from deskside.web.people_pages import people_routes
        from deskside.web.workspace_pages import workspace_choices, workspace_routes

        pages.workspace_choices = partial(workspace_choices, insights)
        router.include_router(insights_routes(pages, settings, service, insights))
        router.include_router(people_routes(pages, settings, insights))
        router.include_router(workspace_routes(pages, insights))
        if settings.ui.oidc is not None:
            from deskside.web.sso import sso_routes

            router.include_router(sso_routes(pages, settings, insights, _local_next))
    else:

        async def insights_off(request: Request) -> Response:
            """Any insights page, on a server without ``[insights]``."""
            if request.method == "POST":
                checked = await changing(request)
                if isinstance(checked, Response):
                    return checked
                session = checked[0]
            else:
                session = identity_of(request)
            message = (
                "Insights are off: add an [insights] table to the config to store and classify "
                "Help Scout conversations."
            )
            if request.url.path.removeprefix(pages.root(request)).startswith(UI_PREFIX + "/people"):
                message = (
                    "People and roles are kept in the insights store: add an [insights] table "
                    "to the config. Until then, log in with the admin password."
                )
            return refusal(request, session, 404, message)

        for section in (*INSIGHTS_SECTIONS, "/people"):
            for path in (UI_PREFIX + section, UI_PREFIX + section + "/{rest:path}"):
                router.add_api_route(path, insights_off, methods=["GET", "POST"])

    # ── Anything else ────────────────────────────────────────────────────────────────────────

    @router.get(UI_PREFIX + "/{path:path}")
    async def not_found(request: Request, path: str) -> Response:
        """A page, not JSON, for a path under ``/ui/`` that names none (the last route)."""
        session = identity_of(request)
        back = ("/", "Back to the start")
        message = f"There is no page {UI_PREFIX}/{path}."
        return refusal(request, session, 404, message, title="Not found", active=None, back=back)

    return router


def _workspace_webhook(desk: DeskSetup, base: str, workspace: str) -> DeskSetup:
    """``desk`` as the Setup page of ``workspace`` shows it: the Help Scout webhook's URL is
    that workspace's."""
    from deskside.web.workspace_pages import webhook_path

    if desk.kind != "helpscout_webhook":
        return desk
    url = base.rstrip("/") + webhook_path(workspace)
    values = [
        replace(value, value=url) if value.label == "Webhook URL" else value
        for value in desk.values
    ]
    return replace(desk, values=values)
