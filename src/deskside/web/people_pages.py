"""The web UI's People page (admins add people with a role, change roles, remove people,
create and revoke their API tokens, and read the audit), the invitation page where an invited
person sets their password, and "log out everywhere".

Only a server with an ``[insights]`` table imports this module: people live in the insights
store (:mod:`deskside.insights.people`). Invitation links and tokens are shown once, in the
answer to the form that made them, never in a URL.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.config import Settings
from deskside.insights.models import row_id
from deskside.insights.people import INVITATION_HOURS, People, PersonError, invitation_url
from deskside.insights.service import InsightsService
from deskside.proxy import public_base_url
from deskside.web.auth import CSRF_FIELD, PasswordHash
from deskside.web.forms import read_form
from deskside.web.guard import Identity, identity_of
from deskside.web.pages import UI_PREFIX, Pages
from deskside.web.roles import Role
from deskside.web.workspace_pages import app_people

__all__ = ["MIN_PASSWORD", "people_routes"]

log = logging.getLogger("deskside.web")

MIN_PASSWORD = 10
"""The shortest password a person may set."""


def people_routes(pages: Pages, settings: Settings, insights: InsightsService) -> APIRouter:
    """The routes, for :func:`deskside.web.routes.web_routes` to include."""
    page, refusal, redirect = pages.page, pages.refusal, pages.redirect
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())

    def people_of(request: Request, session: Identity | None) -> People | Response:
        if not insights.ready:
            message = "The insights database is not available yet; reload in a moment."
            return refusal(request, session, 503, message, title="People", active="people")
        people = app_people(request, insights)
        return people.of(session.workspace if session is not None else people.workspace)

    async def deciding(request: Request) -> tuple[Identity, dict[str, str], People] | Response:
        """A POST of the People page: :meth:`Pages.changing`, then :func:`people_of`."""
        checked = await pages.changing(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        people = people_of(request, session)
        return people if isinstance(people, Response) else (session, form, people)

    async def people_page(
        request: Request, session: Identity, *, shown: tuple[str, str] | None = None
    ) -> Response:
        people = people_of(request, session)
        if isinstance(people, Response):
            return people
        return page(
            request,
            "people.html",
            session=session,
            title="People",
            active="people",
            people=await people.listed(),
            tokens=await people.tokens(),
            audit=await people.audit(50),
            roles=[role.name for role in Role],
            shown=shown,
            done=request.query_params.get("done"),
            invitation_hours=INVITATION_HOURS,
        )

    @router.get(UI_PREFIX + "/people")
    async def people_view(request: Request) -> Response:
        return await people_page(request, identity_of(request))

    @router.post(UI_PREFIX + "/people")
    async def add_person(request: Request) -> Response:
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, form, people = decided
        email = form.get("email", "").strip()
        try:
            _, token = await people.add(email, Role.parse(form.get("role", "")), by=session.actor)
        except (PersonError, ValueError) as exc:
            return failed(request, session, 400, str(exc))
        if token is None:  # a person of another workspace: no new password to set
            return redirect(request, f"{UI_PREFIX}/people?done=joined")
        link = invitation_url(public_base_url(request, settings.server.public_url), token)
        return await people_page(request, session, shown=(f"Invitation link for {email}", link))

    def failed(request: Request, session: Identity, status: int, message: str) -> Response:
        back = ("/people", "Back to People")
        return refusal(
            request, session, status, message, title="People", active="people", back=back
        )

    @router.post(UI_PREFIX + "/people/{person_id}/{action}")
    async def person_action(request: Request, person_id: str, action: str) -> Response:
        """``role`` (to the form's ``role``), ``remove``, ``invite`` (a new invitation link)
        or ``token`` (a new API token named the form's ``name``)."""
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, form, people = decided
        wanted = row_id(person_id)
        found = [p for p in await people.listed() if p.id == wanted]
        if not found:
            return failed(request, session, 404, f"There is no person {person_id}.")
        email, by = found[0].email, session.actor
        try:
            if action == "role":
                await people.set_role(email, Role.parse(form.get("role", "")), by=by)
            elif action == "remove":
                await people.remove(email, by=by)
            elif action == "invite":
                token = await people.invite_again(email, by=by)
                base = public_base_url(request, settings.server.public_url)
                shown = (f"Invitation link for {email}", invitation_url(base, token))
                return await people_page(request, session, shown=shown)
            elif action == "token":
                _, token = await people.create_token(email, form.get("name", ""), by=by)
                shown = (f"API token for {email} (as {found[0].role.name})", token)
                return await people_page(request, session, shown=shown)
            else:
                return failed(request, session, 404, f"No such action: {action}.")
        except (PersonError, ValueError) as exc:
            return failed(request, session, 400, str(exc))
        return redirect(request, f"{UI_PREFIX}/people?done={action}")

    @router.post(UI_PREFIX + "/tokens/{token_id}/revoke")
    async def revoke_token(request: Request, token_id: str) -> Response:
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, _form, people = decided
        wanted = row_id(token_id)
        try:
            if wanted is None:
                raise PersonError(f"there is no token {token_id}")
            await people.revoke_token(wanted, by=session.actor)
        except PersonError as exc:
            return failed(request, session, 404, str(exc))
        return redirect(request, f"{UI_PREFIX}/people?done=revoke")

    # ── Invitations ──────────────────────────────────────────────────────────────────────────

    def invitation_page(
        request: Request, token: str, email: str | None, *, error: str | None = None
    ) -> Response:
        auth = pages.auth_of(request)
        login_token, cookie = auth.login_token(request)
        status = 404 if email is None else 400 if error else 200
        response = page(
            request,
            "invitation.html",
            session=None,
            status=status,
            title="Set your password",
            email=email,
            token=token,
            login_token=login_token,
            error=error,
            min_password=MIN_PASSWORD,
        )
        if cookie is not None:
            auth.set_login_cookie(response, request, cookie)
        return response

    @router.get(UI_PREFIX + "/invitation")
    async def invitation_view(request: Request, token: str = "") -> Response:
        people = people_of(request, None)
        if isinstance(people, Response):
            return people
        return invitation_page(request, token, await people.invitation(token[:200]))

    @router.post(UI_PREFIX + "/invitation")
    async def accept_invitation(request: Request) -> Response:
        people = people_of(request, None)
        if isinstance(people, Response):
            return people
        auth = pages.auth_of(request)
        form = await read_form(request)
        token = form.get("token", "")
        email = await people.invitation(token[:200])
        if email is None:
            return invitation_page(request, token, None)
        if not auth.login_token_valid(request, form.get(CSRF_FIELD)):
            return invitation_page(request, token, email, error="The form expired: try again.")
        password = form.get("password", "")
        if len(password) < MIN_PASSWORD or len(password) > 1024:
            error = f"Use at least {MIN_PASSWORD} characters."
            return invitation_page(request, token, email, error=error)
        if password != form.get("again"):
            return invitation_page(request, token, email, error="The two passwords differ.")
        hashed = str(PasswordHash.new(password))
        member = await people.accept(token[:200], hashed)
        if member is None:  # used meanwhile
            return invitation_page(request, token, None)
        log.info("ui: a person set their password from an invitation")
        response = redirect(request, UI_PREFIX + "/")
        pages.start_session(response, request, member.id, member.generation, member.workspace)
        return response

    # ── Log out everywhere ───────────────────────────────────────────────────────────────────

    @router.post(UI_PREFIX + "/logout/everywhere")
    async def logout_everywhere(request: Request) -> Response:
        checked = await pages.changing(request)
        if isinstance(checked, Response):
            return checked
        session, _form = checked
        if session.person_id is None:
            message = (
                "The admin password has no sessions of its own to end: change "
                "[admin] session_secret to end every session."
            )
            return refusal(request, session, 400, message, title="Log out", active=None)
        people = people_of(request, session)
        if isinstance(people, Response):
            return people
        await people.log_out_everywhere(session.person_id, by=session.actor)
        response = redirect(request, f"{UI_PREFIX}/login")
        pages.auth_of(request).clear_session(response, request)
        return response

    return router
