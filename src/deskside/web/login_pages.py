"""Logging in and out of the web UI: ``GET``/``POST /ui/login`` (a person's email and
password, or the admin password under any other name) and ``POST /ui/logout``.

Failed logins are limited per client (:class:`~deskside.web.auth.LoginLimiter`) and audited
naming the person, never what was typed; the login form carries its own CSRF token before
there is a session.
"""

from __future__ import annotations

import logging
import secrets
from functools import cache

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from deskside.web.auth import CSRF_FIELD, PasswordHash
from deskside.web.forms import read_form
from deskside.web.guard import ADMIN_NAME, Identity, directory_of, identify
from deskside.web.pages import UI_PREFIX, Pages
from deskside.web.roles import Role

__all__ = ["local_next", "login_routes"]

log = logging.getLogger("deskside.web")


def local_next(target: str | None) -> str:
    """``target`` when it is a path under ``/ui/`` of this server, else ``/ui/``: where a
    login (or a single sign-on) goes next."""
    if (
        target
        and target.startswith(UI_PREFIX + "/")
        and not target.startswith("//")
        and "\\" not in target
        and all(32 < ord(c) < 127 for c in target)
    ):
        return target
    return UI_PREFIX + "/"


@cache
def _unmatchable() -> PasswordHash:
    """A hash no password matches (of a random one), made on first use."""
    return PasswordHash.new(secrets.token_urlsafe(24))


def login_routes(pages: Pages, *, sso: bool) -> APIRouter:
    """The login and logout routes; ``sso``: the login page offers single sign-on."""
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())

    def login_page(
        request: Request, *, next: str, error: str | None = None, status: int = 200
    ) -> Response:
        auth = pages.auth_of(request)
        token, cookie = auth.login_token(request)
        response = pages.page(
            request,
            "login.html",
            session=None,
            status=status,
            title="Log in",
            login_token=token,
            next=next,
            error=error,
            sso=sso,
        )
        if cookie is not None:
            auth.set_login_cookie(response, request, cookie)
        return response

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
            known = PasswordHash.parse(hashed) if hashed is not None else _unmatchable()
            if not await run_in_threadpool(known.matches, password) or hashed is None:
                return None
            who = Identity(member.email, member.role, member.id, workspace=member.workspace)
            return who, member.generation
        if await pages.auth_of(request).check_password(password):
            return Identity(ADMIN_NAME, Role.admin), 0
        return None

    @router.get(UI_PREFIX + "/login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        if await identify(request) is not None:
            return pages.redirect(request, local_next(next))
        return login_page(request, next=local_next(next))

    @router.post(UI_PREFIX + "/login")
    async def login(request: Request) -> Response:
        auth = pages.auth_of(request)
        client = request.client.host if request.client else "-"
        form = await read_form(request)
        target = local_next(form.get("next"))
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
        response = pages.redirect(request, target)
        pages.start_session(response, request, who.person_id, generation, who.workspace)
        return response

    @router.post(UI_PREFIX + "/logout")
    async def logout(request: Request) -> Response:
        checked = await pages.changing(request)
        if isinstance(checked, Response):
            return checked
        response = pages.redirect(request, f"{UI_PREFIX}/login")
        pages.auth_of(request).clear_session(response, request)
        return response

    return router
