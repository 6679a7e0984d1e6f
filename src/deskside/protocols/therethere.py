"""There There's custom sidebar sections: ``{"email"}`` in, typed ``{"data": […]}`` out (§3)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from deskside.card import Sidebar
from deskside.errors import BadRequest
from deskside.lookup import Lookup, normalise_emails
from deskside.protocols.base import Decline, HelpdeskConfig, Protocol, RawRequest, parse_json_object
from deskside.render import therethere as render
from deskside.resolve import Profile
from deskside.signing import Scheme

__all__ = ["ThereThere", "ThereThereConfig"]


class ThereThereConfig(HelpdeskConfig):
    kind: Literal["therethere"]


class ThereThere(Protocol):
    """Verifies lower-case hex HMAC-SHA256 over the raw body; looks up ``email``."""

    kind = "therethere"
    signature_header = "x-there-there-signature"
    scheme = Scheme.SHA256_HEX
    title = "There There"

    @classmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        return cls._signed_json(secret, {"email": emails[0]})

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        document = parse_json_object(request.body)
        email = document.get("email")
        if email is not None and not isinstance(email, str):
            raise BadRequest("`email` must be a string")
        emails = normalise_emails([email], fold_plus=fold_plus)
        if not emails:
            raise Decline("No customer email address.")
        return Lookup(emails=emails, context={"desk": self.kind})

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> dict[str, Any]:
        return {"data": render.render_rows(sidebar)}
