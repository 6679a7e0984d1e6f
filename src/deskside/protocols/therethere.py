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
from deskside.http import optional_string, parse_json_object
from deskside.lookup import Lookup
from deskside.openapi import openapi_route, schema_problems
from deskside.protocols.base import (
    HelpdeskConfig,
    Protocol,
    RawRequest,
    SignatureVector,
)
from deskside.render import therethere as render
from deskside.resolve import Profile
from deskside.signing import Scheme

__all__ = ["HELPDESK", "ThereThere", "ThereThereAnswer", "ThereThereConfig", "ThereThereRequest"]


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
    list_order = 20  # before the default (100): an established helpdesk
    timeout_seconds = 3.0  # the vendor's stated total timeout
    config_model = ThereThereConfig
    setup_where = (
        "There There → Settings → Custom Sidebar Sections → add: Endpoint URL; "
        "its generated Secret goes into deskside's config."
    )
    preview_template = """{% if desk.body.data %}
<div class="table-wrap">
<table class="table table--compact tt-rows">
  <thead><tr><th scope="col">Name</th><th scope="col">Value</th><th scope="col">Type</th></tr></thead>
  <tbody>
  {% for row in desk.body.data %}
    <tr>
      <th scope="row">{{ row.name }}</th>
      <td>{% if row.type == "markdown" %}{{ row.value | markdown }}{% elif row.type == "url" and (row.value | safe_href) %}<a href="{{ row.value | safe_href }}" target="_blank" rel="noopener noreferrer">{{ row.value }}</a>{% elif row.type == "boolean" %}{{ "Yes" if row.value else "No" }}{% else %}{{ row.value }}{% endif %}</td>
      <td class="muted small">{{ row.type }}</td>
    </tr>
  {% endfor %}
  </tbody>
</table>
</div>
{% else %}
<p class="muted">No rows: There There shows nothing for this customer.</p>
{% endif %}"""  # noqa: E501
    demo_env = "THERETHERE_SECRET"
    demo_email = "lapsed@globex.example"
    signature_vectors = (  # There There's documented example (docs/protocols.md §3)
        SignatureVector(
            "thereTest",
            b'{"email":"customer@example.com"}',
            "16f15bd1298b47b79a491008b2f971e879cb36dfc2303b26e871ca94938766ae",
        ),
    )
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

    @classmethod
    def shown_markup(cls, document: Any) -> list[tuple[Literal["html", "markdown"], str]]:
        """Row names, and the values of ``markdown`` rows."""
        shown: list[tuple[Literal["html", "markdown"], str]] = []
        for row in document["data"]:
            shown.append(("markdown", row["name"]))
            if row["type"] == "markdown":
                shown.append(("markdown", row["value"]))
        return shown

    @classmethod
    def shows_customer(cls, document: Any) -> bool:
        return bool(document["data"])

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        document = parse_json_object(request.body)
        return self.lookup([optional_string(document, "email")], fold_plus=fold_plus)

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> dict[str, Any]:
        return {"data": render.render_rows(sidebar)}


HELPDESK = ThereThere
