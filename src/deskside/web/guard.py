"""The one place where the web UI and the insights API decide who may call a route: each
request's caller (:class:`Identity`: an ``[admin] token``, a person's API token, or a session
cookie), checked against the least role :data:`deskside.web.roles.PERMISSIONS` gives the route.

A person is looked up on every request (one primary-key read), so removing them, changing
their role or their "log out everywhere" takes effect on their next request. Without an
``[insights]`` store there are no people: the admin password and ``[admin] token`` only.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Protocol

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from deskside.errors import Unauthorized
from deskside.http import read_body
from deskside.insights import DEFAULT_WORKSPACE
from deskside.members import Member, token_digest
from deskside.web.auth import (
    CSRF_FIELD,
    CSRF_HEADER,
    SAFE_METHODS,
    SESSION_COOKIE,
    AdminAuth,
    Forbidden,
    Session,
)
from deskside.web.forms import FORM_LIMIT, read_form
from deskside.web.roles import Role, least_role

__all__ = [
    "ADMIN_NAME",
    "WORKSPACE_HEADER",
    "Directory",
    "GuardedRoute",
    "Identity",
    "Member",
    "directory_of",
    "identify",
    "identity_of",
    "require_admin",
    "token_digest",
]

WORKSPACE_HEADER = "x-deskside-workspace"
"""Which workspace a request with the ``[admin] token`` acts in (a person's token acts in its
own)."""
ADMIN_NAME = "admin"
"""Who the admin password and ``[admin] token`` are, as pages and the audit name them."""
_RENEW_AFTER = 60.0


class Directory(Protocol):
    """The people of the insights store (:class:`deskside.insights.people.People`)."""

    async def member(self, person_id: int, workspace: str | None = None) -> Member | None: ...

    async def token_member(self, digest: str) -> Member | None: ...

    async def login_of(self, email: str) -> tuple[Member, str | None] | None: ...

    async def record(self, by: str, action: str, detail: str) -> None: ...


@dataclass(frozen=True)
class Identity:
    """Who calls: a name (a person's email or :data:`ADMIN_NAME`), the workspace they act in
    and their role there, the person's id (None for the admin password and ``[admin] token``,
    admins of every workspace), and their session (None for a bearer token)."""

    name: str
    role: Role
    person_id: int | None = None
    session: Session | None = None
    workspace: str = DEFAULT_WORKSPACE

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session is not None else ""

    @property
    def actor(self) -> str:
        """How the audit names them: ``ui:<name>`` or ``api:<name>``."""
        return ("ui:" if self.session is not None else "api:") + self.name


def directory_of(request: Request) -> Directory | None:
    """The app's people, or None when the server has no ``[insights]`` store (or it is not
    open yet)."""
    state = request.app.state
    insights = getattr(state, "insights", None)
    if insights is None or not insights.ready:
        return None
    directory: Directory | None = getattr(state, "people", None)
    if directory is None:
        from deskside.insights.people import People  # only with [insights]: see test_lean

        directory = state.people = People(insights.store)
    return directory


async def identify(request: Request) -> Identity | None:
    """The request's caller, or None (anonymous). A bearer token is tried first, then the
    session cookie; a person's session is valid while the person exists, belongs to the
    session's workspace and its generation is theirs.

    The workspace: a person's token's own; a session's (chosen on the page); for the
    ``[admin] token``, the :data:`WORKSPACE_HEADER` (default: the default workspace)."""
    auth = AdminAuth.of(request)
    if auth.token_valid(request):
        asked = request.headers.get(WORKSPACE_HEADER, "").strip() or DEFAULT_WORKSPACE
        return Identity(ADMIN_NAME, Role.admin, workspace=asked[:40])
    directory = directory_of(request)
    authorization = request.headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip() and directory is not None:
        member = await directory.token_member(token_digest(token.strip()))
        if member is not None:
            return Identity(member.email, member.role, member.id, workspace=member.workspace)
    session = auth.session(request)
    if session is None:
        return None
    if session.person is None:
        return Identity(ADMIN_NAME, Role.admin, session=session, workspace=session.workspace)
    found = (
        await directory.member(session.person, session.workspace) if directory is not None else None
    )
    if found is None or found.generation != session.generation:
        return None
    return Identity(found.email, found.role, found.id, session, found.workspace)


def identity_of(request: Request) -> Identity:
    """The caller :class:`GuardedRoute` admitted (a route of :data:`~deskside.web.roles.PUBLIC`
    has none: do not call this there)."""
    identity: Identity = request.state.identity
    return identity


class GuardedRoute(APIRoute):
    """A route that admits only callers with at least the role the permission table gives it,
    before the body is read. The API answers 401 (anonymous) or 403 (a lower role, or a
    cookie-authenticated change without the session's CSRF token) and reads at most
    :data:`~deskside.web.forms.FORM_LIMIT` bytes of a body (413 beyond); the web UI's subclass
    (:meth:`deskside.web.pages.Pages.route_class`) answers with pages instead. A subclass
    changes :meth:`refuse` (a caller not admitted), :meth:`limit_body` and :meth:`admitted`
    (one admitted, in that order, before the handler).

    A route missing from the table cannot be created (``KeyError``)."""

    checks_csrf = True
    """The API checks a session's CSRF token here; the UI's forms do it themselves."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        _silence_parameter_aliases()
        super().__init__(path, endpoint, **kwargs)
        self.least = {method: least_role(method, self.path) for method in self.methods or ()}

    async def refuse(self, request: Request, identity: Identity | None, least: Role) -> Response:
        """The answer to a caller without ``least``: raise or return it."""
        if identity is None:
            raise Unauthorized("request without a valid token or session", code="token")
        raise Forbidden(f"this needs the {least.name} role")

    async def limit_body(self, request: Request) -> None:
        """Read the admitted request's body, at most :data:`~deskside.web.forms.FORM_LIMIT`
        bytes (a larger one is a 413)."""
        # Starlette serves a body it has already read (``_body``) to the handler's parsing.
        request._body = await read_body(request, FORM_LIMIT)

    async def admitted(self, request: Request, identity: Identity | None) -> None:
        """Called once the caller is admitted (``identity``: None on a public route) and the
        body limited, right before the handler; the default does nothing."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            least = self.least.get(request.method)
            identity = await identify(request) if least is not None else None
            if least is not None:
                if identity is None or identity.role < least:
                    return await self.refuse(request, identity, least)
                if self.checks_csrf and request.method not in SAFE_METHODS:
                    await _require_csrf(request, identity)
            request.state.identity = identity
            await self.limit_body(request)
            await self.admitted(request, identity)
            response = await handler(request)
            session = identity.session if identity is not None else None
            if (
                session is not None
                and session.seen + _RENEW_AFTER < time.time()
                and not _sets_session(response)  # a new session (a login, a switch) wins
            ):
                renewed = replace(session, seen=time.time())
                AdminAuth.of(request).set_session(response, request, renewed)
            return response

        return guarded


async def require_admin(request: Request) -> None:
    """FastAPI dependency, for a route outside the permission table: the ``[admin] token``
    bearer, or a session of the admin password (a person's, whatever their role, is refused),
    which on any method but GET/HEAD/OPTIONS also carries its CSRF token (the
    ``X-CSRF-Token`` header or a ``csrf_token`` form field).

    Raises :class:`~deskside.errors.Unauthorized` (401) without those credentials and
    :class:`~deskside.web.auth.Forbidden` (403) for a change without its CSRF token."""
    identity = await identify(request)
    if identity is None or identity.person_id is not None:
        raise Unauthorized("admin request without a valid token or session", code="token")
    if request.method not in SAFE_METHODS:
        await _require_csrf(request, identity)


def _silence_parameter_aliases() -> None:
    """Silence, for as long as the process lasts, pydantic's warning that a ``Field``'s alias
    has no effect where FastAPI uses it.

    FastAPI builds each parameter's validator from a ``Field`` naming the parameter
    (``alias='who'``) and silences that warning itself with ``warnings.catch_warnings()``, which
    is process-wide: a thread of the analysis (scikit-learn) leaving its own ``catch_warnings()``
    meanwhile lets the warning out. deskside's models have no aliases, so none is hidden. (A
    filter added while a module is imported would not last: imports may run inside a
    ``catch_warnings()``; hence here, as each route is built.)"""
    warnings.filterwarnings(
        "ignore", r"The 'alias' attribute with value '\w+' was provided", UserWarning
    )


def _sets_session(response: Response) -> bool:
    cookie = f"{SESSION_COOKIE}=".encode()
    return any(
        name == b"set-cookie" and value.startswith(cookie) for name, value in response.raw_headers
    )


async def _require_csrf(request: Request, identity: Identity) -> None:
    """A change made with a session cookie must carry the session's CSRF token."""
    if identity.session is None:
        return
    submitted = request.headers.get(CSRF_HEADER)
    if submitted is None:
        submitted = (await read_form(request)).get(CSRF_FIELD)
    if not AdminAuth.csrf_valid(identity.session, submitted):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")
