"""Helper (helper.ai): the customer-info request and the widget identity (docs/protocols.md §4).

Helper calls ``GET <path>?email=…&timestamp=…`` with ``Authorization: Bearer <sig>``, the
standard base64 HMAC-SHA256 of the query string exactly as sent. The host app's *server* asks
deskside for a widget identity (``POST <path>/identity``) so the secret never reaches a browser.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, parse_qsl, urlencode

from fastapi.security import HTTPBearer
from pydantic import AfterValidator, BaseModel, Field, StrictFloat, StrictInt, StrictStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from deskside.cache import Cache
from deskside.card import Sidebar, one_line, shorten
from deskside.configtypes import SecretList
from deskside.errors import BadRequest, Unauthorized
from deskside.expressions import Expression, Scope, TextTemplate, is_blank, missing_values
from deskside.http import parse_json_object, read_body
from deskside.layout import expression_context
from deskside.lookup import Lookup, normalise_emails
from deskside.middleware import arrived
from deskside.openapi import openapi_route, schema_problems
from deskside.protocols.base import (
    DemoRequest,
    ExtraRoute,
    HelpdeskConfig,
    PasteValue,
    Protocol,
    RawRequest,
    Sidebars,
    SignatureVector,
)
from deskside.render import helper as render
from deskside.resolve import Profile
from deskside.signing import Scheme, bearer_token, sign, token_matches, verify

__all__ = [
    "HELPDESK",
    "IDENTITY_MAX_BODY",
    "Helper",
    "HelperAnswer",
    "HelperConfig",
    "HelperIdentity",
    "widget_identity",
]

WIDGET_WINDOW_SECONDS = 3600
"""Helper's widget accepts an identity this long around its timestamp."""
IDENTITY_MAX_BODY = 4096
"""The identity endpoint reads bodies up to this size: one address is all it takes."""


class HelperConfig(HelpdeskConfig):
    kind: Literal["helper"]
    replay_window_seconds: int = Field(default=300, ge=1, le=86_400)
    """Requests whose ``timestamp`` is further than this from now are refused."""
    name: TextTemplate | None = None
    """The customer's name as Helper shows it; default: the first card's title."""
    value: Expression | None = None
    """The customer's worth in cents, e.g. ``billing.mrr_cents or app.mrr_cents``."""
    identity_token: SecretList = []
    """Bearer token(s) the host app's server presents to ``POST <path>/identity``; the widget
    identity endpoint exists only when one is set."""


def _http_url(url: str) -> str:
    if not url.startswith(("https://", "http://", "mailto:")):
        raise ValueError("an action must be an http(s) or mailto URL")
    return url


class HelperCustomer(BaseModel):
    name: StrictStr | None = None
    value: StrictInt | StrictFloat | None = None
    metadata: dict[str, Any] | None = None
    actions: dict[str, Annotated[StrictStr, AfterValidator(_http_url)]] | None = None


class HelperAnswer(BaseModel):
    """``customer`` is left out when nobody was found."""

    success: Literal[True]
    customer: HelperCustomer | None = None
    user_info: dict[str, Any] | None = None  # the older shape Helper still accepts


class HelperIdentityRequest(BaseModel):
    email: str = Field(json_schema_extra={"format": "email"})


class HelperCustomerMetadata(BaseModel):
    name: str | None = None
    value: int | float | None = None
    links: dict[str, str] = {}


class HelperIdentity(BaseModel):
    """What the host app passes to Helper's widget: ``emailHash`` is the lower-case hex
    HMAC-SHA256 of ``email:timestamp`` (milliseconds)."""

    email: str
    timestamp: int
    emailHash: str
    customerMetadata: HelperCustomerMetadata | None = None


