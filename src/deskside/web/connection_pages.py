"""The Help Scout page (``/ui/connection``): connect and disconnect (deleting the imported
data once confirmed), choose the mailboxes, import, and erase a person on request.

Only a server with an ``[insights]`` table imports this module (see
:func:`deskside.web.routes.web_routes`).
"""

from __future__ import annotations

import logging
from functools import partial
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from deskside.config import Settings
from deskside.errors import ConfigError
from deskside.insights.helpscout.client import HelpScoutAPI
from deskside.insights.helpscout.connection import HelpScoutError, config_problems
from deskside.insights.helpscout.webhook_paths import webhook_path
from deskside.insights.ingest.backfill import parse_since
from deskside.insights.privacy import erasure
from deskside.insights.service import InsightsService
from deskside.lookup import normalise_emails
from deskside.proxy import public_base_url
from deskside.service import SidebarService
from deskside.web import connection
from deskside.web.guard import Identity
from deskside.web.pages import UI_PREFIX, Pages, count_of
from deskside.web.workspace_pages import LiveWorkspace, form_ids

__all__ = ["IMPORT_CHOICES", "connection_routes"]

log = logging.getLogger("deskside.web")

IMPORT_CHOICES = {"30d": "30 days", "90d": "90 days", "365d": "year"}
"""How far back an import started from the Help Scout page reaches (``deskside import``
takes any ``--since``)."""


def connection_routes(
    pages: Pages, settings: Settings, service: SidebarService, insights: InsightsService
) -> APIRouter:
    """The Help Scout page and its actions; an erasure also empties ``service``'s cache."""
    page, refusal, redirect = pages.page, pages.refusal, pages.redirect
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())
    caller = LiveWorkspace(pages, insights)
    viewing, deciding = caller.viewing, caller.deciding

    @router.get(UI_PREFIX + "/connection")
    async def connection_view(request: Request) -> Response:
        viewed = await viewing(request)
        if isinstance(viewed, Response):
            return viewed
        session, live = viewed
        return page(
            request,
            "connection.html",
            session=session,
            title="Help Scout connection",
            active="connection",
            state=await connection.connection_state(live.store),
            importing=live.last_import,
            import_choices=IMPORT_CHOICES,
            oauth=live.settings.helpscout.mode == "oauth",
            config_problems=config_problems(live.settings),
            webhook_url=public_base_url(request, settings.server.public_url)
            + webhook_path(live.name),
            done=request.query_params.get("done"),
            problem=request.query_params.get("problem"),
            erased_rows=count_of(request.query_params.get("rows", "")),
        )

    @router.post(UI_PREFIX + "/connection/{action}")
    async def connection_action(request: Request, action: str) -> Response:
        """``connect`` (to Help Scout's authorisation page), ``disconnect`` (with
        ``delete_data``: and the imported data, once ``confirmed``), ``mailboxes`` (the
        selection), ``refresh`` (the mailbox list from Help Scout), ``import``, or ``forget``
        (erase the person with that ``email``, once ``confirmed``)."""
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, form, live = decided
        failed = partial(
            refusal,
            request,
            session,
            title="Help Scout connection",
            active="connection",
            back=("/connection", "Back to the Help Scout connection"),
        )
        store, options = live.store, live.settings
        done, problem, shown = action, "", {}
        try:
            if action == "connect":
                async with HelpScoutAPI(options, store) as api:
                    target = await api.authorization_url(by=session.actor)
                return RedirectResponse(target, status_code=303, headers=pages.headers)
            if action == "disconnect":
                delete_data = form.get("delete_data") == "1"
                if delete_data and form.get("confirmed") != "1":
                    return confirm_deleting_data(request, session)
                if delete_data and live.last_import.running:
                    return failed(409, "An import is running: delete the data once it stops.")
                outcome = await connection.disconnect(
                    options, store, by=session.actor, delete_data=delete_data
                )
                done = "disconnect-data" if delete_data else "disconnect"
                if outcome.report.webhook_deleted is False:
                    problem = "the webhook could not be deleted: remove it in Help Scout"
            elif action == "forget":
                found = normalise_emails([form.get("email", "")[:320]], fold_plus=False)
                if not found:
                    return failed(400, "That is not an email address.")
                if form.get("confirmed") != "1":
                    return confirm_forgetting(request, session, found[0])
                cache = service.resolver.cache
                removed = await erasure.forget(store, found, by=session.actor, cache=cache)
                log.info("ui: a person was erased on request (%d rows)", removed.total)
                shown = {"rows": str(removed.total)}
            elif action == "mailboxes":
                chosen = await form_ids(request, "mailbox")
                every = form.get("every") == "1" or not chosen
                await connection.select_mailboxes(store, None if every else chosen)
            elif action == "refresh":
                await connection.refresh_mailboxes(options, store)
            elif action == "import":
                since = form.get("since", "")
                if since not in IMPORT_CHOICES:
                    return failed(400, "Choose how far back to import.")
                again = form.get("again") == "1"
                if not live.start_import(parse_since(since), again=again):
                    problem = "an import is already running"
            else:
                return failed(404, f"No such action: {action}.")
        except ConfigError as exc:
            return failed(503, "; ".join(exc.problems))
        except (HelpScoutError, ValueError) as exc:
            return failed(502 if isinstance(exc, HelpScoutError) else 400, str(exc))
        query = {"done": done, **shown, **({"problem": problem} if problem else {})}
        return redirect(request, f"{UI_PREFIX}/connection?{urlencode(query)}")

    def confirm_deleting_data(request: Request, session: Identity) -> Response:
        return page(
            request,
            "confirm.html",
            session=session,
            title="Delete the imported data",
            active="connection",
            question="Disconnect Help Scout and delete everything it brought? This cannot be "
            "undone.",
            consequences=[
                "Every conversation, message, customer, mailbox and webhook delivery stored.",
                "Labels, topics, agents' corrections and the record of exported reports "
                "(the GitHub issues themselves stay).",
                "The token and deskside's webhook in Help Scout.",
            ],
            action="/connection/disconnect",
            fields={"delete_data": "1"},
            button="Delete the imported data",
        )

    def confirm_forgetting(request: Request, session: Identity, email: str) -> Response:
        return page(
            request,
            "confirm.html",
            session=session,
            title="Erase a person",
            active="connection",
            question=f"Erase {email} for good? This cannot be undone.",
            consequences=[
                "Their customers, conversations, messages, labels, topic memberships, agents' "
                "corrections and webhook deliveries.",
                "Their messages in other conversations, and the address wherever other text "
                "quotes it.",
                "The sidebar's cached answers about them (in this server process, or in Redis).",
                "From now on, webhooks and imports about them are not stored.",
            ],
            action="/connection/forget",
            fields={"email": email},
            button="Erase for good",
        )

    return router
