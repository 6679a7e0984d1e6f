"""Property-based fuzzing of every endpoint of every registered helpdesk: at least 10,000
hostile requests each.

The endpoints come from the registry (:func:`deskside.helpdesks.protocol_classes`) as the demo
serves them: each helpdesk's own route and the further routes it adds (Helper's widget
identity). What a request looks like comes from what the helpdesk publishes of it (its OpenAPI
description: the JSON body, or the query parameters) and from its own ``example_request``; a
new helpdesk module is fuzzed here without a line changed. Hypothesis builds malformed,
mis-typed, oversized, mis-signed and wrongly-sent requests, and puts hostile customers into the
demo database so their data reaches every renderer.

Whatever arrives, the answer is never a 5xx, always strict JSON (or the helpdesk's own page)
without a stack trace, and what it shows is safe where it is shown: the parts a helpdesk renders
as HTML hold no script, event handler or script URL; the parts it renders as markdown hold no
link, HTML or formatting that came from customer data (checked with a CommonMark renderer that
lets raw HTML through: the worst viewer); every URL it is given is a web or mail link.

Signing: valid requests are signed by the helpdesk's own ``sign_request`` (its signatures are
checked against published vectors with an independent HMAC in ``test_helpdesk_contract.py``);
the wrong ones are made here, from the right one, by the test alone.

One app serves the whole module in-process (httpx.ASGITransport) on one event loop; each
example is one call into it. Requests are counted per endpoint and the last test enforces the
floor. ``DESKSIDE_FUZZ_SCALE`` multiplies every example count (and the floor), e.g. ``10`` for a
deeper nightly run.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import itertools
import json
import logging
import os
import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from markdown_it.token import Token

from deskside.expressions import normalise_record
from deskside.helpdesks import protocol_classes
from deskside.openapi import schema_problems
from deskside.protocols import Protocol, RawRequest
from deskside.server import create_app
from deskside.signing import Scheme
from fuzz_data import (
    ADMIN,
    AUTHOR_MARKUP,
    B64_ALPHABET,
    EXTRA_CARD,
    FIXED_HOSTILE,
    PAYLOADS,
    Customer,
    bodies,
    documented,
    documents,
    flip_case,
    hostile_customers,
    known_emails,
    methods,
    not_space,
    queries,
)
from helpers import (
    BASE_URL,
    add_customer,
    assert_harmless_html,
    demo_secret,
    demo_settings,
    make_demo_database,
    readable,
)

FLOOR = 10_000
SCALE = float(os.environ.get("DESKSIDE_FUZZ_SCALE", "1"))
KINDS = list(protocol_classes())
each_kind = pytest.mark.parametrize("kind", KINDS)

settings.register_profile(
    "deskside-fuzz",
    # Every example is a real request through the app: timing varies with the machine, and
    # derandomize keeps CI on one fixed sequence (DESKSIDE_FUZZ_SCALE widens it).
    deadline=None,
    derandomize=True,
    database=None,
    # Bodies of tens of kilobytes and 3,000-deep nesting are the point, not an accident.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # No "explain" phase: it traces every line the app runs, slowing lookups past the card
    # deadline, so a replayed failure would look different from the one found.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)


def fuzz(examples: int) -> Callable[[Any], Any]:
    """The module's Hypothesis profile with ``examples`` (scaled) examples."""
    return settings(
        settings.get_profile("deskside-fuzz"), max_examples=max(1, round(examples * SCALE))
    )


# ── The endpoints, as the registry and the demo describe them ────────────────────────────────


@dataclass(frozen=True)
class Endpoint:
    """One route the demo serves, and how a correctly configured helpdesk calls it."""

    name: str
    """The helpdesk's kind for its own route; the path for a further route."""
    kind: str
    path: str
    methods: tuple[str, ...]
    """The methods it takes; the first is the one the helpdesk's own requests use."""
    ask: Callable[[str], RawRequest]
    """A request about an address, signed, never sent before."""
    sign: Callable[[RawRequest], RawRequest]
    """Any request signed (or given its token) as the helpdesk would."""
    unsign: Callable[[RawRequest], RawRequest]
    token: str | None
    """The bearer token it takes instead of a signature; None: it takes a signature."""
    scheme: Scheme | None
    body: st.SearchStrategy[Any]
    """Request documents shaped like the documented body."""
    query: dict[str, Any]
    """The documented query parameters' schemas."""
    limit: int
    media_type: str
    read: Callable[[str, bytes], Any]
    """The answer's document, read as the helpdesk reads a 200."""
    check: Callable[[Any, RawRequest], list[str]]
    """What is wrong with a 200's document."""

    @property
    def takes_body(self) -> bool:
        return any(method not in ("GET", "HEAD") for method in self.methods)


