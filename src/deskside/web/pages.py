"""What every page of the web UI shares: the templates (Jinja2, autoescaped), the security
headers, the way to the login, redirects under a proxy's root path, the error page, the routes'
class (the guard of :mod:`deskside.web.guard`, answering with pages) and the check every POST
passes (its session's CSRF token).

Pages carry a Content-Security-Policy that allows only this server's own scripts and styles,
plus the hashed inline ones of the Help Scout frame.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from deskside import __version__
from deskside.insights.analysis.labels import LABELS
from deskside.render.markdown import markdown_to_html
from deskside.web.auth import CSRF_FIELD, CSRF_HEADER, AdminAuth
from deskside.web.forms import read_form
from deskside.web.guard import GuardedRoute, Identity, identity_of
from deskside.web.roles import Role

if TYPE_CHECKING:
    from deskside.config import Settings

__all__ = [
    "STATIC_DIR",
    "UI_PREFIX",
    "Pages",
    "content_security_policy",
    "conversation_ref",
    "count_of",
    "safe_href",
]

log = logging.getLogger("deskside.web")

UI_PREFIX = "/ui"
STATIC_DIR = Path(__file__).parent / "static"

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


def safe_href(url: object) -> str | None:
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


def conversation_ref(number: int | None, conversation_id: int) -> str:
    """How the pages name a conversation: its Help Scout number (``#126``), else its id."""
    return f"#{number}" if number is not None else str(conversation_id)


def count_of(text: str) -> str | None:
    """``text`` when it is a count (ASCII digits, at most 19), else None: a query parameter
    a page shows back."""
    return text if text.isascii() and text.isdigit() and len(text) <= 19 else None


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
        safe_href=safe_href,
        markdown=_markdown,
        frame=_frame,
        when=_when,
        money=_money,
        tojson_pretty=lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str),
    )
    versions = _static_versions()
    env.globals.update(
        conversation_ref=conversation_ref,
        labels=LABELS,
        version=__version__,
        csrf_field=CSRF_FIELD,
        static_version=versions,
        Role=Role,
    )
    return env


class Pages:
    """How the UI's handlers answer: pages rendered with the UI's headers, redirects, refusals
    and the checks of a POST."""

    def __init__(self, settings: Settings, *, insights_enabled: bool) -> None:
        self.insights_enabled = insights_enabled
        self._default_auth = AdminAuth(settings.admin)  # hashes a plain password now, once
        authorize = urlsplit(settings.insights.helpscout.authorize_url)
        # "Connect Help Scout" posts here, and is redirected to Help Scout's authorisation page
        self.headers = _headers(
            f"{authorize.scheme}://{authorize.netloc}" if insights_enabled else ""
        )
        self._env = _environment()
        self.workspace_choices: Callable[[Request, Identity], Awaitable[list[str]]] | None = None
        """The workspaces a caller may switch to (set by the insights pages; none without)."""

    def auth_of(self, request: Request) -> AdminAuth:
        return AdminAuth.of(request, self._default_auth)

    @staticmethod
    def root(request: Request) -> str:
        """The path a proxy mounts the server at ("" at the top)."""
        return str(request.scope.get("root_path", "")).rstrip("/")

    def page(
        self,
        request: Request,
        template: str,
        *,
        session: Identity | None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        """``template`` rendered for ``session`` (who is logged in: the navigation and the
        controls shown follow their role)."""
        body = self._env.get_template(template).render(
            request=request,
            session=session,
            role=session.role if session else None,
            can_edit=session is not None and session.role >= Role.editor,
            is_admin=session is not None and session.role >= Role.admin,
            csrf=session.csrf if session else "",
            ui=self.root(request) + UI_PREFIX,
            insights_enabled=self.insights_enabled,
            workspaces=getattr(request.state, "workspaces", []),
            **context,
        )
        return HTMLResponse(body, status_code=status, headers=self.headers)

    def start_session(
        self,
        response: Response,
        request: Request,
        person: int | None,
        generation: int,
        workspace: str,
    ) -> None:
        """Log ``person`` (None: the admin password) in: a new session, showing
        ``workspace``, in ``response``'s cookie."""
        auth = self.auth_of(request)
        session = replace(auth.new_session(person, generation), workspace=workspace)
        auth.set_session(response, request, session)

    async def _note_workspaces(self, request: Request, identity: Identity | None) -> None:
        """Keep the caller's :attr:`workspace_choices` for the page header (the switcher)."""
        if identity is not None and self.workspace_choices is not None:
            request.state.workspaces = await self.workspace_choices(request, identity)

    def to_login(self, request: Request) -> RedirectResponse:
        """To the login page, which comes back to this page."""
        wanted = request.url.path.removeprefix(self.root(request))
        if request.url.query:
            wanted += "?" + request.url.query
        target = f"{self.root(request)}{UI_PREFIX}/login?next={quote(wanted, safe='/')}"
        return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})

    def redirect(self, request: Request, path: str) -> RedirectResponse:
        """To ``path`` of this server (under the proxy's root path)."""
        return RedirectResponse(self.root(request) + path, status_code=303)

    def refusal(
        self,
        request: Request,
        session: Identity | None,
        status: int,
        message: str,
        *,
        title: str = "Insights",
        active: str | None = "insights",
        back: tuple[str, str] | None = None,
    ) -> Response:
        """The error page, titled and with the tab ``active`` of the page it is about; ``back``:
        the way back, a path under ``/ui`` and the link's text."""
        return self.page(
            request,
            "error.html",
            session=session,
            status=status,
            title=title,
            active=active,
            message=message,
            back=back,
        )

    def route_class(self) -> type[GuardedRoute]:
        """The UI's routes: :class:`~deskside.web.guard.GuardedRoute` answering an anonymous
        GET with the way to the login (a POST: the login page) and a lower role with a 403
        page. The forms check their CSRF token themselves (:meth:`changing`)."""
        pages = self

        class PageRoute(GuardedRoute):
            checks_csrf = False

            async def refuse(
                self, request: Request, identity: Identity | None, least: Role
            ) -> Response:
                if identity is None:
                    if request.method in ("GET", "HEAD"):
                        return pages.to_login(request)
                    return pages.redirect(request, f"{UI_PREFIX}/login")
                await pages._note_workspaces(request, identity)  # the 403 page's header
                message = f"This needs the {least.name} role; you are {identity.role.name}."
                return pages.refusal(
                    request, identity, 403, message, title="Not allowed", active=None
                )

            async def limit_body(self, request: Request) -> None:
                """Nothing: the forms read at most FORM_LIMIT bytes themselves."""

            async def admitted(self, request: Request, identity: Identity | None) -> None:
                """The page header's workspace switcher needs the caller's choices."""
                await pages._note_workspaces(request, identity)

        return PageRoute

    async def changing(self, request: Request) -> tuple[Identity, dict[str, str]] | Response:
        """A POST's caller and form, or the answer refusing it (403 without the session's CSRF
        token; a bearer token needs none)."""
        session = identity_of(request)
        form = await read_form(request)
        submitted = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
        if session.session is not None and not AdminAuth.csrf_valid(session.session, submitted):
            log.warning("ui: refused a POST to %s without its CSRF token", request.url.path)
            return self.refusal(
                request,
                session,
                403,
                "This form was not sent from a page of this session (missing or wrong CSRF "
                "token). Go back, reload the page and try again.",
                title="Refused",
                active=None,
            )
        return session, form
