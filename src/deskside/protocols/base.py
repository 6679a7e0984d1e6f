"""The one interface every helpdesk implements: verify, parse, answer."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from deskside.card import Sidebar
from deskside.configtypes import ConfigModel, SecretList
from deskside.errors import BadRequest
from deskside.lookup import Lookup
from deskside.resolve import Profile
from deskside.signing import Scheme, sign, verify

__all__ = ["Decline", "HelpdeskConfig", "Protocol", "RawRequest"]


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

    @classmethod
    @abstractmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        """A request signed exactly as the helpdesk would send it (for the demo, tests, probe)."""

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
    def respond(self, sidebar: Sidebar, profile: Profile | None) -> Any:
        """The JSON-serialisable answer; ``profile`` is None when the request was declined."""


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