_SERIAL = itertools.count()


def _fresh(protocol: type[Protocol], secret: str, request: RawRequest) -> RawRequest:
    """``request`` made unique: a helpdesk that signs a query may refuse the same one twice."""
    if protocol.method != "GET":
        return request
    unsigned = protocol.unsigned(request)
    query = unsigned.query + f"&n={next(_SERIAL)}".encode()
    return protocol.sign_request(secret, RawRequest("GET", b"", query, unsigned.headers))


def _own_route(protocol: Protocol, limit: int) -> Endpoint:
    cls = type(protocol)
    secret = demo_secret(cls.kind)
    _, query = documented(cls.openapi)
    return Endpoint(
        name=cls.kind,
        kind=cls.kind,
        path=protocol.path,
        methods=(cls.method, *cls.other_methods),
        ask=lambda email: _fresh(cls, secret, cls.example_request(secret, [email])),
        sign=functools.partial(cls.sign_request, secret),
        unsign=cls.unsigned,
        token=secret if cls.scheme is None else None,
        scheme=cls.scheme,
        body=documents(cls.openapi),
        query=query,
        limit=limit,
        media_type=cls.media_type,
        read=cls.read_answer,
        check=lambda document, request: cls.check_answer(200, document, request),
    )


def _further_routes(protocol: Protocol, service: Any, limit: int) -> list[Endpoint]:
    """The routes a helpdesk adds, each authenticated as its demo request is (a bearer token)."""
    demos = {demo.path: demo.request for demo in protocol.demo_requests(BASE_URL)}
    found = []
    for route in protocol.extra_routes(service):
        demo = demos[route.path]  # a further route must have a demo request
        credentials = {k: v for k, v in demo.headers.items() if k == "authorization"}
        token = credentials["authorization"].removeprefix("Bearer ")
        answer = (route.openapi or {})["responses"][200]["model"]

        def ask(email: str, demo: RawRequest = demo) -> RawRequest:
            encoded = json.dumps(email)[1:-1].encode()
            body = demo.body.replace(protocol.demo_email.encode(), encoded)
            return RawRequest(demo.method, body, b"", demo.headers)

        def sign(request: RawRequest, credentials: dict[str, str] = credentials) -> RawRequest:
            headers = {**request.headers, **credentials}
            return RawRequest(request.method, request.body, request.query, headers)

        def unsign(request: RawRequest) -> RawRequest:
            headers = {k: v for k, v in request.headers.items() if k != "authorization"}
            return RawRequest(request.method, request.body, request.query, headers)

        found.append(
            Endpoint(
                name=route.path,
                kind=protocol.kind,
                path=route.path,
                methods=(route.method,),
                ask=ask,
                sign=sign,
                unsign=unsign,
                token=token,
                scheme=None,
                body=documents(route.openapi),
                query={},
                limit=route.max_body_bytes or limit,
                media_type="application/json",
                read=lambda content_type, body: json.loads(body),
                check=lambda document, request, answer=answer: schema_problems(answer, document),
            )
        )
    return found


# ── The app, one for the module ──────────────────────────────────────────────────────────────


@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    body: bytes
    document: Any


