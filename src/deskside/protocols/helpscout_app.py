"""Help Scout's app platform: a signed ``GET`` whose answer is the page shown in the sidebar's
iframe (docs/protocols.md, "Help Scout app platform").

Help Scout signs the query: ``X-HelpScout-Signature`` is the base64 HMAC-SHA1 of the other
parameters as a JSON object (PHP ``json_encode``: compact, ``/`` as ``\\/``, non-ASCII as
``\\uXXXX``). The query names the customer by ``customer-id`` only; deskside asks the Mailbox API
(``GET /v2/customers/{id}``, an OAuth client-credentials token) for the addresses, and caches
both the token and the answer briefly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote

from cachetools import TTLCache
from fastapi.security import APIKeyQuery
from pydantic import Field
from starlette.responses import HTMLResponse, Response

from deskside.card import Sidebar
from deskside.configtypes import Secret
from deskside.errors import BadRequest
from deskside.lookup import Lookup
from deskside.openapi import openapi_route
from deskside.protocols.base import (
    Decline,
    HelpdeskConfig,
    PasteValue,
    Protocol,
    RawRequest,
    SignatureVector,
)
from deskside.protocols.helpscout import html_problems
from deskside.render.helpscout import render_html
from deskside.resolve import Profile
from deskside.signing import Scheme, sign, verify

if TYPE_CHECKING:
    import httpx

__all__ = ["HELPDESK", "HelpScoutApp", "HelpScoutAppConfig", "signed_message"]

log = logging.getLogger("deskside.protocols.helpscout_app")

SIGNATURE = "X-HelpScout-Signature"
"""The query parameter that carries the signature (its name is matched case-insensitively)."""
FRAME_ANCESTORS = "https://secure.helpscout.net https://*.helpscout.net"
"""Who may show the page in a frame: Help Scout only."""
DEMO_CUSTOMERS: dict[str, list[str]] = {
    "1001": ["owner@acme.example"],
    "1002": ["pat@initech.example", "pat@initrode.example"],
    "1003": ["mallory@evil.example"],
    "1004": ["lapsed@globex.example"],
    "1005": ["nobody@example.com"],
}
"""The demo's Help Scout customers, by id (answered without the Mailbox API)."""
_STATIC = Path(__file__).resolve().parents[1] / "web" / "static"
# The web UI's Help Scout look (its preview frame allows exactly these by hash): the same
# files, read, not imported, so the sidebar never loads the web UI.
_CSS = (_STATIC / "helpscout-frame.css").read_text(encoding="utf-8")
_JS = (_STATIC / "helpscout-frame.js").read_text(encoding="utf-8")
_OPEN = '<div class="hs-sidebar">'
_CLOSE = "</div><script>"
_DIGITS = re.compile(r"[0-9]{1,20}")


class HelpScoutAppConfig(HelpdeskConfig):
    kind: Literal["helpscout_app"]
    app_id: str | None = None
    """The Mailbox API app's id (Your Profile → My Apps), to look customers up by id."""
    app_secret: Secret | None = None
    """That app's secret (``env:NAME`` or ``file:PATH``)."""
    api_url: str = Field(default="https://api.helpscout.net", pattern=r"^https?://[^\s?#]+$")
    """Where the Mailbox API is (only tests and proxies change it)."""
    customers: dict[str, list[str]] = {}
    """Help Scout customer ids → addresses, answered without the Mailbox API (the demo's)."""
    lookup_seconds: float = Field(default=300.0, ge=0, le=3600)
    """How long a customer's addresses from the Mailbox API are reused."""


def _pairs(query: bytes) -> list[tuple[str, str]]:
    """The query's parameters in the order received, decoded as PHP decodes them."""
    text = query.decode("utf-8", errors="replace")
    return [
        (unquote(name.replace("+", " ")), unquote(value.replace("+", " ")))
        for name, _, value in (part.partition("=") for part in text.split("&") if part)
    ]


def _is_signature(name: str) -> bool:
    return name.lower() == SIGNATURE.lower()


