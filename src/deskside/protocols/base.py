"""The one interface every helpdesk implements: verify, parse, answer."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from deskside.card import Sidebar
from deskside.configtypes import ConfigModel, SecretList
from deskside.errors import BadRequest, PayloadTooLarge
from deskside.lookup import Lookup, normalise_emails
from deskside.resolve import Profile
from deskside.signing import Scheme, sign, verify

if TYPE_CHECKING:
    from deskside.cache import Cache
    from deskside.layout import CardLayout
    from deskside.references import Problem
    from deskside.service import SidebarService

__all__ = ["Decline", "ErrorAnswer", "HelpdeskConfig", "Protocol", "RawRequest", "openapi_route"]


@dataclass(frozen=True)
class ExtraRoute:
    """A further endpoint a protocol serves, e.g. Helper's widget identity."""

    path: str
    method: str
    endpoint: Callable[[Request], Awaitable[Response]]
    openapi: dict[str, Any] | None = None
    """As :attr:`Protocol.openapi`: how the route is published in the OpenAPI schema."""


@dataclass(frozen=True)
class RawRequest:
    """A request exactly as received: signatures are checked over these bytes."""

    method: str
    body: bytes
    query: bytes
    headers: Mapping[str, str]
    """Lower-cased header names."""


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
    """One helpdesk's wire format.

    The server calls :meth:`verify` on the raw request before anything is parsed, then
    :meth:`parse`, resolves the lookup, and answers with :meth:`respond`.
    """

    kind: ClassVar[str]
    """The ``kind`` of helpdesk table it serves, e.g. ``helpscout``."""
    title: ClassVar[str]
    """How people call the helpdesk, e.g. ``Help Scout``."""
    method: ClassVar[str] = "POST"
    signature_header: ClassVar[str]
    """Lower-case name of the header that carries the signature."""
    scheme: ClassVar[Scheme]
    timeout_seconds: ClassVar[float]
    """How long the helpdesk waits for an answer (``deskside probe`` waits as long)."""
    openapi: ClassVar[dict[str, Any] | None] = None
    """Keyword arguments for FastAPI's ``add_api_route`` to publish the route in the OpenAPI
    schema; None keeps it out (helpdesks have their own specification)."""

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
        self.path = config.path or f"/{name}"

    def verify(self, request: RawRequest) -> None:
        """Raise :class:`~deskside.errors.Unauthorized` unless the request is signed.

        By default the signature header must sign the raw body under one of the secrets.
        """
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
    def _signed_json(cls, secret: str, document: Mapping[str, Any]) -> RawRequest:
        body = json.dumps(document, separators=(",", ":")).encode()
        headers = {
            "content-type": "application/json",
            cls.signature_header: sign(cls.scheme, secret, body),
        }
        return RawRequest(method=cls.method, body=body, query=b"", headers=headers)

    @abstractmethod
    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        """The lookup the request asks for; raise BadRequest or :class:`Decline`."""

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

    def answer_variant(self, request: RawRequest) -> Hashable:
        """What, besides the customer's data, makes answers to ``request`` differ (Plain: the
        card keys asked for); answers with equal data and variant are encoded once."""
        return None

    def extra_routes(self, service: SidebarService) -> list[ExtraRoute]:
        """Routes besides the sidebar one that this helpdesk needs; none by default."""
        return []


class ErrorAnswer(BaseModel):
    """Every refusal: ``{"error": "…"}`` (never a secret, a signature or a stack trace)."""

    error: str


SECURITY_SCHEMES: dict[str, dict[str, Any]] = {}
"""OpenAPI security schemes by name, as :func:`openapi_route` declares them."""


def openapi_route(
    *,
    summary: str,
    answer: type[BaseModel],
    security: APIKeyHeader | HTTPBearer | Sequence[APIKeyHeader | HTTPBearer],
    body: type[BaseModel] | None = None,
    parameters: Sequence[Mapping[str, Any]] = (),
    description: str | None = None,
) -> dict[str, Any]:
    """``add_api_route`` keyword arguments that publish a route in the OpenAPI schema.

    ``body`` documents the JSON request body (the route still reads raw bytes: signatures are
    over them); ``security`` declares how the request is signed (several: alternatives), for
    documentation only: listed in :data:`SECURITY_SCHEMES` for the schema, never run as a
    per-request dependency.
    """
    schemes = [security] if isinstance(security, APIKeyHeader | HTTPBearer) else list(security)
    for scheme in schemes:
        SECURITY_SCHEMES[scheme.scheme_name] = scheme.model.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    extra: dict[str, Any] = {"security": [{scheme.scheme_name: []} for scheme in schemes]}
    if body is not None:
        content = {"application/json": {"schema": inline_schema(body)}}
        extra["requestBody"] = {"required": True, "content": content}
    if parameters:
        extra["parameters"] = [dict(parameter) for parameter in parameters]
    refused = {"model": ErrorAnswer}
    return {
        "summary": summary,
        "description": description,
        "openapi_extra": extra,
        "responses": {
            200: {"model": answer, "description": "The answer, as the helpdesk expects it"},
            400: {**refused, "description": "Malformed JSON, wrong types or a malformed query"},
            401: {**refused, "description": "Missing or wrong signature"},
            413: {**refused, "description": "Body too large"},
        },
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` written in place, so it can sit anywhere in
    an OpenAPI document (where ``#/$defs/…`` would point at the document's root)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def schema_problems(model: type[BaseModel], document: Any) -> list[str]:
    """``document`` checked against ``model``: one readable line per mismatch."""
    try:
        model.model_validate(document)
    except ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in error['loc']) or 'answer'}: {error['msg']}"
            for error in exc.errors()[:10]
        ]
    return []


def optional_string(document: Mapping[str, Any], key: str, where: str = "") -> str | None:
    """``document[key]`` when it is a string, None when absent or null, else a BadRequest."""
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"`{where}{key}` must be a string")
    return value


def parse_json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, or a BadRequest saying what is wrong with it."""
    if not body.strip():
        raise BadRequest("empty body: a JSON object is expected")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    return document


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length", "")
    # ASCII digits only ("²" is a digit int() refuses), and no int() of a 5000-digit header.
    if declared.isascii() and declared.isdigit() and int(declared[:20]) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
