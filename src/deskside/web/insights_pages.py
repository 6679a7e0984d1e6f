"""The web UI's insights pages under ``/ui/``: Insights (labels, the chart, relabelling),
Topics (rename, merge, split), the Help Scout connection and Reports (with the GitHub export).

Only a server with an ``[insights]`` table imports this module (it needs the insights stack);
see :func:`deskside.web.routes.web_routes`.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from deskside.config import Settings
from deskside.errors import ConfigError
from deskside.insights.analysis import merges
from deskside.insights.analysis.engine import UnknownConversation, UnknownTopic
from deskside.insights.analysis.labels import LABELS
from deskside.insights.helpscout.client import HelpScoutAPI
from deskside.insights.helpscout.connection import HelpScoutError, config_problems
from deskside.insights.ingest.backfill import parse_since
from deskside.insights.models import row_id
from deskside.insights.privacy import erasure
from deskside.insights.reports import facts as customer_facts
from deskside.insights.reports import github as github_issues
from deskside.insights.reports import report as reporting
from deskside.insights.service import InsightsService, WorkspaceService
from deskside.lookup import normalise_emails
from deskside.proxy import public_base_url
from deskside.service import SidebarService
from deskside.web import connection, dashboard
from deskside.web.audit_pages import audit_routes
from deskside.web.forms import read_form_pairs
from deskside.web.guard import Identity
from deskside.web.merge_pages import merge_routes
from deskside.web.pages import UI_PREFIX, Pages, conversation_ref, safe_href
from deskside.web.setup_pages import webhook_path
from deskside.web.workspace_pages import LiveWorkspace

__all__ = ["IMPORT_CHOICES", "insights_routes"]

log = logging.getLogger("deskside.web")

IMPORT_CHOICES = {"30d": "30 days", "90d": "90 days", "365d": "year"}
"""How far back an import started from the Help Scout page reaches (``deskside import``
takes any ``--since``)."""


def insights_routes(
    pages: Pages, settings: Settings, service: SidebarService, insights: InsightsService
) -> APIRouter:
    """The insights pages, for :func:`deskside.web.routes.web_routes` to include."""
    page, refusal, redirect = pages.page, pages.refusal, pages.redirect
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())
    router.include_router(audit_routes(pages, insights))
    router.include_router(merge_routes(pages, insights))
    caller = LiveWorkspace(pages, insights)
    viewing, deciding = caller.viewing, caller.deciding

    async def form_ids(request: Request, name: str) -> list[int]:
        """The ids the form's ``name`` fields (ticked checkboxes) give; a value that can name
        no row is left out, as if not ticked."""
        found = [row_id(value) for key, value in await read_form_pairs(request) if key == name]
        return [value for value in found if value is not None]

    @router.get(UI_PREFIX + "/insights")
    async def insights_view(request: Request, label: str | None = None) -> Response:
        viewed = await viewing(request)
        if isinstance(viewed, Response):
            return viewed
        session, live = viewed
        chosen = label if label in (*LABELS, "unlabelled") else None
        summary = await dashboard.overview(live.store)
        rows = await dashboard.conversations(live.store, label=chosen)
        topics = await dashboard.topics(live.store, await live.trends())
        changed = None  # the relabelled conversation, as the page names it
        relabelled = row_id(request.query_params.get("relabelled", ""))
        if relabelled is not None:
            number = await dashboard.conversation_number(live.store, relabelled)
            changed = conversation_ref(number, relabelled)
        return page(
            request,
            "insights.html",
            session=session,
            title="Insights",
            active="insights",
            overview=summary,
            series=dashboard.SERIES,
            conversations=rows,
            label=chosen,
            topics=topics[:10],
            topic_count=len(topics),
            topic_names={topic.id: topic.name for topic in topics},
            changed=changed,
            changed_label=request.query_params.get("label_now"),
        )

    @router.post(UI_PREFIX + "/insights/conversations/{conversation_id}/label")
    async def relabel_view(request: Request, conversation_id: str) -> Response:
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, form, live = decided
        shown = form.get("filter")
        query = {"label": shown} if shown in (*LABELS, "unlabelled") else {}
        back = ("/insights" + (f"?{urlencode(query)}" if query else ""), "Back to Insights")
        conversation = row_id(conversation_id)
        try:
            if conversation is None:
                raise UnknownConversation(conversation_id)
            label = await live.analysis.relabel(
                conversation, form.get("label", ""), by=session.actor
            )
        except UnknownConversation:
            message = f"There is no conversation {conversation_id}."
            return refusal(request, session, 404, message, back=back)
        except ValueError as exc:
            return refusal(request, session, 400, str(exc), back=back)
        query = {"relabelled": str(conversation), "label_now": label, **query}
        return redirect(request, f"{UI_PREFIX}/insights?{urlencode(query)}#c{conversation}")

    # ── Topics ───────────────────────────────────────────────────────────────────────────────

    @router.get(UI_PREFIX + "/topics")
    async def topics_view(request: Request) -> Response:
        """Every topic, by label (Insights lists the first ten)."""
        viewed = await viewing(request)
        if isinstance(viewed, Response):
            return viewed
        session, live = viewed
        by_label: dict[str, list[Any]] = {label: [] for label in LABELS}
        for topic in await dashboard.topics(live.store, await live.trends()):
            by_label.setdefault(topic.label, []).append(topic)
        return page(
            request,
            "topics.html",
            session=session,
            title="Topics",
            active="insights",
            by_label={label: found for label, found in by_label.items() if found},
        )

    @router.get(UI_PREFIX + "/topics/{topic_id}")
    async def topic_view(request: Request, topic_id: str) -> Response:
        viewed = await viewing(request)
        if isinstance(viewed, Response):
            return viewed
        session, live = viewed
        trending = await live.trends()
        wanted = row_id(topic_id)
        found = await dashboard.topics(live.store, trending, ids=[wanted]) if wanted else []
        if not found:
            return no_topic(request, session, topic_id)
        topic = found[0]
        siblings = await dashboard.topics(live.store, trending, label=topic.label)
        report = None
        if topic.label in reporting.REPORT_KINDS:
            report = await _report(live, topic.id, trending)
        return page(
            request,
            "topic.html",
            session=session,
            title=topic.name,
            active="insights",
            topic=topic,
            report=report,
            conversations=await dashboard.conversations(live.store, topic=topic.id, limit=1000),
            merge_targets=[t for t in siblings if t.id != topic.id],
            done=request.query_params.get("done"),
            undo=_count_of(request.query_params.get("undo", "")),
            undo_minutes=merges.UNDO_MINUTES,
        )

    async def _report(
        live: WorkspaceService, topic_id: int, trending: dict[int, str]
    ) -> reporting.Report | None:
        """The topic's report, with plans and revenue when the workspace's
        ``[insights.reports]`` says how to find them (through this server's own sources and
        cache)."""
        facts: customer_facts.CustomerFacts | None = None
        own = settings.model_copy(update={"insights": live.settings})
        try:
            facts = customer_facts.CustomerFacts(own, service.resolver.resolve)
        except ValueError:
            log.warning("ui: [insights.reports] plan or revenue_cents is not a valid expression")
        found = await reporting.build_reports(
            live.store,
            facts=facts if facts is not None and facts.configured else None,
            trending=trending,
            topic_ids=[topic_id],
        )
        return found[0] if found else None

    def no_topic(request: Request, session: Identity, topic_id: str) -> Response:
        message = f"There is no topic {topic_id} (any more)."
        return refusal(request, session, 404, message, back=("/topics", "All topics"))

    async def topic_action(request: Request, topic_id: str, action: str) -> Response:
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, form, live = decided
        analysis = live.analysis
        topic = row_id(topic_id)
        target, done = topic, action
        try:
            if topic is None:
                raise UnknownTopic(topic_id)
            if action == "rename":
                await analysis.rename_topic(topic, form.get("name", ""), by=session.actor)
            else:
                chosen = await form_ids(request, "conversation")
                target = await analysis.split_topic(
                    topic, chosen, form.get("name", "").strip() or None, by=session.actor
                )
        except UnknownTopic:
            return no_topic(request, session, topic_id)
        except ValueError as exc:
            back = (f"/topics/{topic}", "Back to the topic")
            return refusal(request, session, 400, str(exc), back=back)
        log.info("ui: topic %d: %s", topic, action)
        return redirect(request, f"{UI_PREFIX}/topics/{target}?{urlencode({'done': done})}")

    @router.post(UI_PREFIX + "/topics/{topic_id}/rename")
    async def rename_view(request: Request, topic_id: str) -> Response:
        return await topic_action(request, topic_id, "rename")

    @router.post(UI_PREFIX + "/topics/{topic_id}/split")
    async def split_view(request: Request, topic_id: str) -> Response:
        return await topic_action(request, topic_id, "split")

    # ── The Help Scout connection ────────────────────────────────────────────────────────────

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
            erased_rows=_count_of(request.query_params.get("rows", "")),
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

    # ── Reports ──────────────────────────────────────────────────────────────────────────────

    @router.get(UI_PREFIX + "/reports")
    async def reports_view(request: Request) -> Response:
        viewed = await viewing(request)
        if isinstance(viewed, Response):
            return viewed
        session, live = viewed
        found = await reporting.build_reports(live.store, trending=await live.trends())
        return page(
            request,
            "reports.html",
            session=session,
            title="Reports",
            active="reports",
            reports=found,
            github=live.settings.reports.github_repository if github_token(live) else None,
            exported=request.query_params.get("exported"),
            issue=safe_href(request.query_params.get("issue")),
        )

    def github_token(live: WorkspaceService) -> str:
        configured = live.settings.reports.github_token
        if configured is not None:
            return configured.get_secret_value()
        return os.environ.get("GITHUB_TOKEN", "")

    @router.post(UI_PREFIX + "/reports/{topic_id}/export/github")
    async def export_view(request: Request, topic_id: str) -> Response:
        """Open the topic's GitHub issue, or update the one opened before."""
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, _form, live = decided
        options = live.settings.reports
        token = github_token(live)
        failed = partial(
            refusal,
            request,
            session,
            title="Reports",
            active="reports",
            back=("/reports", "Back to Reports"),
        )
        if not options.github_repository or not token:
            return failed(400, "Set [insights.reports] github_repository and github_token.")
        topic = row_id(topic_id)
        found = (
            await reporting.build_reports(
                live.store, trending=await live.trends(), topic_ids=[topic]
            )
            if topic is not None
            else []
        )
        if not found:
            return failed(404, f"No bug or feature report for topic {topic_id}.")
        try:
            async with github_issues.GitHubIssues(
                options.github_repository, token, options.github_api_url, by=session.actor
            ) as github:
                result = await github.export(live.store, found[0])
                exported = [found[0].topic_id]
                await erasure.rewrite_erased_exports_quietly(live.store, github, exported=exported)
        except github_issues.GitHubError as exc:
            return failed(502, f"GitHub refused the export: {exc}")
        query = urlencode({"exported": str(topic), "issue": result.url})
        return redirect(request, f"{UI_PREFIX}/reports?{query}#topic-{topic}")

    return router


def _count_of(text: str) -> str | None:
    """``text`` when it is a count (ASCII digits, at most 19), else None."""
    return text if text.isascii() and text.isdigit() and len(text) <= 19 else None
