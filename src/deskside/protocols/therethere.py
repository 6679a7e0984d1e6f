"""There There's custom sidebar sections: ``{"email"}`` in, typed ``{"data": […]}`` out (§3)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from deskside.card import Sidebar
from deskside.errors import BadRequest
from deskside.lookup import Lookup, normalise_emails
from deskside.protocols.base import Decline, HelpdeskConfig, Protocol, RawRequest, parse_json_object
from deskside.render import therethere as render
from deskside.resolve import Profile
from deskside.signing import Scheme, sign, verify

__all__ = ["ThereThere", "ThereThereConfig"]

SIGNATURE_HEADER = "x-there-there-signature"


class ThereThereConfig(HelpdeskConfig):
    kind: Literal["therethere"]


class ThereThere(Protocol):
    """Verifies lower-case hex HMAC-SHA256 over the raw body; looks up ``email``."""

    kind = "therethere"
    title = "There There"

    @classmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        body = json.dumps({"email": emails[0]}).encode()
        headers = {
            "content-type": "application/json",
            SIGNATURE_HEADER: sign(Scheme.SHA256_HEX, secret, body),
        }
        return RawRequest(method="POST", body=body, query=b"", headers=headers)

    def verify(self, request: RawRequest) -> None:
        verify(
            Scheme.SHA256_HEX,
            self.config.secrets(),
            request.body,
            request.headers.get(SIGNATURE_HEADER),
        )

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        document = parse_json_object(request.body)
        email = document.get("email")
        if email is not None and not isinstance(email, str):
            raise BadRequest("`email` must be a string")
        emails = normalise_emails([email], fold_plus=fold_plus)
        if not emails:
            raise Decline("No customer email address.")
        return Lookup(emails=emails, context={"desk": self.kind})

    def respond(self, sidebar: Sidebar, profile: Profile | None) -> dict[str, Any]:
        return {"data": render.render_rows(sidebar)}
