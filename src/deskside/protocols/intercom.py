"""Intercom Canvas Kit, Inbox "conversation details": a signed initialize (or a Refresh
button's submit) in, a canvas out (docs/protocols.md §6.1).

Intercom shows ``text`` components as limited markdown and ``data-table`` values as plain
strings (§6.5), so labelled values go into data tables unescaped, and the few lines of text
built from customer data (titles, badges, notes) are escaped only where markdown would show
them differently. The Initialize and Submit URLs are both this helpdesk's URL: a submit from the
Refresh button asks the sources again past the cache.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Annotated, Any, Literal

from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from deskside.card import Card, FieldType, Link, Section, Sidebar
from deskside.card import Field as CardField
from deskside.errors import BadRequest
from deskside.expressions import encodable
from deskside.http import optional_string, parse_json_object
from deskside.lookup import Lookup
from deskside.openapi import openapi_route, schema_problems
from deskside.protocols.base import (
    HelpdeskConfig,
    PasteValue,
    Protocol,
    RawRequest,
    SignatureVector,
)
from deskside.render.format import display
from deskside.render.markdown import markdown_name, markdown_to_text
from deskside.resolve import Profile
from deskside.signing import Scheme

__all__ = [
    "CANVAS_BYTES",
    "HELPDESK",
    "NOT_FOUND",
    "REFRESH_ID",
    "Intercom",
    "IntercomAnswer",
    "IntercomConfig",
    "IntercomRequest",
    "canvas_components",
]

CANVAS_BYTES = 64 * 1024
"""The most a canvas's content may weigh as JSON (Intercom refuses more)."""
NOT_FOUND = "No customer found"
REFRESH_ID = "refresh"
"""The ``component_id`` of the Refresh button; its submit skips deskside's cache."""

Component = dict[str, Any]


class IntercomConfig(HelpdeskConfig):
    kind: Literal["intercom"]


# ── The canvas, as Intercom validates it (for `deskside probe` and the OpenAPI schema) ───────

