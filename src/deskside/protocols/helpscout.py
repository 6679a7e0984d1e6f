"""Help Scout's Dynamic Content app: signed JSON in, ``{"html": …}`` out (docs/protocols.md §1)."""

from __future__ import annotations

from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from deskside.card import Sidebar
from deskside.errors import BadRequest
from deskside.http import parse_json_object
from deskside.lookup import Lookup
from deskside.openapi import openapi_route, schema_problems
from deskside.protocols.base import (
    Decline,
    HelpdeskConfig,
    PasteValue,
    Protocol,
    RawRequest,
    SignatureVector,
)
from deskside.render import helpscout as render
from deskside.resolve import Profile
from deskside.signing import Scheme

__all__ = ["HELPDESK", "HelpScout", "HelpScoutAnswer", "HelpScoutConfig", "HelpScoutRequest"]


class HelpScoutConfig(HelpdeskConfig):
    kind: Literal["helpscout"]
    mailboxes: list[int] | None = None
    """Answer only for these mailbox ids; others get a short "not set up" line."""
    template: Path | None = None
    """A Jinja2 HTML template (autoescaped) to use instead of the built-in sidebar markup."""

    @field_validator("secret")
    @classmethod
    def _helpscout_limit(cls, secrets: list[Any]) -> list[Any]:
        if any(len(s.get_secret_value()) > 40 for s in secrets):
            raise ValueError("Help Scout secret keys are at most 40 characters")
        return secrets

    @field_validator("template")
    @classmethod
    def _template_exists(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        if path is None:
            return None
        full = Path((info.context or {}).get("base_dir", ".")) / path
        if not full.is_file():
            raise ValueError(f"template file {full} does not exist")
        return full


# The request as Help Scout documents it (docs/protocols.md §1): documentation for the OpenAPI
# schema only. parse() reads the raw body itself and is more lenient than this.
Id = int | str


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class HelpScoutTicket(_Part):
    id: Id | None = None
    number: Id | None = None
    subject: str | None = None


class HelpScoutCustomer(_Part):
    id: Id | None = None
    fname: str | None = None
    lname: str | None = None
    email: str | None = None
    emails: list[str] = Field(default=[], description="Every address; all are looked up.")


class HelpScoutUser(_Part):
    id: Id | None = None
    fname: str | None = None
    lname: str | None = None
    role: Literal["user", "admin", "owner"] | None = None
    convRedirect: int | None = None


class HelpScoutMailbox(_Part):
    id: Id | None = None
    email: str | None = None


class HelpScoutRequest(_Part):
    """What Help Scout posts when an agent opens a conversation; fields without a value are
    left out, and a draft sends ``"ticket": false``."""

    ticket: HelpScoutTicket | Literal[False] | None = None
    customer: HelpScoutCustomer | None = None
    user: HelpScoutUser | None = None
    mailbox: HelpScoutMailbox | None = None


class HelpScoutAnswer(BaseModel):
    """The sidebar as an HTML fragment; every customer value in it is escaped."""

    html: str


class HelpScout(Protocol):
    """Verifies base64 HMAC-SHA1 over the raw body; looks up ``customer.email`` and ``emails``."""

    kind = "helpscout"
    signature_header = "x-helpscout-signature"
    scheme = Scheme.SHA1_BASE64
    title = "Help Scout"
    list_order = 10  # before the default (100): an established helpdesk
    timeout_seconds = 10.0  # Help Scout's own limit is not published; answer well inside it
    config: HelpScoutConfig
    config_model = HelpScoutConfig
    setup_where = (
        "Help Scout → Manage → Apps → Build a Custom App → Dynamic Content: "
        "Callback URL and Secret Key, then choose the mailboxes."
    )
    preview_template = (
        '{% if desk.body.html is defined %}<iframe class="hs-frame" title="Help Scout sidebar '
        'for {{ result.emails[0] }}" sandbox="allow-scripts allow-popups '
        'allow-popups-to-escape-sandbox" srcdoc="{{ desk.body.html | frame }}"></iframe>'
        '{% else %}<pre class="json">{{ desk.pretty }}</pre>{% endif %}'
    )
    demo_env = "HELPSCOUT_SECRET"
    signature_vectors = (  # Help Scout's documented example (docs/protocols.md §1)
        SignatureVector("asdfasdf", b'{"id":123}', "7S2+kN8bZsrdAEADJ+yYfWWsf/4="),
    )
    openapi = openapi_route(
        summary="Help Scout Dynamic Content sidebar",
        description="Called by Help Scout when an agent opens a conversation.",
        body=HelpScoutRequest,
        answer=HelpScoutAnswer,
        security=APIKeyHeader(
            name="X-HelpScout-Signature",
            scheme_name="helpscout_signature",
            description="Standard base64 of HMAC-SHA1(secret, raw body).",
            auto_error=False,
        ),
    )

    def __init__(self, name: str, config: HelpScoutConfig) -> None:
        super().__init__(name, config)
        self._template = render.load_template(config.template) if config.template else None

    @classmethod
    def example_request(cls, secret: str, emails: Sequence[str]) -> RawRequest:
        document = {
            "ticket": {"id": 123, "number": 45, "subject": "Question about my account"},
            "customer": {"id": 54321, "email": emails[0], "emails": list(emails)},
            "user": {"id": 9, "fname": "Ann", "lname": "Agent", "role": "owner"},
            "mailbox": {"id": 87654, "email": "help@yourapp.example"},
        }
        return cls._signed_json(secret, document)

    @classmethod
    def check_answer(cls, status: int, document: Any, request: RawRequest) -> list[str]:
        problems = schema_problems(HelpScoutAnswer, document)
        return problems or html_problems(document["html"])

    @classmethod
    def shown_markup(cls, document: Any) -> list[tuple[Literal["html", "markdown"], str]]:
        return [("html", document["html"])]

    @classmethod
    def shows_customer(cls, document: Any) -> bool:
        return "<h4>" in document["html"]  # each card's title

    def setup_values(self, base_url: str) -> list[PasteValue]:
        mailboxes = self.config.mailboxes
        return [
            PasteValue(
                "Mailbox ids",
                ", ".join(str(m) for m in mailboxes) if mailboxes else "every mailbox",
                note=f"[helpdesks.{self.name}] mailboxes: the ones answered for",
                copy=False,
            )
        ]

    def parse(self, request: RawRequest, *, fold_plus: bool) -> Lookup:
        document = parse_json_object(request.body)
        customer = _object(document, "customer")
        mailbox = _object(document, "mailbox")
        ticket = _object(document, "ticket")  # a draft sends "ticket": false
        mailbox_id = _id(mailbox.get("id"))
        if self.config.mailboxes is not None and mailbox_id not in self.config.mailboxes:
            raise Decline("deskside is not set up for this mailbox.")
        listed = customer.get("emails")
        names = [v for k in ("fname", "lname") if isinstance(v := customer.get(k), str)]
        role = _object(document, "user").get("role")
        return self.lookup(
            [customer.get("email"), *(listed if isinstance(listed, list) else [])],
            fold_plus=fold_plus,
            name=" ".join(names).strip() or None,
            missing="This conversation has no customer email address.",
            mailbox_id=mailbox_id,
            conversation_id=_id(ticket.get("id")),
            conversation_number=_id(ticket.get("number")),
            agent_role=role if isinstance(role, str) else None,
        )

    def respond(
        self, sidebar: Sidebar, profile: Profile | None, request: RawRequest | None = None
    ) -> dict[str, str]:
        if self._template is not None and profile is not None and sidebar.message is None:
            return {"html": render.render_template(self._template, sidebar, profile)}
        return {"html": render.render_html(sidebar)}


HELPDESK = HelpScout

_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)


