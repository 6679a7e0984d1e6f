"""Plain's customer cards: requested card keys in, one entry per key out (protocols.md §5).

Every requested key is answered — with ``"components": null`` when deskside has nothing for
it — because Plain treats a missing key as an error and caches that for five minutes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deskside.card import Sidebar
from deskside.configtypes import ConfigModel
from deskside.errors import BadRequest
from deskside.lookup import Lookup
from deskside.protocols.base import (
    HelpdeskConfig,
    Protocol,
    RawRequest,
    optional_string,
    parse_json_object,
    schema_problems,
)
from deskside.render import plain as render
from deskside.resolve import Profile
from deskside.signing import Scheme

__all__ = ["Plain", "PlainCard", "PlainConfig"]

MAX_CARD_KEYS = 25
DEMO_CARD_KEYS = ("account", "billing")


class PlainCard(ConfigModel):
    """What one Plain card key shows: the main card and/or some of its sections."""

    main: bool = True
    """The title, badges, fields and links of ``[card]``."""
    sections: list[str] = []
    """Titles of ``[[card.sections]]`` to include."""
    ttl_seconds: int | None = Field(default=None, ge=15, le=31_536_000)


class PlainConfig(HelpdeskConfig):
    kind: Literal["plain"]
    ttl_seconds: int = Field(default=300, ge=15, le=31_536_000)
    """How long Plain may cache a card (``timeToLiveSeconds``)."""
    cards: dict[str, PlainCard] = {"customer": PlainCard()}
    """Card keys as configured in Plain → what each shows."""


class Plain(Protocol):
    """Verifies ``Plain-Request-Signature`` (hex HMAC-SHA256 over the raw body)."""

    kind = "plain"
    title = "Plain"
    signature_header = "plain-request-signature"
    scheme = Scheme.SHA256_HEX
    timeout_seconds = 15.0  # Plain waits 15 s, then retries once
    config: PlainConfig

    @classmethod
    def example_request(
        cls,
        secret: str,
        emails: Sequence[str],
        *,
        card_keys: Sequence[str] = DEMO_CARD_KEYS,
    ) -> RawRequest:
        document = {
            "cardKeys": list(card_keys),
            "customer": {"id": "c_01H1P4TG", "email": emails[0], "externalId": None},
            "thread": {"id": "th_01H1P4TG", "externalId": None},
        }
        request = cls._signed_json(secret, document)
        return RawRequest(
            method=request.method,
            body=request.body,
            query=b"",
            headers={**request.headers, "plain-workspace-id": "w_01H1P4TG"},
        )

    @classmethod
    def check_answer(cls, status: int, document: Any, request: RawRequest) -> list[str]:
        problems = schema_problems(_Answer, document)
        if problems:
            return problems
        answered = [card["key"] for card in document["cards"]]
        requested = _card_keys(json.loads(request.body))
        missing = [key for key in requested if key not in answered]
        if missing:
            problems.append(
                f"card key(s) {', '.join(missing)} missing: Plain treats that as an error "
                "and caches it for 5 minutes (answer them with components null)"
            )
        return problems

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        document = parse_json_object(request.body)
        _card_keys(document)  # malformed keys are a 400 before any lookup
        customer = document.get("customer")
        if customer is not None and not isinstance(customer, dict):
            raise BadRequest("`customer` must be an object")
        email = optional_string(customer or {}, "email", where="customer.")
        return self.lookup([email], fold_plus=fold_plus)

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> dict[str, Any]:
        keys = _card_keys(json.loads(request.body)) if request else list(self.config.cards)
        return {"cards": [self._card(key, sidebar) for key in keys]}

    def _card(self, key: str, sidebar: Sidebar) -> dict[str, Any]:
        shown = self.config.cards.get(key)
        components = None
        if shown is not None and sidebar.found:
            components = render.card_components(sidebar, main=shown.main, sections=shown.sections)
        if components is None and shown is not None and sidebar.notes:
            components = render.message_components(sidebar.notes, color="WARNING")
        ttl = shown.ttl_seconds if shown and shown.ttl_seconds else self.config.ttl_seconds
        if sidebar.notes:
            ttl = min(ttl, 30)  # a source was down: let Plain ask again soon
        return {"key": key, "timeToLiveSeconds": ttl, "components": components}


def _card_keys(document: dict[str, Any]) -> list[str]:
    keys = document.get("cardKeys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise BadRequest("`cardKeys` must be a list of strings")
    if len(keys) > MAX_CARD_KEYS:
        raise BadRequest(f"at most {MAX_CARD_KEYS} card keys")
    return list(dict.fromkeys(keys))


# The answer's shape, for ``deskside probe``: every component is a single-key object.
class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Text(_Shape):
    text: str
    textSize: Literal["S", "M", "L"] | None = None
    textColor: Literal["NORMAL", "MUTED", "SUCCESS", "WARNING", "ERROR"] | None = None


class _PlainText(_Shape):
    plainText: str
    plainTextSize: Literal["S", "M", "L"] | None = None
    plainTextColor: Literal["NORMAL", "MUTED", "SUCCESS", "WARNING", "ERROR"] | None = None


class _Badge(_Shape):
    badgeLabel: str
    badgeColor: Literal["GREY", "GREEN", "YELLOW", "RED", "BLUE"] | None = None


class _LinkButton(_Shape):
    linkButtonLabel: str
    linkButtonUrl: Annotated[str, Field(pattern=r"^(https?://|mailto:)")]


class _CopyButton(_Shape):
    copyButtonValue: str
    copyButtonTooltipLabel: str | None = None


_Size = Literal["XS", "S", "M", "L", "XL"]


class _Divider(_Shape):
    dividerSpacingSize: _Size | None = None


class _Spacer(_Shape):
    spacerSize: _Size


class _Row(_Shape):
    rowMainContent: list[_Component]
    rowAsideContent: list[_Component]


class _Container(_Shape):
    containerContent: list[_Component]


class _Component(_Shape):
    componentText: _Text | None = None
    componentPlainText: _PlainText | None = None
    componentBadge: _Badge | None = None
    componentLinkButton: _LinkButton | None = None
    componentCopyButton: _CopyButton | None = None
    componentDivider: _Divider | None = None
    componentSpacer: _Spacer | None = None
    componentRow: _Row | None = None
    componentContainer: _Container | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> _Component:
        if len(self.model_fields_set) != 1:
            raise ValueError("a component is an object with exactly one component key")
        return self


class _CardAnswer(_Shape):
    key: str
    timeToLiveSeconds: int | None = None
    components: list[_Component] | None


class _Answer(BaseModel):
    cards: list[_CardAnswer]