class ErrorLog(logging.Handler):
    """Collects what deskside logs at ERROR: a swallowed exception is a bug too."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> list[str]:
        messages = [
            f"{r.name}: {r.getMessage()} {r.exc_info[1]!r}" if r.exc_info else r.getMessage()
            for r in self.records
        ]
        self.records.clear()
        return messages


@dataclass
class Harness:
    """The app on one event loop, its database, its endpoints, and what has been sent."""

    runner: asyncio.Runner
    transport: httpx.ASGITransport
    app: Any
    database: sqlite3.Connection
    errors: ErrorLog
    endpoints: dict[str, list[Endpoint]]
    """Every registered kind's endpoints, its own route first."""
    counts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    completed: set[str] = field(default_factory=set)
    serial: Iterator[int] = field(default_factory=itertools.count)
    answered: set[tuple[str, bytes]] = field(default_factory=set)
    """Queries answered once: the same again may be refused as a replay."""

    def run(self, scenario: Coroutine[Any, Any, None]) -> None:
        """Play one example's requests on the module's event loop."""
        self.errors.take()
        self.runner.run(scenario)

    async def send(
        self,
        endpoint: Endpoint,
        request: RawRequest,
        *,
        body: bytes | AsyncIterator[bytes] | None = None,
        method: str | None = None,
    ) -> Reply:
        """``request`` to ``endpoint`` (``body`` streamed instead, ``method`` instead); the
        answer has passed :func:`check_envelope`."""
        method = method or request.method
        url = httpx.URL(BASE_URL + endpoint.path, query=request.query)
        sent = request.body if body is None else body
        headers = {name: value.encode("latin-1") for name, value in request.headers.items()}
        outgoing = httpx.Request(method, url, content=sent, headers=headers)
        response = await self.transport.handle_async_request(outgoing)  # no client: faster
        await response.aread()
        return self._reply(
            endpoint, method, response.status_code, response.headers, response.content
        )

    async def send_raw(self, endpoint: Endpoint, request: RawRequest) -> Reply:
        """A GET whose query string holds bytes no URL library would send (non-ASCII)."""
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "https",
            "path": endpoint.path,
            "raw_path": endpoint.path.encode(),
            "root_path": "",
            "query_string": request.query,
            "headers": [(b"host", b"deskside.test")]
            + [(k.encode(), v.encode("latin-1")) for k, v in request.headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("deskside.test", 443),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return self._reply(endpoint, "GET", start["status"], httpx.Headers(start["headers"]), body)

    def _reply(
        self, endpoint: Endpoint, method: str, status: int, headers: httpx.Headers, body: bytes
    ) -> Reply:
        self.counts[endpoint.name] += 1
        self.statuses[(endpoint.name, status)] += 1
        logged = self.errors.take()
        assert not logged, (endpoint.name, logged)
        document = check_envelope(endpoint, status, headers, body, method)
        return Reply(status, headers, body, document)

    def add_customer(self, customer: Customer) -> str:
        """Insert ``customer`` (company and user) and return its unique address."""
        n = next(self.serial)
        email = f"{customer.local}.{n}@fuzz{n}.example"
        company = {
            "name": customer.company,
            "plan": customer.plan,
            "status": customer.status,
            "mrr_cents": 4900,
            "employees": 3,
            "employee_limit": 10,
            "modules": customer.modules,
            "stripe_customer_id": customer.stripe_customer_id,
            "created_at": "2024-01-01 00:00:00",
        }
        user = {"email": email, "name": customer.name, "role": customer.role, "is_owner": 1}
        for key, value in customer.odd.items():
            (user if key in ("last_seen_at", "is_owner") else company)[key] = value
        cursor = self.database.execute(
            f"insert into companies ({', '.join(company)}) "  # noqa: S608 - the test's own keys
            f"values ({', '.join('?' for _ in company)})",
            list(company.values()),
        )
        user["company_id"] = cursor.lastrowid
        self.database.execute(
            f"insert into users ({', '.join(user)}) "  # noqa: S608
            f"values ({', '.join('?' for _ in user)})",
            list(user.values()),
        )
        return email


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    tmp = tmp_path_factory.mktemp("fuzz")
    database = make_demo_database(tmp / "demo.db")
    for email, payload in zip(FIXED_HOSTILE, PAYLOADS, strict=True):
        add_customer(database, email, company=payload, name=payload, plan=payload, modules=payload)
    logger = logging.getLogger("deskside")
    errors = ErrorLog()
    level = logger.level
    logger.setLevel(logging.ERROR)  # the warnings of 60,000 refusals would only cost time
    logger.addHandler(errors)
    logging.getLogger("deskside.server").error("self-check")
    assert errors.take() == ["self-check"], "deskside's errors would go unseen"
    connection = sqlite3.connect(database.removeprefix("sqlite:///"), isolation_level=None)
    try:
        with pytest.MonkeyPatch.context() as monkeypatch, asyncio.Runner() as runner:
            config = demo_settings(monkeypatch, tmp, database, card=EXTRA_CARD)
            app = create_app(config)
            lifespan = app.router.lifespan_context(app)
            runner.run(lifespan.__aenter__())
            service = app.state.service
            limit = config.server.max_body_bytes
            endpoints = {
                protocol.kind: [
                    _own_route(protocol, limit),
                    *_further_routes(protocol, service, limit),
                ]
                for protocol in service.protocols
            }
            assert sorted(endpoints) == sorted(KINDS), "the demo serves every registered helpdesk"
            try:
                yield Harness(runner, httpx.ASGITransport(app), app, connection, errors, endpoints)
            finally:
                runner.run(lifespan.__aexit__(None, None, None))
    finally:
        connection.close()
        logger.removeHandler(errors)
        logger.setLevel(level)


def recorded(run: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Note in the harness that every example of the test passed (``run`` may name the
    ``kind``), for the floor test to know the counts are complete."""

    def decorate(test: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(test)
        def run_all(harness: Harness, **params: Any) -> None:
            test(harness=harness, **params)
            harness.completed.add(run.format(**params))

        return run_all

    return decorate


# ── What every answer must be, and what each answer may show ─────────────────────────────────

_TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File "[^"\n]+", line \d+')


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    assert len(keys) == len(set(keys)), f"duplicate keys {keys}"
    return dict(pairs)


def strict_json(body: bytes) -> Any:
    """UTF-8 JSON without NaN, duplicate keys or a traceback."""
    text = body.decode("utf-8")
    assert not _TRACEBACK.search(text), text[:2000]
    return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)


def check_envelope(
    endpoint: Endpoint, status: int, headers: httpx.Headers, body: bytes, method: str
) -> Any:
    """Never a 5xx; a 200 is what the helpdesk reads (strict JSON, or its page), a refusal is
    strict JSON ``{"error": …}``; never a traceback. Returns the document (None for HEAD)."""
    assert status < 500, (status, body[:500])
    if method == "HEAD":
        return None
    content_type = headers.get("content-type", "")
    if status == 200 and endpoint.media_type != "application/json":
        assert not _TRACEBACK.search(body.decode("utf-8")), body[:2000]
        return endpoint.read(content_type, body)
    assert content_type == "application/json", (status, headers, body[:200])
    document = strict_json(body)
    if status != 200:
        assert list(document) == ["error"] and isinstance(document["error"], str), document
    if status == 401:
        assert document == {"error": "invalid signature"}
    return document


_MARKDOWN = MarkdownIt("commonmark", {"html": True})
_TEXT_TOKENS = {"text", "text_special", "softbreak"}


def markdown_markup(text: str) -> list[Token]:
    """Every token but plain text that a CommonMark viewer showing raw HTML finds in ``text``."""
    found = []
    for token in _MARKDOWN.parse(text):
        if token.type not in ("paragraph_open", "paragraph_close", "inline"):
            found.append(token)
        found += [child for child in token.children or [] if child.type not in _TEXT_TOKENS]
    return found


def assert_inert_markdown(text: str) -> None:
    """Only an author's markdown template may format, and link only into the admin."""
    markup = markdown_markup(text)
    assert {token.type for token in markup} <= AUTHOR_MARKUP, (text, markup)
    for link in (token for token in markup if token.type == "link_open"):
        assert str(link.attrs["href"]).startswith(ADMIN), text


def markdown_text(text: str) -> str:
    """The text a markdown viewer shows for ``text``."""
    inline = [token for token in _MARKDOWN.parse(text) if token.type == "inline"]
    return " ".join(child.content for token in inline for child in token.children or [])


def normalised(text: str) -> str:
    """Whitespace runs as one space, NUL as U+FFFD (as a CommonMark or HTML viewer shows)."""
    return " ".join(text.replace("\x00", "\ufffd").split())


def is_link(url: str) -> bool:
    """An http(s) or mailto URL (``url`` fields may hold spaces: escaped, they break nothing)."""
    return url.startswith(("https://", "http://", "mailto:"))


def _urls(node: Any, key: str = "") -> Iterator[str]:
    """Every value the document gives as a URL: under a key ending in ``url`` or ``href``, in a
    ``links`` or ``actions`` map, or the value of an item typed ``url``."""
    if isinstance(node, dict):
        if node.get("type") == "url" and isinstance(node.get("value"), str):
            yield node["value"]
        for name, value in node.items():
            if isinstance(value, str) and name.lower().endswith(("url", "href")):
                yield value
            elif isinstance(value, dict) and name in ("links", "actions"):
                yield from (v for v in value.values() if isinstance(v, str))
            else:
                yield from _urls(value, name)
    elif isinstance(node, list):
        for item in node:
            yield from _urls(item, key)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def check_shown(
    endpoint: Endpoint, document: Any, request: RawRequest, shown: Sequence[str] = ()
) -> None:
    """A 200 is what the helpdesk expects and safe where it shows it; agents can read one of
    ``shown`` (the customer's company, or their name) as text."""
    assert endpoint.check(document, request) == [], (endpoint.name, document)
    protocol = protocol_classes()[endpoint.kind]
    markup = protocol.shown_markup(document) if endpoint.name == endpoint.kind else []
    texts = []
    for form, text in markup:
        if form == "html":
            texts.append(assert_harmless_html(text).text())
        else:
            assert_inert_markdown(text)
            texts.append(markdown_text(text))
    if not isinstance(document, str):  # not a page, which shows only its markup
        assert all(is_link(url) for url in _urls(document)), (endpoint.name, document)
        marked = {text for _, text in markup}
        texts += [text for text in _strings(document) if text not in marked]
    if shown:
        visible = " | ".join(normalised(text) for text in texts)
        assert any(normalised(text) in visible for text in shown), (shown, visible[:3000])


def shown_text(value: str) -> str | None:
    """How a template shows a text column as agents read it (no control or bidi character,
    white space runs as one space), or None when it is not shown as text (deskside reads
    date-like text as a date)."""
    normal = normalise_record({"v": value})["v"]
    return readable(normal) if isinstance(normal, str) else None


def _every(harness: Harness, kind: str, wanted: Callable[[Endpoint], bool]) -> list[Endpoint]:
    return [endpoint for endpoint in harness.endpoints[kind] if wanted(endpoint)]


# ── (a) Correctly signed, structurally wrong bodies ──────────────────────────────────────────


@recorded("malformed-{kind}")
@each_kind
@fuzz(1500)
@given(data=st.data())
def test_signed_malformed_bodies_get_400_or_a_safe_answer(
    harness: Harness, kind: str, data: st.DataObject
) -> None:
    for endpoint in _every(harness, kind, lambda e: e.takes_body):
        method = next(m for m in endpoint.methods if m not in ("GET", "HEAD"))
        body = data.draw(bodies(endpoint.body), label=f"{endpoint.name} body")
        content_type = data.draw(
            st.sampled_from(
                ["application/json", "text/plain", "", "application/json; charset=utf-16"]
            )
        )
        headers = {"content-type": content_type} if content_type else {}
        signed = endpoint.sign(RawRequest(method, body, b"", headers))

        async def scenario(endpoint: Endpoint = endpoint, signed: RawRequest = signed) -> None:
            reply = await harness.send(endpoint, signed)
            assert reply.status in (200, 400, 413), reply
            if reply.status == 413:
                assert len(signed.body) > endpoint.limit
            if reply.status == 200:
                check_shown(endpoint, reply.document, signed)
            # Unsigned, the same body is refused before it is read as JSON (never a 400 first).
            unsigned = await harness.send(endpoint, endpoint.unsign(signed))
            assert unsigned.status in ((401, 413) if reply.status == 413 else (401,)), unsigned

        harness.run(scenario())


# ── (b) Signed, structurally wrong queries ───────────────────────────────────────────────────


@recorded("queries-{kind}")
@each_kind
@fuzz(1200)
@given(data=st.data())
def test_signed_malformed_queries_get_400_or_a_safe_answer(
    harness: Harness, kind: str, data: st.DataObject
) -> None:
    for endpoint in _every(harness, kind, lambda e: "GET" in e.methods):
        query = data.draw(queries(endpoint.query), label=f"{endpoint.name} query")
        sent = httpx.URL(BASE_URL + endpoint.path, query=query.encode()).query  # as sent
        signed = endpoint.sign(RawRequest("GET", b"", sent, {}))
        byte = data.draw(st.integers(0x80, 0xFF), label="non-ASCII byte")
        at = data.draw(st.integers(0, len(signed.query)), label="at")
        raw = RawRequest("GET", b"", signed.query[:at] + bytes([byte]) + signed.query[at:], {})

        async def scenario(
            endpoint: Endpoint = endpoint, signed: RawRequest = signed, raw: RawRequest = raw
        ) -> None:
            reply = await harness.send(endpoint, signed)
            again = (endpoint.name, signed.query) in harness.answered
            assert reply.status in ((200, 400, 401) if again else (200, 400)), (signed, reply)
            if reply.status == 200:
                harness.answered.add((endpoint.name, signed.query))
                check_shown(endpoint, reply.document, signed)
            # A query no client would send: refused, signed or not.
            refused = await harness.send_raw(
                endpoint, RawRequest("GET", b"", raw.query, signed.headers)
            )
            assert refused.status in (400, 401), (raw, refused)
            unsigned = await harness.send(endpoint, endpoint.unsign(signed))
            assert unsigned.status in (400, 401), unsigned

        harness.run(scenario())


# ── (c) Hostile customer data, through every renderer ─────────────────────────────────────────


@recorded("hostile")
@fuzz(200)
@given(customer=hostile_customers)
def test_hostile_customer_data_is_shown_as_text(harness: Harness, customer: Customer) -> None:
    email = harness.add_customer(customer)
    company = shown_text(customer.company)
    title = None if company is None else company or email
    person = shown_text(customer.name)
    name = None if person is None or title is None else person or title

    async def scenario() -> None:
        for endpoint in itertools.chain.from_iterable(harness.endpoints.values()):
            request = endpoint.ask(email)
            reply = await harness.send(endpoint, request)
            assert reply.status == 200, (endpoint.name, reply)
            # Helpdesks about the company show its name; those about the person, theirs.
            shown = [text for text in (title, name) if text is not None]
            check_shown(endpoint, reply.document, request, shown)

    harness.run(scenario())


# ── (d) Mis-signed requests ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Credential:
    """Where a signed request carries its signature: a header (after ``prefix``) or a query
    parameter; ``value`` as sent."""

    header: str | None
    parameter: str | None
    prefix: str
    value: str

    @classmethod
    def of(cls, signed: RawRequest, unsigned: RawRequest) -> Credential:
        for name, value in signed.headers.items():
            if unsigned.headers.get(name) != value:
                prefix = "Bearer " if value.startswith("Bearer ") else ""
                return cls(name, None, prefix, value.removeprefix(prefix))
        extra = set(signed.query.split(b"&")) - set(unsigned.query.split(b"&"))
        (pair,) = extra
        name, _, value = pair.partition(b"=")
        return cls(None, name.decode(), "", unquote_to_bytes(value).decode())

    def put(self, unsigned: RawRequest, value: str | bytes | None) -> RawRequest:
        """``unsigned`` carrying ``value`` where the signature goes (None: nowhere)."""
        headers, query = dict(unsigned.headers), unsigned.query
        if value is not None and self.header is not None:
            headers[self.header] = value if isinstance(value, str) else value.decode("latin-1")
        elif value is not None:
            text = value if isinstance(value, str) else value.decode("latin-1")
            pair = f"{self.parameter}={quote(text, safe='')}".encode()
            query = query + b"&" + pair if query else pair
        return RawRequest(unsigned.method, unsigned.body, query, headers)


def _decoded(signature: str, scheme: Scheme) -> bytes:
    return bytes.fromhex(signature) if str(scheme).endswith("hex") else base64.b64decode(signature)


@st.composite
def mis_signatures(
    draw: st.DrawFn, endpoint: Endpoint, request: RawRequest
) -> list[tuple[str, RawRequest]]:
    """Twelve ways to get ``request``'s signature wrong, each as the request sent."""
    assert endpoint.scheme is not None
    protocol = protocol_classes()[endpoint.kind]
    unsigned = endpoint.unsign(request)
    right = Credential.of(request, unsigned)
    prefix, value = right.prefix, right.value
    other_secret = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=40))
    if other_secret == demo_secret(endpoint.kind):
        other_secret += "!"
    wrong = Credential.of(protocol.sign_request(other_secret, unsigned), unsigned).value
    hex_scheme = str(endpoint.scheme).endswith("hex")
    alphabet = "0123456789abcdef" if hex_scheme else B64_ALPHABET
    suffix = draw(st.text(st.sampled_from(alphabet + "-_.!"), min_size=1, max_size=6))
    cut = draw(st.integers(1, len(value) - 1))
    garbage = draw(st.text(not_space, min_size=1, max_size=60)).encode("latin-1")
    raw = _decoded(value, endpoint.scheme)
    if hex_scheme:
        encoding_swap = base64.b64encode(raw).decode()  # base64 where hex is expected
        alphabet_swap = value[:-1] + ("0" if value[-1] != "0" else "1")  # one digit off
    else:
        encoding_swap = raw.hex()  # hex where base64 is expected
        urlsafe = base64.urlsafe_b64encode(raw).decode()
        # URL-safe base64 of the same MAC, or (without + or /) of a MAC under another secret.
        alphabet_swap = (
            urlsafe
            if urlsafe != value
            else base64.urlsafe_b64encode(_decoded(wrong, endpoint.scheme)).decode()
        )
    if unsigned.query and endpoint.methods[0] == "GET":
        other = RawRequest(
            unsigned.method, unsigned.body, unsigned.query + b"&x=1", unsigned.headers
        )
    else:
        more = draw(st.binary(min_size=1, max_size=8))
        other = RawRequest(unsigned.method, unsigned.body + more, unsigned.query, unsigned.headers)
    elsewhere = "x-signature" if right.header != "x-signature" else "x-hub-signature"
    variants = [
        ("missing", unsigned),
        ("blank", right.put(unsigned, prefix + " ")),
        ("wrong secret", right.put(unsigned, prefix + wrong)),
        ("truncated", right.put(unsigned, prefix + value[:-cut])),
        ("extended", right.put(unsigned, prefix + value + suffix)),
        ("other message", right.put(other, prefix + value)),
        ("encoding", right.put(unsigned, prefix + encoding_swap)),
        ("alphabet", right.put(unsigned, prefix + alphabet_swap)),
        ("twice", right.put(unsigned, prefix + value + value)),
        (
            "other header",
            right.put(
                RawRequest(
                    unsigned.method,
                    unsigned.body,
                    unsigned.query,
                    {**unsigned.headers, elsewhere: value},
                ),
                b"garbage",
            ),
        ),
        ("garbage", right.put(unsigned, garbage)),
    ]
    positions = draw(st.sets(st.integers(0, 99), min_size=1))
    if hex_scheme:  # the case of hex digits does not change the MAC: upper-case hex is right
        variants.append(("case (same MAC)", right.put(unsigned, prefix + value.upper())))
    else:
        flipped = flip_case(value, positions)
        variants.append(("case-flipped", right.put(unsigned, prefix + flipped)))
    return variants