_Text = Annotated[str, StringConstraints(min_length=1)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextComponent(_Shape):
    type: Literal["text"]
    text: _Text
    style: Literal["header", "paragraph", "muted", "error"] | None = None
    align: Literal["left", "center", "right"] | None = None


class DataTableItem(_Shape):
    type: Literal["field-value"]
    field: _Text
    value: _Text


class DataTableComponent(_Shape):
    type: Literal["data-table"]
    items: Annotated[list[DataTableItem], Field(min_length=1)]


class UrlAction(_Shape):
    type: Literal["url"]
    url: Annotated[str, Field(pattern=r"^(https?://|mailto:)")]


class SubmitAction(_Shape):
    type: Literal["submit"]


class ButtonComponent(_Shape):
    type: Literal["button"]
    id: _Text
    label: _Text
    style: Literal["primary", "secondary", "link"] | None = None
    action: Annotated[UrlAction | SubmitAction, Field(discriminator="type")]


class DividerComponent(_Shape):
    type: Literal["divider"]


class SpacerComponent(_Shape):
    type: Literal["spacer"]
    size: Literal["xs", "s", "m", "l", "xl"] | None = None


CanvasComponent = Annotated[
    TextComponent | DataTableComponent | ButtonComponent | DividerComponent | SpacerComponent,
    Field(discriminator="type"),
]


class CanvasContent(_Shape):
    components: Annotated[list[CanvasComponent], Field(min_length=1)]


class Canvas(_Shape):
    content: CanvasContent
    stored_data: dict[str, Any] | None = None


class IntercomAnswer(BaseModel):
    """A static canvas: what Intercom shows in conversation details."""

    canvas: Canvas


class IntercomContact(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    email: str | None = None
    name: str | None = None


class IntercomRequest(BaseModel):
    """What Intercom posts to the Initialize URL (and, with ``component_id``, to the Submit
    URL) for the contact a teammate is viewing."""

    model_config = ConfigDict(extra="allow")
    workspace_id: str | None = None
    workspace_region: str | None = None
    contact: IntercomContact | None = None
    context: dict[str, Any] | None = None
    component_id: str | None = None


# ── The helpdesk ─────────────────────────────────────────────────────────────────────────────


class Intercom(Protocol):
    """Verifies ``X-Body-Signature`` (hex HMAC-SHA256 of the raw body with the app's client
    secret); looks up the contact's address."""

    kind = "intercom"
    title = "Intercom"
    signature_header = "x-body-signature"
    scheme = Scheme.SHA256_HEX
    timeout_seconds = 10.0  # none documented: deskside's own deadline is what matters
    config_model = IntercomConfig
    setup_where = (
        "Intercom Developer Hub → your app → Canvas Kit → For teammates (conversation "
        "details): this URL as both the Initialize URL and the Submit URL; the app's Client "
        "secret (Basic information) goes into deskside's config."
    )
    preview_template = """{% set canvas = (desk.body.canvas or {}).content or {} %}
<div class="intercom-canvas">
{% for c in canvas.components or [] %}
{% if c.type == "text" %}
{% if c.style == "header" %}<h3 class="intercom-header">{{ c.text | markdown }}</h3>
{% elif c.style in ("muted", "error") %}<p class="muted small">{{ c.text | markdown }}</p>
{% else %}<p>{{ c.text | markdown }}</p>{% endif %}
{% elif c.type == "data-table" %}
<div class="table-wrap">
<table class="table table--compact intercom-table"><tbody>
{% for item in c["items"] %}<tr><th scope="row" class="muted">{{ item.field }}</th><td>{{ item.value }}</td></tr>{% endfor %}
</tbody></table>
</div>
{% elif c.type == "button" and c.action.type == "url" %}
{% set href = c.action.url | safe_href %}
{% if href %}<a class="button button--small" href="{{ href }}" target="_blank" rel="noopener noreferrer">{{ c.label }}</a>{% else %}<span class="button button--small" aria-disabled="true">{{ c.label }}</span>{% endif %}
{% elif c.type == "button" %}
<button type="button" class="button button--small button--quiet" disabled title="In Intercom it posts to the Submit URL">{{ c.label }}</button>
{% elif c.type == "divider" %}
<hr class="plain-divider">
{% elif c.type == "spacer" %}
<div class="plain-spacer"></div>
{% else %}
<pre class="json">{{ c | tojson_pretty }}</pre>
{% endif %}
{% endfor %}
</div>"""  # noqa: E501
    demo_env = "INTERCOM_SECRET"
    signature_vectors = (  # computed with an independent HMAC (docs/protocols.md §6.1)
        SignatureVector(
            "test_client_secret",
            b'{"workspace_id":"abc123","contact":{"email":"jane@example.com"}}',
            "3220df5b6da29ee4c36ad75f682170ae3ec089d84462a79cd3e586bea6c46eed",
        ),
    )
    openapi = openapi_route(
        summary="Intercom Canvas Kit (conversation details)",
        description=(
            "Initialize and Submit URL of an Intercom Inbox app: answers a canvas for the "
            f"contact; a submit with `component_id` `{REFRESH_ID}` skips the cache."
        ),
        body=IntercomRequest,
        answer=IntercomAnswer,
        security=APIKeyHeader(
            name="X-Body-Signature",
            scheme_name="intercom_signature",
            description="Lower-case hex HMAC-SHA256(app client secret, raw body).",
            auto_error=False,
        ),
    )

    @classmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        document = {
            "workspace_id": "ecahpwf5",
            "workspace_region": "US",
            "admin": {"id": "4417391", "type": "admin"},
            "context": {"conversation_id": 1234, "location": "conversation", "locale": "en"},
            "conversation": {"id": "1234", "type": "conversation"},
            "contact": {"id": "65f1c0ffee", "type": "contact", "role": "user", "email": emails[0]},
        }
        return cls._signed_json(secret, document)

    @classmethod
    def check_answer(cls, status: int, document: Any, request: RawRequest) -> list[str]:
        problems = schema_problems(IntercomAnswer, document)
        if problems:
            return problems
        size = _json_size(document["canvas"]["content"])
        if size > CANVAS_BYTES:
            problems.append(
                f"the canvas content is {size:,} bytes: Intercom refuses more than {CANVAS_BYTES:,}"
            )
        ids = [c["id"] for c in document["canvas"]["content"]["components"] if "id" in c]
        if len(ids) != len(set(ids)):
            problems.append("button ids repeat: Intercom needs each to be unique in a canvas")
        return problems

    @classmethod
    def shown_markup(cls, document: Any) -> list[tuple[Literal["html", "markdown"], str]]:
        """The text of every ``text`` component (Intercom renders it as limited markdown)."""
        components = document["canvas"]["content"]["components"]
        return [("markdown", c["text"]) for c in components if c["type"] == "text"]

    @classmethod
    def shows_customer(cls, document: Any) -> bool:
        """A customer's canvas starts with its title as a header."""
        components = document["canvas"]["content"]["components"]
        return any(c["type"] == "text" and c.get("style") == "header" for c in components)

    def setup_values(self, base_url: str) -> list[PasteValue]:
        return [
            PasteValue(
                "Submit URL",
                f"{base_url}{self.path}",
                note="the same URL: the Refresh button posts there",
            )
        ]

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        document = parse_json_object(request.body)
        _component_id(document)  # a malformed submit is a 400 before any lookup
        contact = _object(document, "contact")
        customer = _object(document, "customer")  # what older API versions send
        context = _object(document, "context")
        name = optional_string(contact, "name", where="contact.")
        return self.lookup(
            [
                optional_string(contact, "email", where="contact."),
                optional_string(customer, "email", where="customer."),
            ],
            fold_plus=fold_plus,
            name=name if name and encodable(name) else None,
            missing="This contact has no email address.",
            workspace_id=_id(document.get("workspace_id", document.get("app_id"))),
            conversation_id=_id(context.get("conversation_id")),
        )

    def wants_fresh(self, request: RawRequest) -> bool:
        """The Refresh button's submit."""
        return _component_id(parse_json_object(request.body)) == REFRESH_ID

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> dict[str, Any]:
        return {"canvas": {"content": {"components": canvas_components(sidebar)}}}


HELPDESK = Intercom


# ── Sidebar → canvas components ──────────────────────────────────────────────────────────────


def canvas_components(sidebar: Sidebar) -> list[Component]:
    """Each account's title (a header), subtitle and badges, its fields as a data table, its
    links as buttons and each section as a line of bold text, a table and buttons; then the
    notes (muted) and a Refresh button. Nobody found: a muted "No customer found"."""
    if sidebar.message:
        return [_text(sidebar.message, "muted")]
    ids = (f"link-{index}" for index in itertools.count(1))
    components: list[Component] = []
    for card in sidebar.cards:
        if components:
            components.append({"type": "divider"})
        components += _card(card, ids)
    if not sidebar.found:
        components.append(_text(NOT_FOUND, "muted"))
    components += [_text(note, "muted") for note in sidebar.notes]
    components.append(
        {
            "type": "button",
            "id": REFRESH_ID,
            "label": "Refresh",
            "style": "secondary",
            "action": {"type": "submit"},
        }
    )
    return [component for component in components if component]


def _card(card: Card, ids: Iterator[str]) -> list[Component]:
    components = [_text(card.title, "header")]
    if card.subtitle:
        components.append(_text(card.subtitle, "muted"))
    if card.badges:
        components.append(_text(" · ".join(badge.text for badge in card.badges), "paragraph"))
    components += _facts(card.fields, card.links, ids)
    for section in card.sections:
        components += _section(section, ids)
    return components


def _section(section: Section, ids: Iterator[str]) -> list[Component]:
    title = markdown_name(section.title)
    heading = {"type": "text", "text": f"**{title}**", "style": "paragraph"} if title else {}
    return [heading, *_facts(section.fields, section.links, ids)]


def _facts(
    fields: Sequence[CardField], links: Sequence[Link], ids: Iterator[str]
) -> list[Component]:
    components: list[Component] = []
    items = [
        {"type": "field-value", "field": field.label or "—", "value": _value(field) or "—"}
        for field in fields
    ]
    if items:
        components.append({"type": "data-table", "items": items})
    components += [
        {
            "type": "button",
            "id": next(ids),
            "label": link.label or link.url,
            "style": "link",
            "action": {"type": "url", "url": link.url},
        }
        for link in links
    ]
    return components


def _value(field: CardField) -> str:
    """The value as plain text: an author's markdown is read as its text (no stray marks)."""
    if field.type is FieldType.MARKDOWN:
        return markdown_to_text(str(field.value))
    return display(field)


def _text(text: str, style: str) -> Component:
    """A ``text`` component showing ``text`` as it is; empty when there is no text."""
    shown = markdown_name(text)
    return {"type": "text", "text": shown, "style": style} if shown else {}


def _json_size(document: Any) -> int:
    return len(json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode())


def _object(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"`{key}` must be an object")
    return value


def _component_id(document: dict[str, Any]) -> str | None:
    return optional_string(document, "component_id")


def _id(value: Any) -> str | None:
    """Intercom's ids arrive as strings or numbers; anything else is no id."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if len(text) <= 64 and encodable(text) and text.isprintable() else None
