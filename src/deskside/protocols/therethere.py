"""There There's custom sidebar sections: ``{"email"}`` in, typed ``{"data": […]}`` out (§3)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from fastapi.security import APIKeyHeader
from pydantic import (
    BaseModel,
    ConfigDict,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from deskside.card import Sidebar
from deskside.lookup import Lookup
from deskside.protocols.base import (
    HelpdeskConfig,
    Protocol,
    RawRequest,
    openapi_route,
    optional_string,
    parse_json_object,
    schema_problems,
)
from deskside.render import therethere as render
from deskside.resolve import Profile
from deskside.signing import Scheme

__all__ = ["ThereThere", "ThereThereAnswer", "ThereThereConfig", "ThereThereRequest"]


class ThereThereConfig(HelpdeskConfig):
    kind: Literal["therethere"]


class ThereThereRow(BaseModel):
    name: str
    type: Literal["markdown", "numeric", "date", "boolean", "url"]
    value: StrictStr | StrictInt | StrictFloat | StrictBool

    @model_validator(mode="after")
    def _value_fits_type(self) -> ThereThereRow:
        value, kind = self.value, self.type
        if kind == "numeric" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f"row {self.name!r}: a numeric value must be a JSON number")
        if kind == "boolean" and not isinstance(value, bool):
            raise ValueError(f"row {self.name!r}: a boolean value must be true or false")
        if kind in ("markdown", "url", "date") and not isinstance(value, str):
            raise ValueError(f"row {self.name!r}: a {kind} value must be a string")
        if kind == "url" and not str(value).startswith(("https://", "http://")):
            raise ValueError(f"row {self.name!r}: a url value must be an http(s) URL")
        if kind == "date":
            try:
                datetime.fromisoformat(str(value))
            except ValueError:
                raise ValueError(f"row {self.name!r}: a date must be ISO 8601") from None
        return self


class ThereThereAnswer(BaseModel):
    """Typed rows; ``markdown`` values never hold links or formatting from customer data."""

    data: list[ThereThereRow]


class ThereThereRequest(BaseModel):
    """What There There posts for a ticket's contact (its Test button sends test@example.com)."""

    model_config = ConfigDict(extra="allow")
    email: str


class ThereThere(Protocol):
    """Verifies lower-case hex HMAC-SHA256 over the raw body; looks up ``email``."""

    kind = "therethere"
    signature_header = "x-there-there-signature"
    scheme = Scheme.SHA256_HEX
    title = "There There"
    timeout_seconds = 3.0  # the vendor's stated total timeout
    openapi = openapi_route(
        summary="There There custom sidebar section",
        description="Called by There There for the contact of the ticket an agent opens.",
        body=ThereThereRequest,
        answer=ThereThereAnswer,
        security=APIKeyHeader(
            name="X-There-There-Signature",
            scheme_name="therethere_signature",
            description="Lower-case hex HMAC-SHA256(secret, raw body).",
            auto_error=False,
        ),
    )

    @classmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        return cls._signed_json(secret, {"email": emails[0]})

    @classmethod
    def check_answer(cls, status: int, document: Any, request: RawRequest) -> list[str]:
        return schema_problems(ThereThereAnswer, document)

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        document = parse_json_object(request.body)
        return self.lookup([optional_string(document, "email")], fold_plus=fold_plus)

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> dict[str, Any]:
        return {"data": render.render_rows(sidebar)}
