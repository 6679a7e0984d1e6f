"""The one interface every helpdesk implements: verify, parse, answer."""

from __future__ import annotations

import hmac
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal
from typing import Protocol as Interface

from pydantic import Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from deskside.cache import Cache
from deskside.card import Sidebar
from deskside.configtypes import ConfigModel, SecretList
from deskside.errors import Unauthorized, UnauthorizedCode
from deskside.layout import CardLayout
from deskside.lookup import Lookup, normalise_emails
from deskside.references import Problem
from deskside.resolve import Profile
from deskside.signing import Scheme, bearer_token, sign, token_matches, verify

__all__ = [
    "Decline",
    "DemoRequest",
    "HelpdeskConfig",
    "PasteValue",
    "Protocol",
    "RawRequest",
    "SidebarAnswer",
    "Sidebars",
    "SignatureVector",
    "secret_values",
]


class SidebarAnswer(Interface):
    """What a helpdesk's own routes read of an answer (:class:`deskside.service.Answer`)."""

    @property
    def sidebar(self) -> Sidebar: ...

    @property
    def profile(self) -> Profile: ...


class _LookupSettings(Interface):
    @property
    def fold_plus_addressing(self) -> bool: ...


class _Settings(Interface):
    @property
    def lookup(self) -> _LookupSettings: ...


class Sidebars(Interface):
    """What a helpdesk's own routes (:meth:`Protocol.extra_routes`) may use of the sidebar
    service: its answer for a lookup, and the lookup settings. The server passes its
    :class:`deskside.service.SidebarService`; helpdesks never import it (it builds them)."""

    @property
    def settings(self) -> _Settings: ...

    async def answer(
        self, lookup: Lookup, *, refresh: bool = False, since: float | None = None
    ) -> SidebarAnswer: ...


@dataclass(frozen=True)
class ExtraRoute:
    """A further endpoint a protocol serves, e.g. Helper's widget identity."""

    path: str
    method: str
    endpoint: Callable[[Request], Awaitable[Response]]
    openapi: dict[str, Any] | None = None
    """As :attr:`Protocol.openapi`: how the route is published in the OpenAPI schema."""
    max_body_bytes: int | None = None
    """The largest body the endpoint reads (a larger one is refused with 413); None: the
    server's ``[server] max_body_bytes``."""


@dataclass(frozen=True)
class RawRequest:
    """A request exactly as received: signatures are checked over these bytes."""

    method: str
    body: bytes
    query: bytes
    headers: Mapping[str, str]
    """Lower-cased header names."""


@dataclass(frozen=True)
class PasteValue:
    """One value the Setup page shows for a helpdesk, to paste into it."""

    label: str
    value: str
    secret: bool = False
    note: str | None = None
    copy: bool = True
    """Offer a copy button (not for a value that is only to be read)."""


@dataclass(frozen=True)
class DemoRequest:
    """A further signed request ``deskside demo`` prints for a helpdesk (Helper's identity)."""

    title: str
    path: str
    request: RawRequest
    demo_key: str | None = None
    """The name (in :attr:`Protocol.demo_extra_env`) of the demo secret it carries."""


@dataclass(frozen=True)
class SignatureVector:
    """A published signature: ``secret`` over ``message`` (the body, or what the helpdesk
    signs) gives ``signature`` under the helpdesk's scheme."""

    secret: str
    message: bytes
    signature: str


def _env_names(secret: str) -> list[str]:
    """The environment variables that hold ``secret`` (where ``env:NAME`` most likely read it)."""
    wanted = secret.encode()
    return sorted(
        name
        for name, value in os.environ.items()
        if hmac.compare_digest(value.encode(errors="replace"), wanted)
    )


def secret_values(label: str, secrets: Sequence[str]) -> list[PasteValue]:
    """``secrets`` as Setup shows them: each with where it came from, the first to paste."""
    values = []
    for index, secret in enumerate(secrets):
        names = _env_names(secret)
        note = f"from ${', $'.join(names)}" if names else "written in the config"
        if len(secrets) > 1:
            note += " (rotation: the first is the one to paste)" if index == 0 else ""
        values.append(PasteValue(label, secret, secret=True, note=note))
    return values


