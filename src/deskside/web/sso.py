"""Single sign-on for the web UI: OpenID Connect's authorization code flow with PKCE (S256)
against the ``[ui.oidc]`` provider, with Authlib.

``GET /ui/sso/login`` reads the provider's discovery document, keeps a new ``state``, ``nonce``
and PKCE verifier in a short-lived signed cookie and sends the browser to the provider;
``GET /ui/sso/callback`` takes the browser back: the ``state`` must be the cookie's (and is
used once), the code is exchanged for an ID token whose signature (the provider's JWKS),
``iss``, ``aud``, ``exp`` and ``nonce`` are verified. The person with the token's email then
logs in with their role, in their first workspace; someone new is added to the default
workspace with ``default_role`` when their domain is one of ``allowed_domains``, else refused
("access denied"). Every sign-in, and every refusal, is in the audit; no log line holds an
address.

Only a server with an ``[insights]`` table imports this module: people live in its store.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from deskside.config import Settings
from deskside.insights.people import People, PersonError
from deskside.insights.service import InsightsService
from deskside.lookup import normalise_emails
from deskside.proxy import public_base_url
from deskside.web.guard import Member
from deskside.web.login_pages import local_next
from deskside.web.pages import UI_PREFIX, Pages
from deskside.web.roles import Role
from deskside.web.sso_settings import OidcSettings
from deskside.web.workspace_pages import app_people

with warnings.catch_warnings():
    # Authlib announces joserfc and httpx2 on import; its jose and httpx APIs stay until 2.0
    import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401  (its filter goes too)

    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.common.errors import AuthlibBaseError  # type: ignore[import-untyped]
    from authlib.integrations.httpx_client import AsyncOAuth2Client  # type: ignore[import-untyped]
    from authlib.jose import JsonWebKey, JsonWebToken  # type: ignore[import-untyped]
    from authlib.oidc.core import CodeIDToken  # type: ignore[import-untyped]
    from joserfc.errors import JoseError  # what Authlib's jose raises since it wraps joserfc

# Authlib runs on the `httpx2` package when it is installed, else on httpx (the same API)
_EXCHANGE_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, AuthlibBaseError, ValueError)
try:
    import httpx2  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    _EXCHANGE_ERRORS += (httpx2.HTTPError,)

__all__ = ["FLOW_SECONDS", "SSO_COOKIE", "SignInRefused", "sso_routes"]

log = logging.getLogger("deskside.web")

SSO_COOKIE = "deskside_sso"
FLOW_SECONDS = 600
"""How long a sign-in started at the provider may take to come back."""
HTTP_SECONDS = 10.0
"""The longest wait for the provider's discovery document, keys or token endpoint."""
LEEWAY_SECONDS = 60
"""Clock skew forgiven when checking the ID token's ``exp`` and ``iat``."""
SIGNING_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"]
_PURPOSE = "sso"