class Helper(Protocol):
    """``GET`` with the signature over the raw query string, and a replay window."""

    kind = "helper"
    title = "Helper"
    list_order = 30  # before the default (100): an established helpdesk
    method = "GET"
    signature_header = "authorization"
    scheme = Scheme.SHA256_BASE64
    timeout_seconds = 15.0  # Helper waits 15 s and does not retry
    config: HelperConfig
    config_model = HelperConfig
    setup_where = (
        "Helper → the mailbox's customer info URL; the secret is the mailbox's widget HMAC secret."
    )
    preview_template = """{% set customer = desk.body.customer %}
{% if customer %}
<dl class="helper">
  <dt>Name</dt><dd>{{ customer.name }}</dd>
  {% if customer.value is not none %}<dt>Value</dt><dd>{{ customer.value }} <span class="muted small">(cents; Helper shows {{ customer.value | money }})</span></dd>{% endif %}
</dl>
<pre class="json">{{ customer | tojson_pretty }}</pre>
{% else %}
<p class="muted">No customer: Helper shows nothing for this address.</p>
{% endif %}"""  # noqa: E501
    demo_env = "HELPER_SECRET"
    demo_extra_env = {"helper_identity": "HELPER_IDENTITY_TOKEN"}
    demo_config = {
        "name": "{{ app.name }}",
        "value": "app.mrr_cents",
        "identity_token": "env:HELPER_IDENTITY_TOKEN",
    }
    signature_vectors = (  # Helper's documented example, over the query (docs/protocols.md §4)
        SignatureVector(
            "testSecret",
            b"email=user%40example.com&timestamp=1672534800",
            "AMeZkbMvdAoagGE8kMKukMyvrl+OSOWAjzXteDEjoxY=",
        ),
    )
    openapi = openapi_route(
        summary="Helper customer info",
        description="Called by Helper with the customer's address and the time it asked.",
        answer=HelperAnswer,
        security=HTTPBearer(
            scheme_name="helper_signature",
            description="Standard base64 HMAC-SHA256(secret, raw query string).",
            auto_error=False,
        ),
        parameters=[
            {"name": "email", "in": "query", "required": True, "schema": {"type": "string"}},
            {
                "name": "timestamp",
                "in": "query",
                "required": True,
                "schema": {"type": "integer", "minimum": 0},
                "description": "Unix seconds; refused outside the replay window.",
            },
        ],
    )

    @classmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        # Encoded by Python's urlencode; verification never re-encodes, so any encoder works.
        query = urlencode({"email": emails[0], "timestamp": int(time.time())}).encode()
        return cls.sign_request(secret, RawRequest("GET", b"", query, {}))

    @classmethod
    def malformed_request(cls, secret: str) -> RawRequest:
        """More query fields than any request of Helper's has."""
        query = "&".join(f"f{n}=x" for n in range(30)).encode()
        return cls.sign_request(secret, RawRequest("GET", b"", query, {}))

    @classmethod
    def sign_request(cls, secret: str, request: RawRequest) -> RawRequest:
        """The query's ``timestamp`` made now (other pairs kept as sent), and the query signed
        into ``Authorization: Bearer …``."""
        pairs = parse_qsl(request.query.decode("latin-1"), keep_blank_values=True)
        kept = [(key, value) for key, value in pairs if key != "timestamp"]
        query = urlencode([*kept, ("timestamp", str(int(time.time())))]).encode()
        headers = {**request.headers, "authorization": f"Bearer {sign(cls.scheme, secret, query)}"}
        return RawRequest(request.method, request.body, query, headers)

    @classmethod
    def check_answer(cls, status: int, document: Any, request: RawRequest) -> list[str]:
        return schema_problems(HelperAnswer, document)

    def verify(self, request: RawRequest) -> None:
        """The bearer signature must sign the raw query, then the timestamp must be recent."""
        header = request.headers.get(self.signature_header, "")
        scheme, _, signature = header.partition(" ")
        if scheme.lower() != "bearer":
            raise Unauthorized(
                "Authorization header missing or not a Bearer signature",
                code="malformed" if header.strip() else "missing",
            )
        verify(self.scheme, self.config.secrets(), request.query, signature)
        skew = abs(time.time() - _timestamp(request))
        if skew > self.config.replay_window_seconds:
            raise Unauthorized(
                f"timestamp {skew:.0f} s away from now, outside the replay window of "
                f"{self.config.replay_window_seconds} s (replayed request, or a clock is wrong)",
                code="expired",
            )

    async def refuse_replay(self, request: RawRequest, seen: Cache) -> None:
        """A verified query is answered once: ``seen`` remembers it until its timestamp leaves
        the window (the key is the query itself, which the signature covers, so a signature
        written another way is the same request)."""
        window = self.config.replay_window_seconds
        remaining = _timestamp(request) + window - time.time()
        digest = hashlib.sha256(request.query).hexdigest()
        if not await seen.claim(f"replay:{self.name}:{digest}", remaining + 1):
            raise Unauthorized(
                f"this signed request was answered before (a replay within the {window} s window)",
                code="replayed",
            )

    @classmethod
    def shows_customer(cls, document: Any) -> bool:
        return "customer" in document

    def setup_values(self, base_url: str) -> list[PasteValue]:
        if not self.config.identity_token:
            return []
        return [PasteValue("Widget identity URL", f"{base_url}{self.path}/identity")]

    def demo_requests(self, base_url: str) -> list[DemoRequest]:
        if not self.config.identity_token:
            return []
        token = self.config.identity_token[0].get_secret_value()
        request = RawRequest(
            method="POST",
            body=b'{"email":"owner@acme.example"}',
            query=b"",
            headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
        )
        title = "Helper widget identity, as your app's backend asks for it"
        return [DemoRequest(title, f"{self.path}/identity", request, demo_key="helper_identity")]

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        return self.lookup([_first(_query(request), "email")], fold_plus=fold_plus)

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> dict[str, Any]:
        """``{"success": true, "customer": {…}}``; without ``customer`` when nobody was found."""
        if profile is None or not sidebar.found:
            return {"success": True}
        return {"success": True, "customer": self.customer(sidebar, profile)}

    def customer(self, sidebar: Sidebar, profile: Profile) -> dict[str, Any]:
        """Helper's customer object: ``name``, ``value`` (cents), ``metadata``, ``actions``."""
        context = Scope(expression_context(profile))  # one render context for both pieces
        customer: dict[str, Any] = {"name": self._name(sidebar, profile, context)}
        value = self._value(context)
        if value is not None:
            customer["value"] = value
        customer["metadata"] = render.metadata(sidebar)
        customer["actions"] = render.actions(sidebar)
        return customer

    def _name(self, sidebar: Sidebar, profile: Profile, context: Mapping[str, Any]) -> str:
        """The ``name`` template as one clean line, or else the name the helpdesk sent or the
        first card's title (also when the template shows a missing value)."""
        if self.config.name is not None:
            with missing_values(context) as missing:
                try:
                    name = shorten(one_line(self.config.name.render(context)).strip(), 500)
                except Exception:  # a broken template falls back to the title
                    name = ""
            if name and not missing:
                return name
        return profile.lookup.name or sidebar.cards[0].title

    def _value(self, context: Mapping[str, Any]) -> int | None:
        if self.config.value is None:
            return None
        try:
            raw = self.config.value.evaluate(context)
            return None if is_blank(raw) else round(float(raw))
        except Exception:
            return None

    def extra_routes(self, service: Sidebars) -> list[ExtraRoute]:
        if not self.config.identity_token:
            return []

        async def identity(request: Request) -> Response:
            return JSONResponse(await self._identity(request, service))

        return [
            ExtraRoute(
                path=f"{self.path}/identity",
                method="POST",
                endpoint=identity,
                openapi=_IDENTITY_OPENAPI,
                max_body_bytes=IDENTITY_MAX_BODY,
            )
        ]

    async def _identity(self, request: Request, service: Sidebars) -> dict[str, Any]:
        tokens = [t.get_secret_value() for t in self.config.identity_token]
        if not token_matches(bearer_token(request.headers.get("authorization")), tokens):
            raise Unauthorized("identity request without a valid bearer token", code="token")
        body = await read_body(request, limit=IDENTITY_MAX_BODY)
        email = parse_json_object(body).get("email")
        if not isinstance(email, str) or not normalise_emails([email], fold_plus=False):
            raise BadRequest("`email` must be an email address")
        fold_plus = service.settings.lookup.fold_plus_addressing  # as Helper's own request
        emails = normalise_emails([email], fold_plus=fold_plus)
        lookup = Lookup(emails=emails, context={"desk": self.kind})
        answer = await service.answer(lookup, since=arrived(request))
        customer = self.customer(answer.sidebar, answer.profile) if answer.sidebar.found else None
        return widget_identity(self.config.secrets()[0], email.strip(), customer=customer)


