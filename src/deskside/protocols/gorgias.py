"""Gorgias HTTP integration: the customer's address in, a stable flat JSON object out (§6.2).

Gorgias calls the integration's URL on ticket events (created, updated, message created) with
the method its user picked: ``GET …?email={{ticket.customer.email}}``, or ``POST`` with the
address in the query, a JSON body (``{"email": …}``) or a form. It signs nothing: the static
header ``Authorization: Bearer <token>`` authenticates it, compared in constant time against
every configured ``secret`` (several during a rotation). Gorgias shows the answer through a
widget template that picks values by path, so the answer's keys never move: ``title``,
``subtitle``, ``badges``, ``fields`` (by label), ``sections`` (by title, then label), ``links``
(by label), ``notes`` and ``other_accounts``. Nobody found is ``200 {}``: Gorgias disables an
integration after 100 failures in a row, so "not found" is never an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode

from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, StrictBool, StrictFloat, StrictInt, StrictStr

from deskside.card import Card, Field, FieldType, Link, Sidebar
from deskside.errors import BadRequest
from deskside.http import parse_json_object
from deskside.lookup import MAX_EMAILS, Lookup
from deskside.openapi import openapi_route, schema_problems
from deskside.protocols.base import (
    DemoRequest,
    HelpdeskConfig,
    PasteValue,
    Protocol,
    RawRequest,
)
from deskside.render.format import json_value
from deskside.render.markdown import markdown_to_text
from deskside.resolve import Profile

__all__ = ["HELPDESK", "Gorgias", "GorgiasAccount", "GorgiasAnswer", "GorgiasConfig"]

Scalar = StrictStr | StrictInt | StrictFloat | StrictBool
_FORM = "application/x-www-form-urlencoded"
_EMAIL_TEMPLATE = "{{ticket.customer.email}}"
_KEYS = ("title", "subtitle", "badges", "fields", "sections", "links")


class GorgiasConfig(HelpdeskConfig):
    """``secret`` holds the bearer token(s) Gorgias sends: long and random, e.g.
    ``openssl rand -hex 32``."""

    kind: Literal["gorgias"]


class GorgiasAccount(BaseModel):
    """One account of the customer, every key always present (empty when there is nothing)."""

    model_config = ConfigDict(extra="forbid")
    title: StrictStr
    subtitle: StrictStr
    badges: list[StrictStr]
    fields: dict[str, Scalar]
    sections: dict[str, dict[str, Scalar]]
    links: dict[str, StrictStr]


class GorgiasAnswer(BaseModel):
    """The first account's keys at the top, the others in ``other_accounts``, warnings in
    ``notes``; ``{}`` (no key at all) when nobody was found."""

    model_config = ConfigDict(extra="forbid")
    title: StrictStr | None = None
    subtitle: StrictStr | None = None
    badges: list[StrictStr] | None = None
    fields: dict[str, Scalar] | None = None
    sections: dict[str, dict[str, Scalar]] | None = None
    links: dict[str, StrictStr] | None = None
    notes: list[StrictStr] | None = None
    other_accounts: list[GorgiasAccount] | None = None


class Gorgias(Protocol):
    """``GET`` (or ``POST``) with the address; a bearer token instead of a signature."""

    kind = "gorgias"
    title = "Gorgias"
    method = "GET"
    other_methods = ("POST",)
    signature_header = "authorization"
    scheme = None
    timeout_seconds = 10.0  # undocumented; Gorgias retries timeouts, so answer well inside
    config: GorgiasConfig
    config_model = GorgiasConfig
    setup_where = (
        "Gorgias → Settings → App Store → HTTP Integration → Add: the URL below, method GET, "
        "header Authorization with the value below; then shape its widget in a ticket's sidebar."
    )
    preview_template = """{% set body = desk.body %}
{% macro values(map) %}<dl class="helper">{% for label, value in map.items() %}<dt>{{ label }}</dt><dd>{{ value }}</dd>{% endfor %}</dl>{% endmacro %}
{% macro links(map) %}{% for label, url in map.items() %}{% set href = url | safe_href %}{% if href %}<a class="button button--small" href="{{ href }}" target="_blank" rel="noopener noreferrer">{{ label }}</a> {% endif %}{% endfor %}{% endmacro %}
{% macro account(a) %}
<p><strong>{{ a.title }}</strong>{% if a.subtitle %} <span class="muted">{{ a.subtitle }}</span>{% endif %}</p>
<p>{% for badge in a.badges %}<span class="badge badge--grey">{{ badge }}</span> {% endfor %}</p>
{{ values(a.fields) }}
{% for title, section in a.sections.items() %}<p class="muted small">{{ title }}</p>{{ values(section) }}{% endfor %}
<p>{{ links(a.links) }}</p>
{% endmacro %}
{% if body.title is defined %}
{{ account(body) }}
{% for other in body.other_accounts %}<hr>{{ account(other) }}{% endfor %}
{% for note in body.notes %}<p class="muted small">{{ note }}</p>{% endfor %}
<details><summary class="muted small">The JSON the widget template reads</summary><pre class="json">{{ body | tojson_pretty }}</pre></details>
{% else %}
<p class="muted">{}: Gorgias shows no widget for this customer.</p>
{% endif %}"""  # noqa: E501
    demo_env = "GORGIAS_TOKEN"
    openapi = openapi_route(
        summary="Gorgias HTTP integration",
        description=(
            "Called by Gorgias on ticket events, with `GET` or `POST` as its user picked. The "
            "address comes in the query (`email`), or in a POST's JSON body (`email`, or "
            "`emails` as a list) or form. `{}` when nobody was found."
        ),
        answer=GorgiasAnswer,
        security=HTTPBearer(
            scheme_name="gorgias_token",
            description="One of the configured secrets, sent as is (Gorgias signs nothing).",
            auto_error=False,
        ),
        parameters=[
            {"name": "email", "in": "query", "required": False, "schema": {"type": "string"}}
        ],
    )

    @classmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        query = urlencode([("email", email) for email in emails[:1]]).encode()
        return cls.sign_request(secret, RawRequest("GET", b"", query, {}))

    @classmethod
    def malformed_request(cls, secret: str) -> RawRequest:
        """A POST whose JSON body is cut short."""
        unsigned = RawRequest("POST", b'{"email": ', b"", {"content-type": "application/json"})
        return cls.sign_request(secret, unsigned)

    @classmethod
    def check_answer(cls, status: int, document: Any, request: RawRequest) -> list[str]:
        if document == {}:
            return []
        problems = schema_problems(GorgiasAnswer, document)
        if not problems:
            missing = [key for key in (*_KEYS, "notes", "other_accounts") if key not in document]
            problems += [f"{key}: missing (a widget's path would find nothing)" for key in missing]
        return problems

    def setup_values(self, base_url: str) -> list[PasteValue]:
        url = f"{base_url}{self.path}?email={_EMAIL_TEMPLATE}"
        values = [PasteValue("URL (with Gorgias's variable)", url)]
        secrets = self.config.secrets()
        if secrets:
            note = "header name: Authorization (the first secret, as Gorgias sends it)"
            values.append(PasteValue("Header value", f"Bearer {secrets[0]}", True, note))
        return values

    def demo_requests(self, base_url: str) -> list[DemoRequest]:
        """The same lookup as a POST integration with a JSON body."""
        body = b'{"email":"' + self.demo_email.encode() + b'"}'
        unsigned = RawRequest("POST", body, b"", {"content-type": "application/json"})
        request = self.sign_request(self.config.secrets()[0], unsigned)
        return [DemoRequest("Gorgias, as a POST integration", self.path, request)]

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        """Every ``email`` of the query and, for a POST, of its JSON or form body."""
        addresses: list[object] = list(_form(request.query).get("email", []))
        if request.method == "POST" and request.body.strip():
            if request.headers.get("content-type", "").split(";")[0].strip() == _FORM:
                addresses += _form(request.body).get("email", [])
            else:
                addresses += _json_addresses(parse_json_object(request.body))
        return self.lookup(addresses[:MAX_EMAILS], fold_plus=fold_plus)

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> dict[str, Any]:
        """The flat answer; ``{}`` when nobody was found or nothing was asked."""
        if profile is None or not sidebar.found:
            return {}
        first, *others = sidebar.cards
        return {
            **_account(first),
            "notes": list(sidebar.notes),
            "other_accounts": [_account(card) for card in others],
        }


HELPDESK = Gorgias


def _form(raw: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(raw.decode("utf-8"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the query or form is malformed") from None


def _json_addresses(document: Mapping[str, Any]) -> list[object]:
    email, emails = document.get("email"), document.get("emails", [])
    if email is not None and not isinstance(email, str):
        raise BadRequest("`email` must be a string")
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise BadRequest("`emails` must be a list of strings")
    return [email, *emails]


def _account(card: Card) -> dict[str, Any]:
    sections: dict[str, dict[str, Any]] = {}
    for section in card.sections:
        shown = sections.setdefault(section.title, {})
        shown.update(_values(section.fields, section.links, shown))
    return {
        "title": card.title,
        "subtitle": card.subtitle or "",
        "badges": [badge.text for badge in card.badges],
        "fields": _values(card.fields, (), {}),
        "sections": sections,
        "links": _values((), card.links, {}),
    }


def _values(
    fields: Sequence[Field], links: Sequence[Link], taken: Mapping[str, Any]
) -> dict[str, Any]:
    """Values by label, plain text for Gorgias (a markdown field as a reader sees it); the first
    of two equal labels wins."""
    found: dict[str, Any] = {}
    for field in fields:
        if field.label not in taken and field.label not in found:
            markdown = field.type is FieldType.MARKDOWN
            found[field.label] = (
                markdown_to_text(str(field.value)) if markdown else json_value(field)
            )
    for link in links:
        if link.label not in taken and link.label not in found:
            found[link.label] = link.url
    return found
