"""The Help Scout connection in the browser, for the web UI: ``GET /insights/helpscout/connect``
(admin bearer token) sends the browser to Help Scout, ``GET /insights/helpscout/callback`` is
where Help Scout sends it back. Mount :func:`oauth_routes` in the app; the store must be open.
"""

from __future__ import annotations

import hashlib
import html
import logging

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from deskside.config import Settings
from deskside.errors import ConfigError
from deskside.insights.backfill import sync_mailboxes
from deskside.insights.helpscout_api import AuthorizationRefused, HelpScoutAPI, HelpScoutError
from deskside.insights.store import Store
from deskside.signing import bearer_token, token_matches

__all__ = ["CALLBACK_PATH", "CONNECT_PATH", "oauth_routes"]

CONNECT_PATH = "/insights/helpscout/connect"
CALLBACK_PATH = "/insights/helpscout/callback"
_PRIVATE = {"cache-control": "no-store", "referrer-policy": "no-referrer"}
log = logging.getLogger("deskside.insights")


def oauth_routes(settings: Settings, store: Store) -> list[Route]:
    """The two routes. ``connect`` answers 401 without a valid ``Authorization: Bearer`` admin
    token (``[admin] token``; none configured: always 401), else 302 to Help Scout.
    ``callback`` answers 400 for a forged, expired or reused ``state`` or a denial, 502 when
    Help Scout cannot be reached, 200 with a short page when connected."""
    admin_tokens = [token.get_secret_value() for token in settings.admin.token]
    insights = settings.insights

    async def connect(request: Request) -> Response:
        token = bearer_token(request.headers.get("authorization"))
        if not token_matches(token, admin_tokens):
            return JSONResponse(
                {"error": "an admin bearer token is required"},
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        if insights.helpscout.mode != "oauth":
            return JSONResponse(
                {"error": "client_credentials mode: run `deskside connect helpscout`"},
                status_code=400,
            )
        try:
            async with HelpScoutAPI(insights, store) as api:
                url = await api.authorization_url(by=_token_actor(token or ""))
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
        Route(CONNECT_PATH, connect, methods=["GET"]),
        Route(CALLBACK_PATH, callback, methods=["GET"]),
    ]


def _page(status: int, message: str) -> HTMLResponse:
    body = (
        "<!doctype html><meta charset=utf-8><title>deskside · Help Scout</title>"
        f"<p style='font:16px system-ui;margin:3em'>{html.escape(message)}</p>"
    )
    return HTMLResponse(body, status_code=status, headers=_PRIVATE)


def _token_actor(token: str) -> str:
    """How the audit names the ``[admin] token``: ``api:token-<8 hex of its SHA-256>``."""
    return "api:token-" + hashlib.sha256(token.encode()).hexdigest()[:8]
