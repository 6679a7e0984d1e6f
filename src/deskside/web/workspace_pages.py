"""Workspaces in the web UI: every insights page acts in the caller's workspace
(:class:`LiveWorkspace`), and a person of several workspaces (or the admin password, when
there are several) switches between them with the header's form (``POST /ui/workspace``).
What else the insights pages share is here too: the app's people (:func:`app_people`) and
the ids a form ticks (:func:`form_ids`).

Only a server with an ``[insights]`` table imports this module (see
:func:`deskside.web.routes.web_routes`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from functools import partial

from fastapi import APIRouter
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from deskside.insights.models import row_id
from deskside.insights.people import People
from deskside.insights.service import InsightsService, WorkspaceService, live_workspace
from deskside.insights.store import describe_error
from deskside.web.forms import read_form_pairs
from deskside.web.guard import Identity, identity_of
from deskside.web.pages import UI_PREFIX, Pages

__all__ = ["LiveWorkspace", "app_people", "form_ids", "workspace_choices", "workspace_routes"]

log = logging.getLogger("deskside.web")


class LiveWorkspace:
    """The caller's workspace, as the insights pages use it."""

    def __init__(self, pages: Pages, insights: InsightsService) -> None:
        self.pages = pages
        self.insights = insights

    async def of(self, request: Request, session: Identity) -> WorkspaceService | Response:
        """The caller's workspace, or the page saying why it cannot be used (its database is
        not ready yet, or it was removed)."""
        found = await live_workspace(self.insights, session.workspace)
        if isinstance(found, tuple):
            return self.pages.refusal(request, session, *found)
        return found

    async def viewing(self, request: Request) -> tuple[Identity, WorkspaceService] | Response:
        """A GET of an insights page: who asks and their workspace, or :meth:`of`'s
        refusal."""
        session = identity_of(request)
        live = await self.of(request, session)
        return live if isinstance(live, Response) else (session, live)

    async def deciding(
        self, request: Request
    ) -> tuple[Identity, dict[str, str], WorkspaceService] | Response:
        """A POST to an insights page: :meth:`Pages.changing`, then :meth:`of`."""
        checked = await self.pages.changing(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        live = await self.of(request, session)
        return live if isinstance(live, Response) else (session, form, live)


async def form_ids(request: Request, name: str) -> list[int]:
    """The row ids a POST's form gives in its ``name`` fields (ticked checkboxes); a value
    that can name no row is left out, as if not ticked."""
    found = [row_id(value) for key, value in await read_form_pairs(request) if key == name]
    return [value for value in found if value is not None]


def app_people(request: Request, insights: InsightsService) -> People:
    """The app's people (one :class:`~deskside.insights.people.People`, made on first use and
    shared with the guard's :func:`~deskside.web.guard.directory_of`)."""
    people: People | None = getattr(request.app.state, "people", None)
    if people is None:
        people = request.app.state.people = People(insights.store)
    return people


async def workspace_choices(
    insights: InsightsService, request: Request, identity: Identity
) -> list[str]:
    """The workspaces a logged-in browser may switch to: a person's own, every one for the
    admin password's session; none for a bearer token, before the database is open or while
    it does not answer (the page shows without the switcher)."""
    if identity.session is None or not insights.ready:
        return []
    try:
        if identity.person_id is None:
            return await insights.workspaces.names()
        return await app_people(request, insights).workspaces_of(identity.person_id)
    except (SQLAlchemyError, OSError) as exc:
        log.warning("ui: cannot read the workspaces: %s", describe_error(exc))
        return []


def workspace_routes(pages: Pages, insights: InsightsService) -> APIRouter:
    """``POST /ui/workspace``, for :func:`deskside.web.routes.web_routes` to include."""
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())

    @router.post(UI_PREFIX + "/workspace")
    async def switch_workspace(request: Request) -> Response:
        """Show the pages of the form's ``workspace`` (one of :func:`workspace_choices`;
        else a 403 page, or 404 for the admin password) from now on, starting with
        Insights."""
        checked = await pages.changing(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        chosen = form.get("workspace", "").strip()[:40]
        failed = partial(pages.refusal, request, session, title="Workspace", active=None)
        if session.session is None:
            return failed(400, "A token acts in its own workspace: there is nothing to switch.")
        if not chosen:
            return failed(400, "Choose a workspace.")
        if chosen not in await workspace_choices(insights, request, session):
            if session.person_id is None:  # the admin password may open every workspace
                return failed(404, f"There is no workspace {chosen!r}.")
            return failed(403, f"You are not a member of the workspace {chosen!r}.")
        log.info("ui: a session switched workspace")
        response = RedirectResponse(pages.root(request) + f"{UI_PREFIX}/insights", status_code=303)
        renewed = replace(session.session, workspace=chosen, seen=time.time())
        pages.auth_of(request).set_session(response, request, renewed)
        return response

    return router