class _FragmentChecker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.open: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("html", "body", "head", "script"):
            self.problems.append(f"<{tag}> does not belong in a sidebar fragment")
        values = dict(attrs)
        if tag == "a" and (values.get("href") or "").startswith("http"):
            rel = (values.get("rel") or "").split()
            if values.get("target") != "_blank" or "noopener" not in rel:
                self.problems.append('a link lacks target="_blank" rel="noopener noreferrer"')
        if tag not in _VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if not self.open or self.open[-1] != tag:
            expected = f"</{self.open[-1]}>" if self.open else "nothing"
            self.problems.append(f"</{tag}> closes {expected}: the HTML is not well-formed")
            if tag in self.open:
                del self.open[len(self.open) - 1 - self.open[::-1].index(tag) :]
            return
        self.open.pop()


def html_problems(html: str) -> list[str]:
    """Why ``html`` would not be a well-formed Help Scout sidebar fragment; ``[]`` if it is."""
    checker = _FragmentChecker()
    checker.feed(html)
    checker.close()
    problems = list(dict.fromkeys(checker.problems))
    if checker.open:
        problems.append(f"unclosed tags: {', '.join('<' + t + '>' for t in checker.open)}")
    return problems


def _object(document: dict[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    if value is None or value is False:
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"`{key}` must be an object")
    return value


def _id(value: Any) -> int | None:
    """Ids arrive as numbers or as strings of digits; anything else is no id."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = value.strip() if isinstance(value, str) else ""
    # isdigit() alone also accepts "²" and other digits int() refuses.
    if text.isascii() and text.isdigit() and len(text) <= 20:
        return int(text)
    return None