class Decline(Exception):
    """The request is valid but asks nothing deskside answers; show ``message`` instead."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class HelpdeskConfig(ConfigModel):
    """Keys every ``[helpdesks.NAME]`` table accepts besides its own."""

    path: str = Field(default="", pattern=r"^(/[A-Za-z0-9._~-]+)+$|^$")
    """Where the helpdesk calls; default ``/NAME`` (``[helpdesks.NAME]``)."""
    secret: SecretList
    """The shared secret (``env:NAME`` or ``file:PATH``), or a list of them during a rotation."""

    def secrets(self) -> list[str]:
        return [secret.get_secret_value() for secret in self.secret]

    def card_problems(self, card: CardLayout) -> list[Problem]:
        """Keys of this table naming what ``[card]`` lacks, located within the table."""
        return []


class Protocol(ABC):
    """One helpdesk: its wire format and everything else deskside needs to know about it.

    The server calls :meth:`verify` on the raw request before anything is parsed, then
    :meth:`parse`, resolves the lookup, and answers with :meth:`respond`. The class attributes
    tell the rest of deskside what it would otherwise have to know by ``kind``: the config
    table, the Setup page, the preview, the demo, ``deskside probe`` and the contract test.
    See :mod:`deskside.helpdesks` for how a helpdesk module is found.
    """

    kind: ClassVar[str]
    """The ``kind`` of helpdesk table it serves, e.g. ``helpscout`` (a string literal in the
    class body: the command line reads it without importing the module)."""
    title: ClassVar[str]
    """How people call the helpdesk, e.g. ``Help Scout`` (a literal, as ``kind``)."""
    method: ClassVar[str] = "POST"
    other_methods: ClassVar[tuple[str, ...]] = ()
    """Further methods the helpdesk may call the same route with (Gorgias lets its user pick
    GET or POST); :attr:`method` is the one deskside's own requests use (demo, ``probe``)."""
    signature_header: ClassVar[str]
    """Lower-case name of the header that carries the signature, or the token when
    :attr:`scheme` is None (a literal, as ``kind``)."""
    scheme: ClassVar[Scheme | None]
    """How requests are signed, ``Scheme.NAME`` in the class body (read as ``kind``); ``None``
    when the helpdesk signs nothing and sends one of the secrets itself, ``Bearer <secret>`` in
    :attr:`signature_header` (then it has no :attr:`signature_vectors`)."""
    timeout_seconds: ClassVar[float]
    """How long the helpdesk waits for an answer (``deskside probe`` waits as long)."""
    openapi: ClassVar[dict[str, Any] | None] = None
    """Keyword arguments for FastAPI's ``add_api_route`` to publish the route in the OpenAPI
    schema; None keeps it out (helpdesks have their own specification)."""
    config_model: ClassVar[type[HelpdeskConfig]]
    """The ``[helpdesks.NAME]`` table; its ``kind`` is ``Literal[<kind>]``."""
    setup_where: ClassVar[str] = ""
    """Where in the helpdesk the Setup page's values are pasted, in one sentence."""
    preview_template: ClassVar[str] = '<pre class="json">{{ desk.pretty }}</pre>'
    """The Preview page's fragment showing the answer as the helpdesk would: Jinja (autoescaped)
    with ``desk`` (``desk.body`` the answer), ``result`` and the UI's filters (``markdown``,
    ``safe_href``, ``frame``, ``money``, ``tojson_pretty``)."""
    demo_env: ClassVar[str]
    """The environment variable ``deskside demo`` reads the secret from (a random one when
    unset)."""
    demo_extra_env: ClassVar[Mapping[str, str]] = {}
    """Further demo secrets by name (e.g. ``helper_identity``) → their variables."""
    demo_config: ClassVar[Mapping[str, Any]] = {}
    """The demo's ``[helpdesks.<kind>]`` keys besides ``secret`` (``env:<demo_env>``),
    used when the demo config has no table for the kind; values may be ``env:NAME`` of
    :attr:`demo_extra_env` variables."""
    demo_email: ClassVar[str] = "owner@acme.example"
    """Whom the demo's example request asks about."""
    signature_vectors: ClassVar[Sequence[SignatureVector]] = ()
    """Published signatures the contract test checks :attr:`scheme` against."""
    media_type: ClassVar[str] = "application/json"
    """The Content-Type of answers: JSON by default; a helpdesk that loads a page answers
    ``text/html`` and :meth:`respond` returns the page as a string."""

    @classmethod
    @abstractmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        """A request signed exactly as the helpdesk would send it (for the demo, tests, probe)."""

    @classmethod
    @abstractmethod
    def check_answer(cls, status: int, document: Any, request: RawRequest) -> list[str]:
        """What is wrong with an endpoint's JSON answer to ``request``, as the helpdesk would
        see it; ``[]`` when it would be shown. Used by ``deskside probe``."""

    def __init__(self, name: str, config: HelpdeskConfig) -> None:
        self.name = name
        self.config = config
        self.path = config.path or self.default_path(name)

    @classmethod
    def default_path(cls, name: str) -> str:
        """Where ``[helpdesks.NAME]`` is served when it sets no ``path``: ``/NAME``."""
        return f"/{name}"

    def verify(self, request: RawRequest) -> None:
        """Raise :class:`~deskside.errors.Unauthorized` unless the request is signed.

        By default the signature header must sign the raw body under one of the secrets; with
        no :attr:`scheme`, it must be ``Bearer <one of the secrets>`` (compared in constant time).
        """
        if self.scheme is None:
            header = request.headers.get(self.signature_header)
            if not token_matches(bearer_token(header), self.config.secrets()):
                code: UnauthorizedCode = "token" if bearer_token(header) else "missing"
                raise Unauthorized("bearer token missing or not a configured one", code=code)
            return
        verify(
            self.scheme,
            self.config.secrets(),
            request.body,
            request.headers.get(self.signature_header),
        )

    async def refuse_replay(self, request: RawRequest, seen: Cache) -> None:
        """After :meth:`verify`: raise :class:`~deskside.errors.Unauthorized` for a request that
        must not be answered twice, remembering the others in ``seen``. By default any request
        may come again (a helpdesk that signs no time may resend)."""
        return None

    @classmethod
    def sign_request(cls, secret: str, request: RawRequest) -> RawRequest:
        """``request`` signed with ``secret`` exactly as the helpdesk signs (by default: the
        raw body's signature in :attr:`signature_header`, or ``Bearer <secret>`` with no
        :attr:`scheme`); tests sign generated requests so."""
        if cls.scheme is None:
            signature = f"Bearer {secret}"
        else:
            signature = sign(cls.scheme, secret, request.body)
        headers = {**request.headers, cls.signature_header: signature}
        return RawRequest(request.method, request.body, request.query, headers)

    @classmethod
    def malformed_request(cls, secret: str) -> RawRequest:
        """A request signed correctly whose content the helpdesk never sends (400); by
        default a body that is not JSON."""
        unsigned = RawRequest(cls.method, b'{"email": ', b"", {"content-type": "application/json"})
        return cls.sign_request(secret, unsigned)

    @classmethod
    def _signed_json(cls, secret: str, document: Mapping[str, Any]) -> RawRequest:
        body = json.dumps(document, separators=(",", ":")).encode()
        request = RawRequest(cls.method, body, b"", {"content-type": "application/json"})
        return cls.sign_request(secret, request)

    @abstractmethod
    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        """The lookup the request asks for; raise BadRequest or :class:`Decline`."""

    async def aparse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        """What the server calls: :meth:`parse` by default; a helpdesk that must ask another
        service who the customer is (Help Scout's app platform) does so here."""
        return self.parse(request, fold_plus=fold_plus)

    @abstractmethod
    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> Any:
        """The JSON-serialisable answer to ``request``.

        ``profile`` is None when the request was declined; ``request`` is None in a preview
        (answer everything the helpdesk could ask for).
        """

    def lookup(
        self,
        addresses: Iterable[object],
        *,
        fold_plus: bool,
        name: str | None = None,
        missing: str = "No customer email address.",
        **context: Any,
    ) -> Lookup:
        """The lookup for ``addresses`` (non-addresses are ignored), with the helpdesk's
        ``context``; :class:`Decline` with ``missing`` when none is an email address."""
        emails = normalise_emails(addresses, fold_plus=fold_plus)
        if not emails:
            raise Decline(missing)
        return Lookup(emails=emails, name=name, context={"desk": self.kind, **context})

    def wants_fresh(self, request: RawRequest) -> bool:
        """Whether ``request`` asks for fresh data past the cache (a "Refresh" button the
        helpdesk sends back signed); by default never."""
        return False

    def response(self, document: Any) -> Response:
        """The HTTP answer carrying :meth:`respond`'s ``document`` (JSON by default)."""
        return JSONResponse(document)

    @classmethod
    def read_answer(cls, content_type: str, body: bytes) -> Any:
        """The document an answer carries (what :meth:`respond` returned), read as the
        helpdesk reads it; ValueError saying why the helpdesk could not read it."""
        problems = []
        if content_type.split(";")[0].strip() != cls.media_type:
            problems.append(f"Content-Type is {content_type!r}, expected {cls.media_type}")
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            problems.append(f"the body is not JSON: {cls.title} would show an error")
        if problems:
            raise ValueError("; ".join(problems))
        return document

    @classmethod
    def unsigned(cls, request: RawRequest) -> RawRequest:
        """``request`` without its signature (by default: without :attr:`signature_header`)."""
        headers = {k: v for k, v in request.headers.items() if k != cls.signature_header}
        return RawRequest(request.method, request.body, request.query, headers)

    def answer_variant(self, request: RawRequest) -> Hashable:
        """What, besides the customer's data, makes answers to ``request`` differ (Plain: the
        card keys asked for); answers with equal data and variant are encoded once."""
        return None

    def extra_routes(self, service: Sidebars) -> list[ExtraRoute]:
        """Routes besides the sidebar one that this helpdesk needs; none by default."""
        return []

    @classmethod
    def shown_markup(cls, document: Any) -> list[tuple[Literal["html", "markdown"], str]]:
        """Every part of the answer the helpdesk renders as HTML or markdown (the rest it shows
        as plain text); the contract test checks that customer data never becomes markup in
        them."""
        return []

    @classmethod
    def shows_customer(cls, document: Any) -> bool:
        """Whether the answer ``document`` shows a customer (False: the helpdesk's "not
        found"); the contract test asks an unknown customer."""
        return bool(document)

    def setup_values(self, base_url: str) -> list[PasteValue]:
        """What Setup shows to paste into the helpdesk besides the URL and the secret."""
        return []

    def demo_requests(self, base_url: str) -> list[DemoRequest]:
        """Signed requests ``deskside demo`` prints besides :meth:`example_request`."""
        return []
