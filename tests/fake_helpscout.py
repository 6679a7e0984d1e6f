"""A fake Help Scout for tests: the Mailbox API 2.0 and its OAuth endpoints on 127.0.0.1.

It runs on :class:`fake_http.FakeHTTPServer` (a real HTTP server in a thread), so deskside's
real client, Authlib included, talks HTTP to it::

    with FakeHelpScout(generate_dataset(10_000)) as helpscout:
        settings = helpscout.settings(encryption_key=key)
        ...
        assert helpscout.token_requests("refresh_token")

What it does like Help Scout:

- ``POST /v2/oauth2/token``: ``authorization_code`` (codes from the authorize page or
  :meth:`FakeHelpScout.issue_code`, each usable once), ``refresh_token`` (rotating: a refresh
  token works once) and ``client_credentials`` (no refresh token); client id and secret in the
  form body or HTTP Basic. Errors are ``{"error": "invalid_grant"}`` and friends.
- ``GET /authentication/authorizeClientApplication``: the user approves (302 to the redirect
  URL with ``code`` and ``state``), or denies when :attr:`deny` is set.
- ``GET /v2/mailboxes``, ``GET /v2/conversations`` (``status``, ``modifiedSince``,
  ``mailbox=1,2``, ``embed=threads``, ``sortField=modifiedAt``, ``sortOrder``, ``page``; 50 a
  page, ``_links.next``), ``GET /v2/conversations/{id}/threads``, ``POST``/``DELETE
  /v2/webhooks``; all need a valid, unexpired bearer token (else 401).
- Rate limits on its own clock (:meth:`advance` moves it, so a test's sleeper can "wait"):
  ``X-RateLimit-Limit-Minute``/``X-RateLimit-Remaining-Minute`` on every API answer, 429 past
  the limit with ``X-RateLimit-Retry-After`` (or, as :attr:`retry_after` says, the standard
  ``Retry-After`` in seconds or as an HTTP date, or neither).

Faults for tests: :meth:`expire_access_tokens` (Help Scout forgets the tokens: 401),
:meth:`revoke_grants` (refreshes get ``invalid_grant``), :attr:`fault` (a hook that may answer
any request itself), :attr:`embed_limit` (embed at most that many threads, so the client has
to fetch the rest).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import random
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import cache
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode

import httpx

from fake_http import FakeHTTPServer, Received, Reply

__all__ = [
    "CLIENT_ID",
    "CLIENT_SECRET",
    "Dataset",
    "FakeHelpScout",
    "RecordingSleeper",
    "approve",
    "generate_dataset",
    "private_patterns",
    "send_webhook",
    "shared_dataset",
    "sign_webhook",
]

CLIENT_ID = "fake-app-id"
CLIENT_SECRET = "fake-app-secret-0123456789"
PAGE_SIZE = 50
AUTHORIZE_PATH = "/authentication/authorizeClientApplication"

# -- the dataset --------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """Mailboxes and conversations (each with every thread in ``_embedded.threads``)."""

    mailboxes: list[dict[str, Any]]
    conversations: list[dict[str, Any]]
    """Sorted by ``userUpdatedAt`` (what ``sortField=modifiedAt`` sorts by), then id."""

    def matching(
        self, since: datetime | None = None, mailbox_ids: Sequence[int] = ()
    ) -> list[dict[str, Any]]:
        """The conversations a ``modifiedSince``/``mailbox`` query selects."""
        wanted = set(mailbox_ids)
        floor = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if since else ""
        return [
            conversation
            for conversation in self.conversations
            if conversation["userUpdatedAt"] >= floor
            and (not wanted or conversation["mailboxId"] in wanted)
        ]

    def thread_ids(self, conversations: Sequence[dict[str, Any]]) -> set[int]:
        return {t["id"] for c in conversations for t in c["_embedded"]["threads"]}


_FIRST = [
    *("Ada", "Ben", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hana"),
    *("Ivan", "Jun", "Kofi", "Lena", "Mateo", "Noor", "Olu", "Priya"),
]
_LAST = [
    *("Okafor", "Schmidt", "Tanaka", "Novak", "García", "Smith"),
    *("Nguyen", "Rossi", "Haddad", "Kowalski", "Silva", "Berg"),
]
_DOMAINS = ["example.com", "example.org", "acme.example", "globex.example", "initech.example"]
_TOPICS = [
    ("Refund for order #{n}", "I was charged twice for order #{n}. Could you refund one?"),
    ("Cannot log in", "Since this morning the login page says my password is wrong."),
    ("Invoice needs our VAT number", "Please add VAT number DE{n} to the last invoice."),
    ("Export to CSV is empty", "The CSV export only has the header row, no data."),
    ("Cancel my subscription", "Please cancel at the end of this billing period."),
    ("Feature request: dark mode", "Any plans for a dark mode? My eyes would thank you."),
    ("Webhook not firing", "Our endpoint has not received events since {n} minutes ago."),
    ("Upgrade to the Team plan", "We grew to {n} people; how do we move to the Team plan?"),
]
_REPLIES = [
    "Thanks for reaching out! I have looked into this for you.",
    "Sorry about the trouble. This is fixed now; could you try again?",
    "I have issued the refund; it shows up in 5 to 10 business days.",
    "Good news: this is on our roadmap for next quarter.",
    "Could you send us a screenshot of what you see?",
]
_TAGS = ["billing", "bug", "login", "refund", "feature-request", "vip", "churn-risk", "api"]


def generate_dataset(
    conversations: int = 10_000,
    *,
    mailboxes: int = 3,
    customers: int = 1_500,
    seed: int = 7,
    days: int = 365,
    now: datetime | None = None,
) -> Dataset:
    """A realistic, reproducible dataset: ``conversations`` over the last ``days`` days in
    ``mailboxes`` mailboxes from ``customers`` customers; each opens with the customer's HTML
    message followed by agent replies, customer follow-ups, the odd note and line item."""
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    boxes = [
        {
            "id": 5000 + index,
            "name": name,
            "slug": secrets.token_hex(8),
            "email": f"{name.lower()}@support.example",
            "createdAt": "2020-01-01T00:00:00Z",
            "updatedAt": "2024-01-01T00:00:00Z",
        }
        for index, name in enumerate(["Support", "Billing", "Sales", "Partners", "Ops"][:mailboxes])
    ]
    people = []
    for index in range(customers):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        email = f"{first.lower()}.{last.lower()}{index}@{rng.choice(_DOMAINS)}"
        people.append({"id": 700_000 + index, "first": first, "last": last, "email": email})
    agents = [
        {
            "id": 90 + index,
            "type": "user",
            "first": name,
            "last": "Agent",
            "email": f"{name}@us.example",
        }
        for index, name in enumerate(["ann", "bob", "cat", "dev"])
    ]
    documents = []
    thread_id = 3_000_000
    for index in range(conversations):
        customer = rng.choice(people)
        mailbox = rng.choice(boxes)
        created = now - timedelta(seconds=rng.randrange(days * 86_400))
        kind = rng.choices(["email", "chat", "phone"], weights=[92, 5, 3])[0]
        subject, opening = rng.choice(_TOPICS)
        number = rng.randrange(10, 99_999)
        author_customer = {"id": customer["id"], "type": "customer", "email": customer["email"]}
        threads = []
        moment = created
        count = rng.choices([1, 2, 3, 4, 5, 6, 8], weights=[20, 30, 25, 12, 6, 4, 3])[0]
        for position in range(count):
            thread_id += 1
            if position == 0:
                kind_of, by = "customer", author_customer
                body = (
                    f"<p>Hi,</p><p>{opening.format(n=number)}</p>"
                    f"<p>Thanks,<br>{customer['first']}</p>"
                )
            elif rng.random() < 0.08:
                kind_of, by = "lineitem", rng.choice(agents)
                body = ""
            elif rng.random() < 0.1:
                kind_of, by = "note", rng.choice(agents)
                body = "<p><b>Internal:</b> checked the account &amp; the logs.</p>"
            elif position % 2 == 1:
                kind_of, by = "message", rng.choice(agents)
                body = (
                    f"<p>Hi {customer['first']},</p><p>{rng.choice(_REPLIES)}</p>"
                    f"<p>Best,<br>{by['first'].title()}</p>"
                    f"<blockquote>You wrote: {opening.format(n=number)}</blockquote>"
                )
            else:
                kind_of, by = "customer", author_customer
                body = f"<div>That worked, thank you!<br><br>— {customer['first']}</div>"
            moment += timedelta(minutes=rng.randrange(1, 3_000))
            threads.append(
                {
                    "id": thread_id,
                    "type": kind_of,
                    "status": "active",
                    "state": "published",
                    "action": {"type": "default", "text": ""},
                    "body": body,
                    "source": {"type": "email", "via": by["type"]},
                    "customer": author_customer,
                    "createdBy": {"id": by["id"], "type": by["type"], "email": by["email"]},
                    "to": [],
                    "cc": [],
                    "bcc": [],
                    "createdAt": _iso(moment),
                    "_embedded": {"attachments": []},
                }
            )
        updated = min(moment + timedelta(minutes=rng.randrange(0, 600)), now)
        status = rng.choices(["closed", "active", "pending", "spam"], weights=[70, 20, 8, 2])[0]
        threads.reverse()  # Help Scout embeds the newest thread first
        documents.append(
            {
                "id": 40_000_000 + index * 7 + rng.randrange(7),
                "number": 10_000 + index,
                "threads": len(threads),
                "type": kind,
                "folderId": 1,
                "status": status,
                "state": "published",
                "subject": subject.format(n=number),
                "preview": opening.format(n=number)[:185],
                "mailboxId": mailbox["id"],
                "assignee": rng.choice(agents),
                "createdBy": author_customer,
                "createdAt": _iso(created),
                "closedAt": _iso(updated) if status == "closed" else None,
                "userUpdatedAt": _iso(updated),
                "customerWaitingSince": {"time": _iso(updated), "friendly": "1 day ago"},
                "source": {"type": kind, "via": "customer"},
                "tags": [
                    {"id": 100 + _TAGS.index(tag), "color": "#A5B2BD", "tag": tag}
                    for tag in rng.sample(_TAGS, rng.randrange(0, 3))
                ],
                "cc": [],
                "bcc": [],
                "primaryCustomer": {
                    "id": customer["id"],
                    "type": "customer",
                    "first": customer["first"],
                    "last": customer["last"],
                    "email": customer["email"],
                },
                "customFields": [],
                "_embedded": {"threads": threads},
            }
        )
    documents.sort(key=lambda d: (d["userUpdatedAt"], d["id"]))
    return Dataset(boxes, documents)


@cache
def shared_dataset(conversations: int = 10_000) -> Dataset:
    """One dataset per size for the whole test run (generating 10,000 takes a moment)."""
    return generate_dataset(conversations)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def private_patterns() -> list[str]:
    """Regular expressions for the customers' addresses and the subjects
    :func:`generate_dataset` makes: private data that no log line may show."""
    first = "|".join(re.escape(name.lower()) for name in _FIRST)
    last = "|".join(re.escape(name.lower()) for name in _LAST)
    domains = "|".join(re.escape(domain) for domain in _DOMAINS)
    number = re.escape("{n}")
    subjects = [re.escape(subject).replace(number, r"\d+") for subject, _ in _TOPICS]
    return [rf"\b(?:{first})\.(?:{last})\d+@(?:{domains})\b", *subjects]


# -- webhooks -------------------------------------------------------------------------------


def sign_webhook(secret: str, body: bytes) -> str:
    """``X-HelpScout-Signature``: standard base64 of HMAC-SHA1(secret, raw body)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha1).digest()).decode()


