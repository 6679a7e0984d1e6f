"""The web UI under ``/ui/``: login, Preview, Setup and Insights, server-rendered with Jinja2
(autoescaped) from the same app, with its own CSS and a few lines of JS at ``/ui/static``.

Every page needs an admin session (a GET without one is sent to ``/ui/login``); every POST
needs the session's CSRF token as well. Pages carry a Content-Security-Policy that allows only
this server's own scripts and styles, plus the hashed inline ones of the Help Scout frame.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from fastapi import APIRouter
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from deskside import __version__
from deskside.config import Settings
from deskside.errors import ConfigError
from deskside.insights import reports as reporting
from deskside.insights.backfill import parse_since
from deskside.insights.classify import LABELS
from deskside.insights.helpscout_api import HelpScoutAPI, HelpScoutError, config_problems
from deskside.insights.models import row_id
from deskside.insights.service import InsightsService
from deskside.render.markdown import markdown_to_html
from deskside.service import SidebarService
from deskside.web import connection, dashboard
from deskside.web.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    AdminAuth,
    Session,
    read_form,
    read_form_pairs,
)
from deskside.web.preview import (
    check_sources,
    desk_setups,
    parse_emails,
    preview,
    probe_desk,
)

__all__ = ["UI_PREFIX", "web_routes"]

log = logging.getLogger("deskside.web")

UI_PREFIX = "/ui"
STATIC_DIR = Path(__file__).parent / "static"
IMPORT_CHOICES = {"30d": "30 days", "90d": "90 days", "365d": "year"}
"""How far back an import started from the Help Scout page reaches (``deskside import``
takes any ``--since``)."""

_FRAME_CSS = (STATIC_DIR / "helpscout-frame.css").read_text(encoding="utf-8")
_FRAME_JS = (STATIC_DIR / "helpscout-frame.js").read_text(encoding="utf-8")


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


def content_security_policy(form_targets: str = "") -> str:
    """Only this server's files run or style a page (the Help Scout frame's srcdoc inherits
    the policy; its inline style and script are allowed by hash): injected markup cannot run.
    Forms post to this server only (and, through its redirect, ``form_targets``)."""
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'self' {_hash(_FRAME_JS)}",
            f"style-src 'self' {_hash(_FRAME_CSS)}",
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-src 'self'",
            f"form-action 'self' {form_targets}".strip(),
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def _headers(form_targets: str = "") -> dict[str, str]:
    return {
        "content-security-policy": content_security_policy(form_targets),
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "same-origin",
        "cache-control": "no-store",
    }


def _static_versions() -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        for path in STATIC_DIR.iterdir()
        if path.is_file()
    }


def _safe_href(url: object) -> str | None:
    """``url`` when it is an http(s) or mailto link, else None (shown as text)."""
    text = str(url or "")
    return text if text.lower().startswith(("https://", "http://", "mailto:")) else None


def _markdown(source: object) -> Markup:
    """Escaped markdown (what helpdesks get) as the HTML a helpdesk would show."""
    return Markup(markdown_to_html(str(source)))  # noqa: S704 - markdown-it escapes; no raw HTML


def _frame(html: str) -> str:
    """A whole document for the Help Scout preview frame: the fragment deskside answers
    (customer values already escaped by the renderer) in a Help-Scout-like sidebar."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<style>{_FRAME_CSS}</style></head>"
        f'<body><div class="hs-sidebar">{html}</div><script>{_FRAME_JS}</script></body></html>'
    )


def _conversation_ref(number: int | None, conversation_id: int) -> str:
    """How the pages name a conversation: its Help Scout number (``#126``), else its id."""
    return f"#{number}" if number is not None else str(conversation_id)


def _when(value: datetime | None) -> str:
    return value.strftime("%d %b %Y %H:%M") if value else ""


