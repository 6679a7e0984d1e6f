"""The generic JSON endpoint: for in-house tools and helpdesks without a native protocol.

``POST {"email": …}`` or ``{"emails": […]}``, authenticated by ``X-Deskside-Signature`` (hex
HMAC-SHA256 of the raw body) or ``Authorization: Bearer <token>``; the answer is the neutral
:class:`~deskside.card.Sidebar` as typed JSON, described in the OpenAPI schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, model_validator

from deskside.card import Field as CardField
from deskside.card import Sidebar
from deskside.configtypes import SecretList
from deskside.errors import BadRequest, Unauthorized
from deskside.http import optional_string, parse_json_object
from deskside.lookup import MAX_EMAILS, Lookup
from deskside.openapi import openapi_route, schema_problems
from deskside.protocols.base import (
    HelpdeskConfig,
    PasteValue,
    Protocol,
    RawRequest,
    SignatureVector,
    secret_values,
)
from deskside.render.format import json_number
from deskside.resolve import Profile
from deskside.signing import Scheme, bearer_token, token_matches

__all__ = ["HELPDESK", "CardRequest", "Generic", "GenericConfig"]


class GenericConfig(HelpdeskConfig):
    kind: Literal["card"]
    secret: SecretList = []
    """Secret(s) for ``X-Deskside-Signature``; set this, ``token``, or both."""
    token: SecretList = []
    """Bearer token(s) accepted instead of a signature."""

    @model_validator(mode="after")
    def _some_authentication(self) -> GenericConfig:
        if not self.secret and not self.token:
            raise ValueError("set `secret` (HMAC signatures), `token` (bearer tokens), or both")
        return self


class CardRequest(BaseModel):
    """The request body: one address or several."""

    model_config = ConfigDict(extra="allow")
    email: str | None = None
    emails: list[str] = Field(
        default=[], description=f"Looked up together; only the first {MAX_EMAILS} are used."
    )


class Generic(Protocol):
    """Answers the Sidebar model itself: ``cards``, ``notes``, ``emails``, ``message``."""

    kind = "card"
    title = "Generic JSON"
    list_order = 1000  # listed last: the catch-all for anything else
    signature_header = "x-deskside-signature"
    scheme = Scheme.SHA256_HEX
    timeout_seconds = 10.0
    config: GenericConfig
    config_model = GenericConfig
    setup_where = (
        'Your own tool: POST {"email": …} signed with X-Deskside-Signature (hex '
        "HMAC-SHA256 of the body) or a bearer token."
    )
    demo_env = "CARD_SECRET"
    signature_vectors = (  # computed with an independent HMAC (docs/protocols.md §7)
        SignatureVector(
            "cardTest",
            b'{"email":"customer@example.com"}',
            "5e7b0cbe7a2d01897dac7fa878f36adf32509081bf8e0384e6f962a845198ae4",
        ),
    )
    openapi = openapi_route(
        summary="Look a customer up and answer their cards as typed JSON",
        body=CardRequest,
        answer=Sidebar,
        security=[
            APIKeyHeader(
                name="X-Deskside-Signature",
                scheme_name="signature",
                description="Lower-case hex HMAC-SHA256(secret, raw body).",
                auto_error=False,
            ),
            HTTPBearer(
                scheme_name="bearer",
                description="One of the configured `token`s.",
                auto_error=False,
            ),
        ],
    )

    @classmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        return cls._signed_json(secret, {"emails": list(emails)})

    @classmethod
    def check_answer(cls, status: int, document: Any, request: RawRequest) -> list[str]:
        return schema_problems(Sidebar, document)

    @classmethod
    def shows_customer(cls, document: Any) -> bool:
        return bool(document["cards"])

    def setup_values(self, base_url: str) -> list[PasteValue]:
        return secret_values("Bearer token", [t.get_secret_value() for t in self.config.token])

    def verify(self, request: RawRequest) -> None:
        """A configured bearer token, or else a valid signature, authenticates."""
        token = bearer_token(request.headers.get("authorization"))
        if self.config.token and token:
            if not token_matches(token, [t.get_secret_value() for t in self.config.token]):
                raise Unauthorized("bearer token does not match any configured token", code="token")
            return
        if not self.config.secret:
            raise Unauthorized(
                "no bearer token, and no secret is configured for signatures", code="missing"
            )
        super().verify(request)

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        document = parse_json_object(request.body)
        email, emails = optional_string(document, "email"), document.get("emails", [])
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            raise BadRequest("`emails` must be a list of strings")
        return self.lookup([email, *emails[:MAX_EMAILS]], fold_plus=fold_plus)

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> dict[str, Any]:
        """The Sidebar as JSON; a Decimal value stays a number (JSON mode writes a string)."""
        document = sidebar.model_dump(mode="json")
        for card, dumped in zip(sidebar.cards, document["cards"], strict=True):
            _numbers(card.fields, dumped["fields"])
            for section, shown in zip(card.sections, dumped["sections"], strict=True):
                _numbers(section.fields, shown["fields"])
        return document


HELPDESK = Generic


def _numbers(fields: Sequence[CardField], dumped: list[dict[str, Any]]) -> None:
    for field, entry in zip(fields, dumped, strict=True):
        if isinstance(field.value, Decimal):
            entry["value"] = json_number(field.value)