def send_webhook(
    url: str, secret: str, event: str, document: Any, *, client: httpx.Client | None = None
) -> httpx.Response:
    """POST ``document`` to ``url`` as Help Scout delivers event ``event``, signed with
    ``secret``."""
    body = json.dumps(document, separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json",
        "x-helpscout-event": event,
        "x-helpscout-signature": sign_webhook(secret, body),
    }
    if client is not None:
        return client.post(url, content=body, headers=headers)
    return httpx.post(url, content=body, headers=headers, timeout=10)


# -- the server -----------------------------------------------------------------------------


@dataclass
class _Tokens:
    access: dict[str, float] = field(default_factory=dict)
    """Access token → when it expires (Unix time)."""
    refresh: set[str] = field(default_factory=set)
    codes: set[str] = field(default_factory=set)


class FakeHelpScout:
    """Help Scout on 127.0.0.1; a context manager. See the module docstring."""

    def __init__(
        self,
        dataset: Dataset | None = None,
        *,
        expires_in: int = 172_800,
        rate_limit: int | None = None,
        page_size: int = PAGE_SIZE,
    ) -> None:
        self.dataset = dataset or generate_dataset(120, customers=40)
        self.expires_in = expires_in
        """Lifetime of the access tokens it issues from now on."""
        self.rate_limit = rate_limit
        """Requests a minute; ``None``: no limit (and no rate-limit headers)."""
        self.retry_after: Literal["helpscout", "seconds", "date", "none"] = "helpscout"
        """How a 429 says when to retry: ``X-RateLimit-Retry-After: 45``, ``Retry-After: 45``,
        ``Retry-After: <HTTP date>`` (on the fake's clock), or not at all."""
        self.page_size = page_size
        self.embed_limit: int | None = None
        self.deny = False
        """The user clicks "Deny" on the authorize page."""
        self.redirect_url = "http://127.0.0.1:1/callback"
        """The app's Redirection URL, where the authorize page sends the browser."""
        self.fault: Callable[[Received], Reply | None] | None = None
        """Called first for every request; a reply it returns is answered instead."""
        self.webhooks: dict[str, dict[str, Any]] = {}
        self._webhook_ids = itertools.count(800)
        self._tokens = _Tokens()
        self._lock = threading.Lock()
        self._clock_offset = 0.0
        self._window: tuple[int, int] = (0, 0)
        self._filtered: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        self._by_id = {c["id"]: c for c in self.dataset.conversations}
        self.server = FakeHTTPServer()
        self.base_url = self.server.base_url
        self.server.route("/*", self._handle)

    # -- test controls ------------------------------------------------------------------------

    def settings_document(self, **helpscout: Any) -> dict[str, Any]:
        """An ``[insights.helpscout]`` table pointing at this server."""
        return {
            "mode": "oauth",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "api_url": self.base_url,
            "authorize_url": self.base_url + AUTHORIZE_PATH,
            "redirect_url": self.redirect_url,
            **helpscout,
        }

    def issue_code(self) -> str:
        """An authorisation code, as if a user had just approved the app."""
        code = "code-" + secrets.token_urlsafe(12)
        with self._lock:
            self._tokens.codes.add(code)
        return code

    def expire_access_tokens(self) -> None:
        """Every access token issued so far is refused from now on (401)."""
        with self._lock:
            self._tokens.access.clear()

    def revoke_grants(self) -> None:
        """The user removed the app: refresh tokens get ``invalid_grant``, access tokens 401."""
        with self._lock:
            self._tokens.access.clear()
            self._tokens.refresh.clear()

    def valid_access_tokens(self) -> set[str]:
        with self._lock:
            return set(self._tokens.access)

    def issued_secrets(self) -> list[str]:
        """Every access and refresh token still valid: none may appear in the database."""
        with self._lock:
            return [*self._tokens.access, *self._tokens.refresh]

    def token_requests(self, grant_type: str | None = None) -> list[dict[str, str]]:
        """The token endpoint's requests (form fields), oldest first."""
        forms = [_form(r) for r in self.server.received("/v2/oauth2/token")]
        return [form for form in forms if grant_type in (None, form.get("grant_type"))]

    def api_requests(self, path_prefix: str = "/v2/") -> list[Received]:
        """The Mailbox API requests (not the token endpoint's) under ``path_prefix``."""
        return [
            r
            for r in self.server.received()
            if r.path.startswith(path_prefix) and not r.path.startswith("/v2/oauth2/")
        ]

    def now(self) -> float:
        """The fake's clock (for its rate limit): real time plus :meth:`advance`."""
        return time.time() + self._clock_offset

    def advance(self, seconds: float) -> None:
        self._clock_offset += seconds

    def url(self, target: str) -> str:
        return self.server.url(target)

    def close(self) -> None:
        self.server.close()

    def __enter__(self) -> FakeHelpScout:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- requests -----------------------------------------------------------------------------

    def _handle(self, request: Received) -> Reply:
        if self.fault is not None and (reply := self.fault(request)) is not None:
            return reply
        if request.path == "/v2/oauth2/token" and request.method == "POST":
            return self._token(request)
        if request.path == AUTHORIZE_PATH:
            return self._authorize(request)
        if not request.path.startswith("/v2/"):
            return Reply.json({"message": "not found"}, status=404)
        if not self._authorized(request):
            return Reply.json({"error": "invalid_token", "message": "Unauthorized"}, status=401)
        headers, limited = self._count_request(request)
        if limited is not None:
            return limited
        reply = self._api(request)
        return Reply(
            reply.status_code, reply.body, reply.content_type, {**reply.headers, **headers}
        )

    def _authorize(self, request: Received) -> Reply:
        query = {key: values[0] for key, values in request.query.items()}
        if query.get("client_id") != CLIENT_ID:
            return Reply.text("unknown app", status=400)
        state = query.get("state", "")
        if self.deny:
            target = f"{self.redirect_url}?{urlencode({'error': 'access_denied', 'state': state})}"
        else:
            target = f"{self.redirect_url}?{urlencode({'code': self.issue_code(), 'state': state})}"
        return Reply.status(302, Location=target)

    def _token(self, request: Received) -> Reply:
        form = _form(request)
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
        if client_id != CLIENT_ID or not hmac.compare_digest(
            (client_secret or "").encode(), CLIENT_SECRET.encode()
        ):
            return Reply.json({"error": "invalid_client"}, status=401)
        grant = form.get("grant_type")
        with self._lock:
            if grant == "authorization_code":
                if form.get("code") not in self._tokens.codes:
                    return Reply.json({"error": "invalid_grant"}, status=400)
                self._tokens.codes.discard(form["code"])
                return Reply.json(self._new_token(refreshable=True))
            if grant == "refresh_token":
                if form.get("refresh_token") not in self._tokens.refresh:
                    return Reply.json({"error": "invalid_grant"}, status=400)
                self._tokens.refresh.discard(form["refresh_token"])
                return Reply.json(self._new_token(refreshable=True))
            if grant == "client_credentials":
                return Reply.json(self._new_token(refreshable=False))
        return Reply.json({"error": "unsupported_grant_type"}, status=400)

    def _new_token(self, *, refreshable: bool) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(24)
        self._tokens.access[access] = time.time() + self.expires_in
        token: dict[str, Any] = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.expires_in,
        }
        if refreshable:
            token["refresh_token"] = "rt-" + secrets.token_urlsafe(24)
            self._tokens.refresh.add(token["refresh_token"])
        return token

    def _authorized(self, request: Received) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            expires = self._tokens.access.get(token.strip())
        return scheme.lower() == "bearer" and expires is not None and expires > time.time()

    def _count_request(self, request: Received) -> tuple[dict[str, str], Reply | None]:
        if self.rate_limit is None:
            return {}, None
        now = self.now()
        minute = math.floor(now / 60)
        with self._lock:
            window, used = self._window
            if window != minute:
                window, used = minute, 0
            cost = 1 if request.method == "GET" else 2
            over = used + cost > self.rate_limit
            if not over:
                used += cost
            self._window = (window, used)
        headers = {
            "X-RateLimit-Limit-Minute": str(self.rate_limit),
            "X-RateLimit-Remaining-Minute": str(max(self.rate_limit - used, 0)),
        }
        if not over:
            return headers, None
        wait = max(1, math.ceil((minute + 1) * 60 - now))
        if self.retry_after == "helpscout":
            headers["X-RateLimit-Retry-After"] = str(wait)
        elif self.retry_after == "seconds":
            headers["Retry-After"] = str(wait)
        elif self.retry_after == "date":
            headers["Retry-After"] = format_datetime(
                datetime.fromtimestamp((minute + 1) * 60, UTC), usegmt=True
            )
        return headers, Reply(
            429, json.dumps({"message": "Too many requests"}).encode(), headers=headers
        )

    def _api(self, request: Received) -> Reply:
        parts = request.path.strip("/").split("/")
        if request.method == "GET" and parts == ["v2", "mailboxes"]:
            return self._paged(request, "mailboxes", self.dataset.mailboxes)
        if request.method == "GET" and parts == ["v2", "conversations"]:
            return self._conversations(request)
        if (
            request.method == "GET"
            and len(parts) == 4
            and parts[:2] == ["v2", "conversations"]
            and parts[3] == "threads"
        ):
            conversation = self._by_id.get(int(parts[2])) if parts[2].isdigit() else None
            if conversation is None:
                return Reply.json({"message": "not found"}, status=404)
            return self._paged(request, "threads", conversation["_embedded"]["threads"])
        if request.method == "POST" and parts == ["v2", "webhooks"]:
            return self._create_webhook(request)
        if request.method == "DELETE" and len(parts) == 3 and parts[:2] == ["v2", "webhooks"]:
            with self._lock:
                found = self.webhooks.pop(parts[2], None)
            return Reply.status(204) if found else Reply.json({"message": "none"}, status=404)
        return Reply.json({"message": "not found"}, status=404)

    def _create_webhook(self, request: Received) -> Reply:
        document = request.json()
        secret = document.get("secret")
        if (
            not isinstance(document.get("url"), str)
            or not isinstance(document.get("events"), list)
            or not document["events"]
            or not isinstance(secret, str)
            or not 0 < len(secret) <= 40
            or document.get("payloadVersion") != "V2"
        ):
            return Reply.json({"message": "Validation error"}, status=400)
        with self._lock:
            webhook_id = str(next(self._webhook_ids))
            self.webhooks[webhook_id] = document
        return Reply(
            201, b"", headers={"Resource-ID": webhook_id, "Location": f"/v2/webhooks/{webhook_id}"}
        )

    def _conversations(self, request: Received) -> Reply:
        query = {key: values[0] for key, values in request.query.items()}
        status = query.get("status", "active")
        since = query.get("modifiedSince", "")
        mailboxes = query.get("mailbox", "")
        if query.get("sortField", "createdAt") != "modifiedAt":
            return Reply.json({"message": "the fake only sorts by modifiedAt"}, status=400)
        key = (status, since, mailboxes)
        with self._lock:
            matching = self._filtered.get(key)
        if matching is None:
            if since:
                datetime.strptime(since, "%Y-%m-%dT%H:%M:%SZ")  # Help Scout's format only
            wanted = {int(m) for m in mailboxes.split(",") if m}
            matching = [
                c
                for c in self.dataset.conversations
                if c["userUpdatedAt"] >= since
                and (not wanted or c["mailboxId"] in wanted)
                and (status == "all" or c["status"] == status)
            ]
            if query.get("sortOrder", "desc") == "desc":
                matching = matching[::-1]
            with self._lock:
                self._filtered[key] = matching
        embed = query.get("embed") == "threads"
        limit = self.embed_limit

        def shown(conversation: dict[str, Any]) -> dict[str, Any]:
            if not embed:
                return {k: v for k, v in conversation.items() if k != "_embedded"}
            if limit is None:
                return conversation
            threads = conversation["_embedded"]["threads"][:limit]
            return {**conversation, "_embedded": {"threads": threads}}

        return self._paged(request, "conversations", matching, shown)

    def _paged(
        self,
        request: Received,
        name: str,
        items: Sequence[dict[str, Any]],
        shown: Callable[[dict[str, Any]], dict[str, Any]] = lambda item: item,
    ) -> Reply:
        query = {key: values[0] for key, values in request.query.items()}
        number = int(query.get("page", "1"))
        size = self.page_size
        pages = max(1, math.ceil(len(items) / size))
        chunk = items[(number - 1) * size : number * size]
        links: dict[str, Any] = {"self": {"href": self._page_url(request, query, number)}}
        if number < pages:
            links["next"] = {"href": self._page_url(request, query, number + 1)}
        document = {
            "_embedded": {name: [shown(item) for item in chunk]},
            "_links": links,
            "page": {
                "size": size,
                "totalElements": len(items),
                "totalPages": pages,
                "number": number,
            },
        }
        return Reply(200, json.dumps(document).encode(), "application/hal+json")

    def _page_url(self, request: Received, query: dict[str, str], number: int) -> str:
        return f"{self.base_url}{request.path}?{urlencode({**query, 'page': str(number)})}"


def _form(request: Received) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(request.body.decode()).items()}


def approve(authorize_url: str) -> tuple[str, str]:
    """Play the browser on the fake's authorize page: the ``code`` and ``state`` it sends back
    to the redirect URL (not followed)."""
    response = httpx.get(authorize_url, timeout=10)
    assert response.status_code == 302, response.text
    params = httpx.URL(response.headers["location"]).params
    return params["code"], params["state"]


class RecordingSleeper:
    """An injectable ``sleep`` that returns at once, records each wait and moves the fake's
    clock on by it (so its rate-limit minute passes)."""

    def __init__(self, fake: FakeHelpScout | None = None) -> None:
        self.fake = fake
        self.sleeps: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.fake is not None:
            self.fake.advance(seconds)
