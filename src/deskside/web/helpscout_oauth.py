"""The Help Scout connection in the browser, for the web UI: ``GET /insights/helpscout/connect``
(an admin: the ``[admin] token``, an admin's API token or session) sends the browser to Help
Scout, ``GET /insights/helpscout/callback`` (public: the ``state`` protects it) is where Help
Scout sends it back. Add :func:`oauth_routes` to the app's routes; the store must be open.
"""

from __future__ import annotations

import html
import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute

from deskside.errors import ConfigError
from deskside.insights.helpscout.client import HelpScoutAPI
from deskside.insights.helpscout.connection import (
    AuthorizationRefused,
    HelpScoutError,
    state_workspace,
)
from deskside.insights.ingest.backfill import sync_mailboxes
from deskside.insights.service import live_workspace
from deskside.web.guard import GuardedRoute
from deskside.web.insights_api import caller, caller_workspace

__all__ = ["CALLBACK_PATH", "CONNECT_PATH", "oauth_routes"]

CONNECT_PATH = "/insights/helpscout/connect"
CALLBACK_PATH = "/insights/helpscout/callback"
_PRIVATE = {"cache-control": "no-store", "referrer-policy": "no-referrer"}
log = logging.getLogger("deskside.insights")


def oauth_routes() -> list[BaseRoute]:
    """The two routes, guarded as :data:`deskside.web.roles.PERMISSIONS` says. ``connect``
    answers 401 without a token or session, 403 below the admin role, 400 in
    ``client_credentials`` mode, else 302 to Help Scout, to connect the caller's workspace.
    ``callback`` answers 400 for a forged, expired or reused ``state`` or a denial, 502 when
    Help Scout cannot be reached, 200 with a short page when connected."""

    async def connect(request: Request) -> Response:
        workspace = await caller_workspace(request)
        insights, store = workspace.settings, workspace.store
        if insights.helpscout.mode != "oauth":
            return JSONResponse(
                {"error": "client_credentials mode: run `deskside connect helpscout`"},
                status_code=400,
            )
        try:
            async with HelpScoutAPI(insights, store) as api:
                url = await api.authorization_url(by=caller(request))
        except ConfigError as exc:
            log.error("cannot start a Help Scout authorisation: %s", "; ".join(exc.problems))
            return JSONResponse({"error": "deskside is not set up for Help Scout"}, 503)
        return RedirectResponse(url, status_code=302, headers=_PRIVATE)

    async def callback(request: Request) -> Response:
        params = request.query_params
        if params.get("error"):
            return _page(400, f"Help Scout did not authorise deskside ({params['error'][:60]}).")
        code, state = params.get("code"), params.get("state")
        if not code or not state:
            return _page(400, "This address is for Help Scout's redirect.")
        found = await live_workspace(request.app.state.insights, state_workspace(state))
        if isinstance(found, tuple):
            return _page(
                400 if found[0] == 404 else found[0], "This authorisation is unknown here."
            )
        insights, store = found.settings, found.store
        try:
            async with HelpScoutAPI(insights, store) as api:
                await api.complete_authorization(code, state)
                try:
                    await sync_mailboxes(store, api)
                except HelpScoutError as exc:  # connected all the same
                    log.warning("connected, but the mailbox list failed: %s", exc)
        except AuthorizationRefused as exc:
            return _page(400, str(exc))
        except HelpScoutError as exc:
            return _page(502, str(exc))
        except ConfigError as exc:
            log.error("cannot store the Help Scout connection: %s", "; ".join(exc.problems))
            return _page(503, "deskside is not set up to store Help Scout tokens; see its log.")
        log.info("connected to Help Scout through the browser")
        return _page(200, "deskside is connected to Help Scout. You can close this tab.")

    return [
        GuardedRoute(path, endpoint, methods=["GET"], include_in_schema=False)
        for path, endpoint in ((CONNECT_PATH, connect), (CALLBACK_PATH, callback))
    ]


def _page(status: int, message: str) -> HTMLResponse:
    body = (
        "<!doctype html><meta charset=utf-8><title>deskside · Help Scout</title>"
        f"<p style='font:16px system-ui;margin:3em'>{html.escape(message)}</p>"
    )
    return HTMLResponse(body, status_code=status, headers=_PRIVATE)