def _money(cents: int | None, currency: str | None = None) -> str:
    if cents is None:
        return ""
    return f"{cents / 100:,.2f}" + (f" {currency}" if currency else "")


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("deskside.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        safe_href=_safe_href,
        markdown=_markdown,
        frame=_frame,
        when=_when,
        money=_money,
        tojson_pretty=lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str),
    )
    versions = _static_versions()
    env.globals.update(
        conversation_ref=_conversation_ref,
        labels=LABELS,
        version=__version__,
        csrf_field=CSRF_FIELD,
        static_version=versions,
    )
    return env


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
    default_auth = AdminAuth(settings.admin)  # hashes a plain password now, not per request
    authorize = urlsplit(settings.insights.helpscout.authorize_url)
    # "Connect Help Scout" posts here, and is redirected to Help Scout's authorisation page
    headers = _headers(f"{authorize.scheme}://{authorize.netloc}" if insights else "")
    env = _environment()
    router = APIRouter(include_in_schema=False)
    router.mount(f"{UI_PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="ui-static")

    def auth_of(request: Request) -> AdminAuth:
        return AdminAuth.of(request, default_auth)

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def page(
        request: Request,
        template: str,
        *,
        session: Session | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        base = root(request)
        body = env.get_template(template).render(
            request=request,
            session=session,
            csrf=session.csrf if session else "",
            ui=base + UI_PREFIX,
            insights_enabled=insights is not None,
            **context,
        )
        return HTMLResponse(body, status_code=status, headers=headers)

    def to_login(request: Request) -> RedirectResponse:
        wanted = request.url.path.removeprefix(root(request))
        if request.url.query:
            wanted += "?" + request.url.query
        target = f"{root(request)}{UI_PREFIX}/login?next={quote(wanted, safe='/')}"
        return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})

    def redirect(request: Request, path: str) -> RedirectResponse:
        return RedirectResponse(root(request) + path, status_code=303)

    def refusal(
        request: Request,
        session: Session,
        status: int,
        message: str,
        *,
        title: str = "Insights",
        active: str | None = "insights",
        back: tuple[str, str] | None = None,
    ) -> Response:
        """The error page, titled and with the tab ``active`` of the page it is about; ``back``:
        the way back, a path under ``/ui`` and the link's text."""
        return page(
            request,
            "error.html",
            session=session,
            status=status,
            title=title,
            active=active,
            message=message,
            back=back,
        )

    async def changing(request: Request) -> tuple[Session, dict[str, str]] | Response:
        """A POST's session and form, or the answer refusing it (login, or 403 without the
        session's CSRF token)."""
        session = auth_of(request).session(request)
        if session is None:
            return redirect(request, f"{UI_PREFIX}/login")
        form = await read_form(request)
        submitted = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if not auth_of(request).csrf_valid(session, submitted):
            log.warning("ui: refused a POST to %s without its CSRF token", request.url.path)
            return refusal(
                request,
                session,
                403,
                "This form was not sent from a page of this session (missing or wrong CSRF "
                "token). Go back, reload the page and try again.",
                title="Refused",
                active=None,
            )
        return session, form

    async def form_ids(request: Request, name: str) -> list[int]:
        """The ids the form's ``name`` fields (ticked checkboxes) give; a value that can name
        no row is left out, as if not ticked."""
        found = [row_id(value) for key, value in await read_form_pairs(request) if key == name]
        return [value for value in found if value is not None]

    # ── Login ────────────────────────────────────────────────────────────────────────────────

    @router.get(UI_PREFIX)
    async def ui_root(request: Request) -> Response:
        return redirect(request, UI_PREFIX + "/")

    @router.get(UI_PREFIX + "/")
    async def home(request: Request) -> Response:
        if auth_of(request).session(request) is None:
            return to_login(request)
        return redirect(request, f"{UI_PREFIX}/insights" if insights else f"{UI_PREFIX}/preview")

    @router.get(UI_PREFIX + "/login")
    async def login_form(request: Request, next: str | None = None) -> Response:
        auth = auth_of(request)
        if auth.session(request) is not None:
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
        if not await auth.check_password(form.get("password", "")):
            auth.limiter.failed(client)
            log.warning("ui: failed login from %s", client)
            return login_page(request, next=target, error="Wrong password.", status=401)
        auth.limiter.succeeded(client)
        log.info("ui: admin logged in from %s", client)
        response = redirect(request, target)
        auth.set_session(response, request, auth.new_session())
        return response

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
        session: Session,
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
        session = auth_of(request).session(request)
        if session is None:
            return to_login(request)
        return await preview_page(request, session, email[:2000])

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
        session = auth_of(request).session(request)
        if session is None:
            return to_login(request)
        webhook = None
        if insights is not None:
            webhook = [s.get_secret_value() for s in settings.insights.helpscout.webhook_secret]
        return page(
            request,
            "setup.html",
            session=session,
            title="Setup",
            active="setup",
            desks=desk_setups(service, str(request.base_url), webhook),
            checks=await check_sources(service),
        )

    # ── Insights ─────────────────────────────────────────────────────────────────────────────

    def live_insights(request: Request, session: Session) -> InsightsService | Response:
        """The insights service, or the page saying why there is none to use (off, or its
        database not ready)."""
        if insights is None:
            return refusal(
                request,
                session,
                404,
                "Insights are off: add an [insights] table to the config to store and classify "
                "Help Scout conversations.",
            )
        if not insights.ready:
            return refusal(
                request,
                session,
                503,
                "The insights database is not available yet; reload in a moment.",
            )
        return insights

    def viewing(request: Request) -> tuple[Session, InsightsService] | Response:
        """A GET of an insights page: the session and the insights service, or the answer
        instead (to the login, or :func:`live_insights`' refusal)."""
        session = auth_of(request).session(request)
        if session is None:
            return to_login(request)
        live = live_insights(request, session)
        return live if isinstance(live, Response) else (session, live)

    async def deciding(
        request: Request,
    ) -> tuple[Session, dict[str, str], InsightsService] | Response:
        """A POST to an insights page: :func:`changing`, then :func:`live_insights`."""
        checked = await changing(request)
        if isinstance(checked, Response):
            return checked
        session, form = checked
        live = live_insights(request, session)
        return live if isinstance(live, Response) else (session, form, live)

    @router.get(UI_PREFIX + "/insights")
    async def insights_view(request: Request, label: str | None = None) -> Response:
        viewed = viewing(request)
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
            changed = _conversation_ref(number, relabelled)
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
        from deskside.insights.analysis import UnknownConversation

        shown = form.get("filter")
        query = {"label": shown} if shown in (*LABELS, "unlabelled") else {}
        back = ("/insights" + (f"?{urlencode(query)}" if query else ""), "Back to Insights")
        conversation = row_id(conversation_id)
        try:
            if conversation is None:
                raise UnknownConversation(conversation_id)
            label = await live.analysis.relabel(conversation, form.get("label", ""))
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
        viewed = viewing(request)
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
        viewed = viewing(request)
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
        )

    async def _report(
        live: InsightsService, topic_id: int, trending: dict[int, str]
    ) -> reporting.Report | None:
        """The topic's report, with plans and revenue when ``[insights.reports]`` says how
        to find them (through this server's own sources and cache)."""
        facts: reporting.CustomerFacts | None = None
        try:
            facts = reporting.CustomerFacts(settings, service=service)
        except ValueError:
            log.warning("ui: [insights.reports] plan or revenue_cents is not a valid expression")
        found = await reporting.build_reports(
            live.store,
            facts=facts if facts is not None and facts.configured else None,
            trending=trending,
            topic_ids=[topic_id],
        )
        return found[0] if found else None

    def no_topic(request: Request, session: Session, topic_id: str) -> Response:
        message = f"There is no topic {topic_id} (any more)."
        return refusal(request, session, 404, message, back=("/topics", "All topics"))

    async def topic_action(request: Request, topic_id: str, action: str) -> Response:
        decided = await deciding(request)
        if isinstance(decided, Response):
            return decided
        session, form, live = decided
        from deskside.insights.analysis import UnknownTopic

        analysis = live.analysis
        topic = row_id(topic_id)
        target, done = topic, action
        try:
            if topic is None:
                raise UnknownTopic(topic_id)
            if action == "rename":
                await analysis.rename_topic(topic, form.get("name", ""))
            elif action == "merge":
                target = row_id(form.get("into", ""))
                if target is None:
                    raise ValueError("choose the topic to merge into")
                await analysis.merge_topics(topic, target)
            else:
                chosen = await form_ids(request, "conversation")
                target = await analysis.split_topic(
                    topic, chosen, form.get("name", "").strip() or None
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

    @router.post(UI_PREFIX + "/topics/{topic_id}/merge")
    async def merge_view(request: Request, topic_id: str) -> Response:
        return await topic_action(request, topic_id, "merge")

    @router.post(UI_PREFIX + "/topics/{topic_id}/split")
    async def split_view(request: Request, topic_id: str) -> Response:
        return await topic_action(request, topic_id, "split")

    # ── The Help Scout connection ────────────────────────────────────────────────────────────

    @router.get(UI_PREFIX + "/connection")
    async def connection_view(request: Request) -> Response:
        viewed = viewing(request)
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
            oauth=settings.insights.helpscout.mode == "oauth",
            config_problems=config_problems(settings.insights),
            done=request.query_params.get("done"),
            problem=request.query_params.get("problem"),
        )

    @router.post(UI_PREFIX + "/connection/{action}")
    async def connection_action(request: Request, action: str) -> Response:
        """``connect`` (to Help Scout's authorisation page), ``disconnect``, ``mailboxes``
        (the selection), ``refresh`` (the mailbox list from Help Scout) or ``import``."""
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
        store, options = live.store, settings.insights
        done, problem = action, ""
        try:
            if action == "connect":
                async with HelpScoutAPI(options, store) as api:
                    target = await api.authorization_url()
                return RedirectResponse(target, status_code=303, headers=headers)
            if action == "disconnect":
                report = await connection.disconnect(options, store)
                if report.webhook_deleted is False:
                    problem = "the webhook could not be deleted: remove it in Help Scout"
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
        query = {"done": done, **({"problem": problem} if problem else {})}
        return redirect(request, f"{UI_PREFIX}/connection?{urlencode(query)}")

    # ── Reports ──────────────────────────────────────────────────────────────────────────────

    @router.get(UI_PREFIX + "/reports")
    async def reports_view(request: Request) -> Response:
        viewed = viewing(request)
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
            github=settings.insights.reports.github_repository if github_token() else None,
            exported=request.query_params.get("exported"),
            issue=_safe_href(request.query_params.get("issue")),
        )

    def github_token() -> str:
        configured = settings.insights.reports.github_token
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
        options = settings.insights.reports
        token = github_token()
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
            async with reporting.GitHubIssues(
                options.github_repository, token, options.github_api_url
            ) as github:
                result = await github.export(live.store, found[0])
        except reporting.GitHubError as exc:
            return failed(502, f"GitHub refused the export: {exc}")
        query = urlencode({"exported": str(topic), "issue": result.url})
        return redirect(request, f"{UI_PREFIX}/reports?{query}#topic-{topic}")

    # ── Anything else ────────────────────────────────────────────────────────────────────────

    @router.get(UI_PREFIX + "/{path:path}")
    async def not_found(request: Request, path: str) -> Response:
        """A page, not JSON, for a path under ``/ui/`` that names none (the last route)."""
        session = auth_of(request).session(request)
        if session is None:
            return to_login(request)
        back = ("/", "Back to the start")
        message = f"There is no page {UI_PREFIX}/{path}."
        return refusal(request, session, 404, message, title="Not found", active=None, back=back)

    return router