@st.composite
def mis_tokens(
    draw: st.DrawFn, endpoint: Endpoint, request: RawRequest
) -> list[tuple[str, RawRequest]]:
    """Twelve ways to present a wrong bearer token."""
    token = endpoint.token
    assert token is not None
    unsigned = endpoint.unsign(request)
    other = draw(st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), min_size=1))
    positions = draw(st.sets(st.integers(0, 99), min_size=1))
    cut = draw(st.integers(1, len(token) - 1))
    suffix = draw(st.text(st.sampled_from("abcdefXYZ-_!"), min_size=1, max_size=5))
    garbage = draw(st.text(not_space, min_size=1)).encode("latin-1").decode("latin-1")
    other_kind = next(k for k in KINDS if k != endpoint.kind)

    def sent(**headers: str) -> RawRequest:
        return RawRequest(
            unsigned.method, unsigned.body, unsigned.query, {**unsigned.headers, **headers}
        )

    return [
        ("missing", unsigned),
        ("blank", sent(authorization="Bearer ")),
        ("wrong", sent(authorization=f"Bearer {other if other != token else other + '!'}")),
        ("truncated", sent(authorization=f"Bearer {token[:-cut]}")),
        ("extended", sent(authorization=f"Bearer {token}{suffix}")),
        ("case-flipped", sent(authorization=f"Bearer {flip_case(token, positions)}")),
        ("not bearer", sent(authorization=f"Basic {token}")),
        ("no scheme", sent(authorization=token)),
        ("other header", sent(**{"x-deskside-signature": token})),
        ("another helpdesk's secret", sent(authorization=f"Bearer {demo_secret(other_kind)}")),
        ("repeated", sent(authorization=f"Bearer {token} {token}")),
        ("garbage", sent(authorization=garbage)),
    ]