def signed_message(query: bytes) -> bytes:
    """What Help Scout signs: every parameter but the signature as a JSON object, the way PHP's
    ``json_encode`` writes it (a later duplicate replaces the value, keeping the place)."""
    params: dict[str, str] = {}
    for name, value in _pairs(query):
        if not _is_signature(name):
            params[name] = value
    if not params:
        return b"[]"  # PHP encodes an empty array as a list
    return json.dumps(params, separators=(",", ":")).replace("/", "\\/").encode()


def _page(fragment: str) -> str:
    """A whole page in Help Scout's sidebar look around ``fragment`` (already escaped)."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>deskside</title><style>{_CSS}</style></head>"
        f"<body>{_OPEN}{fragment}{_CLOSE}{_JS}</script></body></html>"
    )


def _shown(page: str) -> str:
    """The part of the page that shows the sidebar (the rest is fixed style and script)."""
    start, end = page.find(_OPEN), page.rfind(_CLOSE)
    return page[start + len(_OPEN) : end] if 0 <= start < end else page


class _MailboxAPI:
    """Who a Help Scout customer id is, asked of the Mailbox API with an OAuth
    client-credentials token; the token and each answer are reused while fresh."""

    def __init__(self, config: HelpScoutAppConfig) -> None:
        assert config.app_id is not None and config.app_secret is not None
        self.url = config.api_url.rstrip("/")
        self.app_id = config.app_id
        self.app_secret = config.app_secret.get_secret_value()
        self.token: tuple[str, float] | None = None  # (token, monotonic expiry)
        self.found: TTLCache[str, tuple[str | None, list[str]]] = TTLCache(
            maxsize=2048, ttl=config.lookup_seconds
        )

    async def customer(self, customer_id: str) -> tuple[str | None, list[str]] | None:
        """``(name, addresses)`` of the customer; None when Help Scout has none of that id.
        Raises :class:`httpx.HTTPError` (or ValueError for an unreadable answer)."""
        import httpx  # here, not at the top: only a Mailbox API app calls Help Scout

        if customer_id in self.found:
            return self.found[customer_id]
        async with httpx.AsyncClient(timeout=3.0, follow_redirects=False) as client:
            response = await self._get(client, f"/v2/customers/{customer_id}")
            if response.status_code == 401:  # revoked or expired early: one new token
                self.token = None
                response = await self._get(client, f"/v2/customers/{customer_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        document = response.json()
        emails = (document.get("_embedded") or {}).get("emails") or []
        names = [document.get(k) for k in ("firstName", "lastName")]
        name = " ".join(n for n in names if isinstance(n, str)).strip() or None
        addresses = [e["value"] for e in emails if isinstance(e, dict) and "value" in e]
        found = (name, [a for a in addresses if isinstance(a, str)])
        self.found[customer_id] = found
        return found

    async def _get(self, client: httpx.AsyncClient, path: str) -> httpx.Response:
        token = await self._token(client)
        return await client.get(self.url + path, headers={"authorization": f"Bearer {token}"})

    async def _token(self, client: httpx.AsyncClient) -> str:
        if self.token is not None and time.monotonic() < self.token[1]:
            return self.token[0]
        response = await client.post(
            self.url + "/v2/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": self.app_id,
                "client_secret": self.app_secret,
            },
        )
        response.raise_for_status()
        document = response.json()
        lifetime = float(document.get("expires_in") or 300)
        self.token = (str(document["access_token"]), time.monotonic() + lifetime * 0.9)
        return self.token[0]


class HelpScoutApp(Protocol):
    """Verifies base64 HMAC-SHA1 over the query's JSON; looks ``customer-id`` up (or the signed
    ``email`` parameters deskside's own requests carry); answers a ``text/html`` page."""

    kind = "helpscout_app"
    signature_header = "x-helpscout-signature"
    scheme = Scheme.SHA1_BASE64
    title = "Help Scout app"
    method = "GET"
    media_type = "text/html"
    timeout_seconds = 10.0  # a page load: the agent waits, Help Scout publishes no limit
    config: HelpScoutAppConfig
    config_model = HelpScoutAppConfig
    setup_where = (
        "Help Scout's app platform (Manage → Apps → build an app for the sidebar): the "
        "Callback URL it loads in an iframe and the app's Secret Key."
    )
    preview_template = (
        '{% if desk.body is string %}<iframe class="hs-frame" title="Help Scout app page for '
        '{{ result.emails[0] }}" sandbox="allow-scripts allow-popups '
        'allow-popups-to-escape-sandbox" srcdoc="{{ desk.body }}"></iframe>'
        '{% else %}<pre class="json">{{ desk.pretty }}</pre>{% endif %}'
    )
    demo_env = "HELPSCOUT_APP_SECRET"
    demo_config = {"customers": DEMO_CUSTOMERS}
    signature_vectors = (  # docs/protocols.md, "Help Scout app platform"
        SignatureVector(
            "my-secret-key",
            b'{"conversation-id":"123","customer-id":"456","mailbox-id":"789"}',
            "SNwI6BtgTeMWCfz9eTsIgQDwe+g=",
        ),
    )
    openapi = openapi_route(
        summary="Help Scout app platform sidebar page",
        description="Loaded by Help Scout in the sidebar's iframe when an agent opens a "
        "conversation; the answer is the page.",
        answer="text/html",
        security=APIKeyQuery(
            name=SIGNATURE,
            scheme_name="helpscout_app_signature",
            description="Standard base64 of HMAC-SHA1(secret, the other parameters as PHP "
            "json_encode writes them).",
            auto_error=False,
        ),
        parameters=[
            {"name": name, "in": "query", "required": False, "schema": schema}
            for name, schema in (
                ("conversation-id", {"type": "string", "pattern": "^[0-9]{1,20}$"}),
                ("conversation-number", {"type": "string", "pattern": "^[0-9]{1,20}$"}),
                ("customer-id", {"type": "string", "pattern": "^[0-9]{1,20}$"}),
                ("mailbox-id", {"type": "string", "pattern": "^[0-9]{1,20}$"}),
                ("user-id", {"type": "string", "pattern": "^[0-9]{1,20}$"}),
                ("email", {"type": "string", "description": "deskside's own requests only"}),
            )
        ],
    )

    def __init__(self, name: str, config: HelpScoutAppConfig) -> None:
        super().__init__(name, config)
        has_api = config.app_id is not None and config.app_secret is not None
        self._api = _MailboxAPI(config) if has_api else None

    @classmethod
    def default_path(cls, name: str) -> str:
        """``/NAME`` with ``_`` as ``-``: ``/helpscout-app``."""
        return "/" + name.replace("_", "-")

    # ── the signature, in the query ──────────────────────────────────────────────────────

    def verify(self, request: RawRequest) -> None:
        signatures = [v for n, v in _pairs(request.query) if _is_signature(n)]
        message = signed_message(request.query)
        verify(self.scheme, self.config.secrets(), message, signatures[-1] if signatures else None)

    @classmethod
    def sign_request(cls, secret: str, request: RawRequest) -> RawRequest:
        kept = cls.unsigned(request).query
        signature = sign(cls.scheme, secret, signed_message(kept))
        extra = f"{SIGNATURE}={quote(signature, safe='')}".encode()
        query = kept + b"&" + extra if kept else extra
        return RawRequest(request.method, request.body, query, request.headers)

    @classmethod
    def unsigned(cls, request: RawRequest) -> RawRequest:
        parts = [p for p in request.query.split(b"&") if p]
        kept = [
            p
            for p in parts
            if not _is_signature(unquote(p.partition(b"=")[0].decode("utf-8", "replace")))
        ]
        return RawRequest(request.method, request.body, b"&".join(kept), request.headers)

    # ── requests and answers ─────────────────────────────────────────────────────────────

    @classmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        """As Help Scout loads the page; a customer the demo does not know by id is named by
        signed ``email`` parameters instead."""
        known = next(
            (i for i, e in DEMO_CUSTOMERS.items() if e[: len(emails)] == list(emails)), None
        )
        params = [("conversation-id", "123"), ("conversation-number", "45")]
        params += [("customer-id", known or "54321"), ("mailbox-id", "87654"), ("user-id", "9")]
        if known is None:
            params += [("email", email) for email in emails]
        query = "&".join(f"{n}={quote(v, safe='@')}" for n, v in params).encode()
        return cls.sign_request(secret, RawRequest("GET", b"", query, {}))

    @classmethod
    def malformed_request(cls, secret: str) -> RawRequest:
        query = b"conversation-id=123&customer-id=not-a-number"
        return cls.sign_request(secret, RawRequest("GET", b"", query, {}))

    @classmethod
    def read_answer(cls, content_type: str, body: bytes) -> Any:
        """The page, as text."""
        if content_type.split(";")[0].strip() != cls.media_type:
            raise ValueError(f"Content-Type is {content_type!r}, expected text/html")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the page is not UTF-8") from None

    @classmethod
    def check_answer(cls, status: int, document: Any, request: RawRequest) -> list[str]:
        if not isinstance(document, str) or not document.lower().startswith("<!doctype html>"):
            return ["the answer is not an HTML page"]
        return html_problems(_shown(document))

    @classmethod
    def shown_markup(cls, document: Any) -> list[tuple[Literal["html", "markdown"], str]]:
        return [("html", _shown(document))]

    @classmethod
    def shows_customer(cls, document: Any) -> bool:
        return "<h4>" in _shown(document)  # each card's title

    def response(self, document: Any) -> Response:
        """The page, framed by Help Scout only; it sets no cookie and runs only its own
        style and script."""
        return HTMLResponse(
            document,
            headers={
                "content-security-policy": "; ".join(
                    [
                        "default-src 'none'",
                        f"style-src {_hash(_CSS)}",
                        f"script-src {_hash(_JS)}",
                        "img-src data:",
                        "base-uri 'none'",
                        "form-action 'none'",
                        f"frame-ancestors {FRAME_ANCESTORS}",
                    ]
                ),
                "x-content-type-options": "nosniff",
                "referrer-policy": "no-referrer",
                "cache-control": "no-store",
            },
        )

    def setup_values(self, base_url: str) -> list[PasteValue]:
        api = (
            f"app {self.config.app_id}, at {self.config.api_url}"
            if self._api is not None
            else "not set: only the customers listed in `customers` are found"
        )
        return [
            PasteValue(
                "Mailbox API",
                api,
                note=f"[helpdesks.{self.name}] app_id and app_secret: find customers by id",
                copy=False,
            )
        ]

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        """Only what the query says by itself (signed ``email``s, ``customers``); the server
        calls :meth:`aparse`, which also asks the Mailbox API."""
        params, emails = self._params(request)
        known = self.config.customers.get(params.get("customer-id", ""))
        return self._lookup(params, emails or known or [], None, fold_plus)

    async def aparse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        params, emails = self._params(request)
        customer_id = params.get("customer-id")
        name = None
        if not emails and customer_id is not None:
            emails = self.config.customers.get(customer_id) or []
            if not emails and self._api is None:
                raise Decline("deskside has no Mailbox API app to find this customer with.")
            if not emails:
                name, emails = await self._ask(customer_id)
        return self._lookup(params, emails, name, fold_plus)

    async def _ask(self, customer_id: str) -> tuple[str | None, list[str]]:
        import httpx

        assert self._api is not None
        try:
            found = await self._api.customer(customer_id)
        except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("%s: the Mailbox API did not answer: %s", self.name, type(exc).__name__)
            raise Decline("Help Scout's Mailbox API is unavailable right now.") from None
        if found is None:
            raise Decline("Help Scout has no such customer.")
        return found

    def _params(self, request: RawRequest) -> tuple[dict[str, str], list[str]]:
        params: dict[str, str] = {}
        emails: list[str] = []
        for name, value in _pairs(request.query):
            if name == "email":
                emails.append(value)
            elif not _is_signature(name):
                params[name] = value
        for key in ("conversation-id", "conversation-number", "customer-id", "mailbox-id"):
            if key in params and not _DIGITS.fullmatch(params[key]):
                raise BadRequest(f"`{key}` must be a number")
        return params, emails

    def _lookup(
        self, params: dict[str, str], emails: Sequence[str], name: str | None, fold_plus: bool
    ) -> Lookup:
        def number(key: str) -> int | None:
            return int(params[key]) if key in params else None

        return self.lookup(
            emails,
            fold_plus=fold_plus,
            name=name,
            missing="This conversation has no customer email address.",
            mailbox_id=number("mailbox-id"),
            conversation_id=number("conversation-id"),
            conversation_number=number("conversation-number"),
        )

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> str:
        return _page(render_html(sidebar))


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


HELPDESK = HelpScoutApp