_IDENTITY_OPENAPI = openapi_route(
    summary="Helper widget identity",
    description="For the host app's server: the signed identity to start Helper's widget with.",
    body=HelperIdentityRequest,
    answer=HelperIdentity,
    security=HTTPBearer(
        scheme_name="helper_identity_token",
        description="One of the configured `identity_token`s.",
        auto_error=False,
    ),
)


HELPDESK = Helper


def widget_identity(
    secret: str,
    email: str,
    *,
    timestamp_ms: int | None = None,
    customer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """What the host app passes to Helper's widget for ``email``.

    ``emailHash`` is the lower-case hex HMAC-SHA256 of ``f"{email}:{timestamp_ms}"``; Helper
    accepts it for an hour around ``timestamp_ms`` (default: now). ``customer`` (as answered
    to Helper) becomes ``customerMetadata {name, value, links}``. Call this on a server only:
    ``secret`` must never reach a browser.
    """
    timestamp_ms = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    identity: dict[str, Any] = {
        "email": email,
        "timestamp": timestamp_ms,
        "emailHash": sign(Scheme.SHA256_HEX, secret, f"{email}:{timestamp_ms}".encode()),
    }
    if customer:
        metadata = {"name": customer.get("name"), "links": customer.get("actions") or {}}
        if customer.get("value") is not None:
            metadata["value"] = customer["value"]
        identity["customerMetadata"] = metadata
    return identity


def _timestamp(request: RawRequest) -> int:
    """The request's ``timestamp`` (Unix seconds); Unauthorized when it is not one."""
    timestamp = _first(_query(request), "timestamp") or ""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Unauthorized("timestamp missing or not a number of seconds", code="malformed")
    return int(timestamp)


def _query(request: RawRequest) -> dict[str, list[str]]:
    try:
        return parse_qs(request.query.decode("ascii"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the query string is malformed") from None


def _first(query: Mapping[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None