@recorded("mis-signed-{kind}")
@each_kind
@fuzz(450)
@given(data=st.data())
def test_mis_signed_requests_get_401(harness: Harness, kind: str, data: st.DataObject) -> None:
    email = data.draw(st.one_of(known_emails, st.emails()), label="email")
    for endpoint in harness.endpoints[kind]:
        request = endpoint.ask(email)
        if endpoint.token is not None:
            variants = data.draw(mis_tokens(endpoint, request), label="variants")
        else:
            variants = data.draw(mis_signatures(endpoint, request), label="variants")
        assert len(variants) == 12

        async def scenario(endpoint: Endpoint = endpoint, variants: Any = variants) -> None:
            for name, sent in variants:
                reply = await harness.send(endpoint, sent)
                if name == "case (same MAC)":
                    assert reply.status == 200, (name, reply)
                    continue
                assert reply.status == 401, (endpoint.name, name, sent, reply)
                # Nothing sent is echoed: a 401 is exactly {"error": "invalid signature"}
                # (check_envelope), which a short credential may happen to be part of.

        harness.run(scenario())


# ── (e) Oversized bodies ─────────────────────────────────────────────────────────────────────


@recorded("oversized-{kind}")
@each_kind
@fuzz(240)
@given(
    extra=st.integers(1, 64 * 1024),
    chunk=st.sampled_from([512, 4096, 16_384, 65_536]),
    padding=st.sampled_from([b" ", b"\n", b"\t", b"\r\n"]),
    declared=st.integers(0, 10**30),
)
def test_oversized_bodies_get_413(
    harness: Harness, kind: str, extra: int, chunk: int, padding: bytes, declared: int
) -> None:
    for endpoint in harness.endpoints[kind]:
        harness.run(oversized(harness, endpoint, extra, chunk, padding, declared))