class SignInRefused(Exception):
    """A sign-in that cannot go on: the page's status and what it says (no address in it), and
    what the audit records."""

    def __init__(self, status: int, message: str, audit: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.audit = audit


@dataclass(frozen=True)
class Endpoints:
    """What the provider's discovery document says (the parts the flow uses)."""

    authorization: str
    token: str
    jwks: str
    token_auth_method: str


class Provider:
    """The ``[ui.oidc]`` provider: discovery (kept once read), its keys, the code exchange and
    the ID token's verification."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._endpoints: Endpoints | None = None

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=HTTP_SECONDS) as client:
                answer = await client.get(url, headers={"accept": "application/json"})
            answer.raise_for_status()
            document = answer.json()
        except (httpx.HTTPError, ValueError):
            log.warning("ui: the identity provider did not answer at %s", url)
            raise _unreachable() from None
        if not isinstance(document, dict):
            raise _unreachable()
        return document

    async def endpoints(self) -> Endpoints:
        """From ``{issuer}/.well-known/openid-configuration``, whose ``issuer`` must be ours."""
        if self._endpoints is None:
            issuer = self.settings.issuer
            document = await self._get_json(
                issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            names = ("authorization_endpoint", "token_endpoint", "jwks_uri")
            if document.get("issuer") != issuer or not all(
                isinstance(document.get(name), str) for name in names
            ):
                log.warning("ui: the identity provider's discovery document is not for [ui.oidc]")
                raise _unreachable()
            methods = document.get("token_endpoint_auth_methods_supported") or []
            method = "client_secret_basic"
            if "client_secret_basic" not in methods and "client_secret_post" in methods:
                method = "client_secret_post"
            self._endpoints = Endpoints(
                authorization=document["authorization_endpoint"],
                token=document["token_endpoint"],
                jwks=document["jwks_uri"],
                token_auth_method=method,
            )
        return self._endpoints

    async def exchange(self, code: str, verifier: str, redirect_uri: str) -> dict[str, Any]:
        """The token endpoint's answer to ``code`` (with the PKCE ``verifier``)."""
        endpoints = await self.endpoints()
        try:
            async with AsyncOAuth2Client(
                client_id=self.settings.client_id,
                client_secret=self.settings.client_secret.get_secret_value(),
                token_endpoint_auth_method=endpoints.token_auth_method,
                redirect_uri=redirect_uri,
                timeout=HTTP_SECONDS,
            ) as client:
                token = await client.fetch_token(endpoints.token, code=code, code_verifier=verifier)
        except _EXCHANGE_ERRORS:
            raise SignInRefused(
                401,
                "The identity provider did not accept this sign-in: try again.",
                "single sign-on: the code was refused",
            ) from None
        return dict(token)

    async def verify(self, id_token: str, nonce: str, access_token: str | None) -> dict[str, Any]:
        """The ID token's claims once its signature, ``iss``, ``aud``, ``exp`` and ``nonce``
        are verified; :class:`SignInRefused` otherwise."""
        endpoints = await self.endpoints()
        keys = await self._get_json(endpoints.jwks)
        options = {
            "iss": {"essential": True, "value": self.settings.issuer},
            "aud": {"essential": True, "value": self.settings.client_id},
            "exp": {"essential": True},
            "nonce": {"essential": True},
        }
        params = {"nonce": nonce, "client_id": self.settings.client_id}
        if access_token:
            params["access_token"] = access_token
        try:
            claims = JsonWebToken(SIGNING_ALGORITHMS).decode(
                id_token,
                JsonWebKey.import_key_set(keys),
                claims_cls=CodeIDToken,
                claims_options=options,
                claims_params=params,
            )
            claims.validate(now=int(time.time()), leeway=LEEWAY_SECONDS)
        except (AuthlibBaseError, JoseError, ValueError, TypeError, KeyError) as exc:
            why = getattr(exc, "description", None) or getattr(exc, "error", type(exc).__name__)
            raise SignInRefused(
                401,
                "The identity provider's answer could not be verified: try again.",
                f"single sign-on: the ID token was refused ({str(why)[:80]})",
            ) from None
        return dict(claims)


def _unreachable() -> SignInRefused:
    return SignInRefused(
        502,
        "The identity provider could not be reached: try again in a moment.",
        "single sign-on: the provider did not answer",
    )


class UsedStates:
    """The ``state`` values of sign-ins already come back, each kept as long as its cookie may
    live (in this process: across workers the cookie, cleared on use, and the provider's
    single-use code stand in)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def use(self, state: str) -> bool:
        """Whether ``state`` was not used yet (it is now)."""
        now = time.time()
        for old in [s for s, until in self._until.items() if until <= now]:
            del self._until[old]
        if state in self._until:
            return False
        self._until[state] = now + FLOW_SECONDS
        return True


def sso_routes(pages: Pages, settings: Settings, insights: InsightsService) -> APIRouter:
    """The two routes of ``[ui.oidc]``, for :func:`deskside.web.routes.web_routes` to include
    when the config has that table."""
    oidc = settings.ui.oidc
    assert oidc is not None, "sso_routes needs [ui.oidc]"
    provider = Provider(oidc)
    used = UsedStates()
    router = APIRouter(include_in_schema=False, route_class=pages.route_class())

    def callback_url(request: Request) -> str:
        return public_base_url(request, settings.server.public_url) + UI_PREFIX + "/sso/callback"

    def refused(request: Request, status: int, message: str) -> Response:
        response = pages.refusal(
            request,
            None,
            status,
            message,
            title="Access denied" if status == 403 else "Sign-in failed",
            active=None,
            back=("/login", "Back to the login"),
        )
        clear_flow(response, request)
        return response

    def clear_flow(response: Response, request: Request) -> None:
        response.delete_cookie(
            SSO_COOKIE, path=UI_PREFIX + "/sso", secure=request.url.scheme == "https", httponly=True
        )

    @router.get(UI_PREFIX + "/sso/login")
    async def sso_login(request: Request, next: str | None = None) -> Response:
        try:
            endpoints = await provider.endpoints()
        except SignInRefused as refusal:
            return refused(request, refusal.status, refusal.message)
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        client = AsyncOAuth2Client(
            client_id=oidc.client_id,
            redirect_uri=callback_url(request),
            scope="openid email",
            code_challenge_method="S256",
        )
        url, _ = client.create_authorization_url(
            endpoints.authorization, state=state, code_verifier=verifier, nonce=nonce
        )
        await client.aclose()
        flow = {
            "s": state,
            "n": nonce,
            "v": verifier,
            "x": local_next(next),
            "e": round(time.time() + FLOW_SECONDS),
        }
        response = Response(status_code=303, headers={"location": url})
        response.set_cookie(
            SSO_COOKIE,
            pages.auth_of(request).seal(_PURPOSE, flow),
            max_age=FLOW_SECONDS,
            path=UI_PREFIX + "/sso",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",  # the provider sends the browser back with a top-level GET
        )
        return response

    @router.get(UI_PREFIX + "/sso/callback")
    async def sso_callback(request: Request) -> Response:
        client = request.client.host if request.client else "-"
        people = app_people(request, insights) if insights.ready else None
        if people is None:
            message = "The insights database is not available yet; try again in a moment."
            return refused(request, 503, message)
        try:
            member, target = await sign_in(request, people)
        except SignInRefused as refusal:
            log.warning("ui: single sign-on from %s refused (%s)", client, refusal.status)
            await people.record(f"ui:{client}", "login_failed", refusal.audit)
            return refused(request, refusal.status, refusal.message)
        log.info("ui: a person signed in with single sign-on from %s", client)
        await people.record(f"ui:{member.email}", "login", f"single sign-on from {client}")
        response = pages.redirect(request, target)
        pages.start_session(response, request, member.id, member.generation, member.workspace)
        clear_flow(response, request)
        return response

    async def sign_in(request: Request, people: People) -> tuple[Member, str]:
        """The person the provider vouches for, and where to send them."""
        flow = pages.auth_of(request).unseal(_PURPOSE, request.cookies.get(SSO_COOKIE))
        state = request.query_params.get("state", "")
        expected = flow.get("s") if flow else None
        if (
            flow is None
            or not isinstance(expected, str)
            or not isinstance(flow.get("e"), int)
            or flow["e"] <= time.time()
            or not hmac.compare_digest(expected.encode(), state.encode())
        ):
            raise SignInRefused(
                400,
                "This sign-in expired or was started elsewhere: sign in again.",
                "single sign-on: unknown state",
            )
        if not used.use(state):
            raise SignInRefused(
                400, "This sign-in was already used: sign in again.", "single sign-on: replayed"
            )
        code = request.query_params.get("code", "")
        if not code or "error" in request.query_params:
            raise SignInRefused(
                401,
                "The identity provider did not sign you in.",
                "single sign-on: the provider refused",
            )
        token = await provider.exchange(code, str(flow.get("v", "")), callback_url(request))
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise SignInRefused(
                401,
                "The identity provider's answer could not be verified: try again.",
                "single sign-on: no ID token",
            )
        access = token.get("access_token")
        claims = await provider.verify(
            id_token, str(flow.get("n", "")), access if isinstance(access, str) else None
        )
        member = await person_of(people, claims)
        return member, str(flow.get("x", UI_PREFIX + "/"))

    async def person_of(people: People, claims: dict[str, Any]) -> Member:
        """The person with the token's (verified) email; someone new from an allowed domain is
        added with ``default_role``."""
        email = claims.get("email")
        found = normalise_emails([email[:320]], fold_plus=False) if isinstance(email, str) else []
        if not found or claims.get("email_verified") is False:
            raise SignInRefused(
                403,
                "Your identity provider gave no verified email address.",
                "single sign-on: no verified email",
            )
        address = found[0]
        known = await people.login_of(address)
        if known is not None:
            return known[0]
        domain = address.rsplit("@", 1)[1]
        if oidc.default_role is None or domain not in oidc.allowed_domains:
            raise SignInRefused(
                403,
                "You are not a person of this deskside: ask an admin to add you.",
                "single sign-on: not a person, and not to be added",
            )
        try:
            role = Role.parse(oidc.default_role)
            person_id, _ = await people.add(address, role, by="ui:sso", invite=False)
        except PersonError:  # added meanwhile (a second tab)
            person_id = None
        member = await people.member(person_id) if person_id is not None else None
        if member is None:
            known = await people.login_of(address)
            if known is None:
                raise SignInRefused(409, "Please sign in again.", "single sign-on: a race")
            member = known[0]
        return member

    return router