def carrying(endpoint: Endpoint, body: bytes, **headers: str) -> RawRequest:
    """A new request about a known customer carrying ``body`` (and ``headers``), signed."""
    asked = endpoint.unsign(endpoint.ask("owner@acme.example"))
    sent = RawRequest(asked.method, body, asked.query, {**asked.headers, **headers})
    return endpoint.sign(sent)


async def oversized(
    harness: Harness, endpoint: Endpoint, extra: int, chunk: int, padding: bytes, declared: int
) -> None:
    """A body over ``endpoint``'s limit is refused however it comes; one of exactly the limit
    is read."""
    limit = endpoint.limit
    document = endpoint.ask("owner@acme.example").body or b'{"email":"owner@acme.example"}'
    fitting = document + b" " * (limit - len(document))
    big = document + (padding * (limit + extra))[: limit + extra - len(document)]
    assert len(fitting) == limit and len(big) == limit + extra

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), chunk):
            yield big[start : start + chunk]

    cases: list[tuple[RawRequest, AsyncIterator[bytes] | None]] = [
        (carrying(endpoint, big), None),  # with its Content-Length
        (carrying(endpoint, big), chunks()),  # streamed, no Content-Length
        (carrying(endpoint, big, **{"content-length": str(declared % limit)}), None),
        (carrying(endpoint, b"{}", **{"content-length": str(limit + 1 + declared)}), None),
    ]
    for request, streamed in cases:
        reply = await harness.send(endpoint, request, body=streamed)
        assert reply.status == 413, (endpoint.name, reply)
    # Unsigned and too large: refused either way, never read.
    reply = await harness.send(endpoint, endpoint.unsign(carrying(endpoint, big)))
    assert reply.status in (401, 413), reply
    reply = await harness.send(endpoint, carrying(endpoint, fitting))
    assert reply.status == 200, ("a body of exactly the limit", endpoint.name, reply)


# ── (f) Wrong methods ────────────────────────────────────────────────────────────────────────


@recorded("methods-{kind}")
@each_kind
@fuzz(300)
@given(data=st.data())
def test_wrong_methods_get_405(harness: Harness, kind: str, data: st.DataObject) -> None:
    for endpoint in harness.endpoints[kind]:
        allowed = {*endpoint.methods, *(("HEAD",) if "GET" in endpoint.methods else ())}
        chosen = data.draw(
            st.lists(methods.filter(lambda m, a=allowed: m not in a), min_size=4, max_size=4),
            label="methods",
        )
        body = data.draw(st.sampled_from([b"", b"{}", b'{"email":"owner@acme.example"}']))
        request = carrying(endpoint, body)

        async def scenario(
            endpoint: Endpoint = endpoint, chosen: list[str] = chosen, request: RawRequest = request
        ) -> None:
            for method in chosen:
                reply = await harness.send(endpoint, request, method=method)
                assert reply.status == 405, (method, reply)
                assert endpoint.methods[0] in reply.headers.get("allow", ""), (
                    reply.headers
                )  # RFC 9110

        harness.run(scenario())


# ── The floor ────────────────────────────────────────────────────────────────────────────────

EXPECTED_RUNS = {
    "hostile",
    *(
        f"{run}-{kind}"
        for run in ("malformed", "queries", "mis-signed", "oversized", "methods")
        for kind in KINDS
    ),
}


def test_every_endpoint_got_at_least_10000_hostile_requests(harness: Harness) -> None:
    missing = EXPECTED_RUNS - harness.completed
    if missing:
        pytest.skip(f"counts only after every fuzz test passed; not run: {sorted(missing)}")
    floor = round(FLOOR * min(SCALE, 1))
    every = [endpoint.name for found in harness.endpoints.values() for endpoint in found]
    short = {name: harness.counts[name] for name in every}
    assert all(count >= floor for count in short.values()), short
    print("requests per endpoint:", dict(harness.counts))  # shown with pytest -s
    print("by status:", sorted(harness.statuses.items()))
