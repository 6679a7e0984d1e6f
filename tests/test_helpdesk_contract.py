"""What every registered helpdesk owes, whatever it is: one test per duty, parametrised over the
registry (:func:`deskside.helpdesks.protocol_classes`), so a new helpdesk module gets all of
it without a line here. Each helpdesk's own test file holds only its specifics.

The duties: its published signature vectors, checked with an independent HMAC; refusing a
wrong or missing signature (401), a malformed request (400), another method (405) and a body
over the limit (413); never a 5xx for any body or query Hypothesis makes, signed or not; a
hostile customer's data never becoming markup where the helpdesk renders HTML or markdown; an
unknown customer answered as the helpdesk's "not found"; a partial answer with a note when a
source hangs past the deadline; and ``deskside probe`` passing against it over real HTTP.
All through the demo config, which serves every registered helpdesk, on a SQLite file.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from deskside.errors import Unauthorized
from deskside.helpdesks import kinds, protocol_classes, read_light
from deskside.lookup import Lookup
from deskside.probe import probe
from deskside.protocols import Protocol, RawRequest
from deskside.server import create_app
from deskside.signing import Scheme, sign
from fake_http import unused_port
from helpers import (
    BASE_URL,
    FUZZING,
    add_customer,
    assert_harmless_html,
    demo_secret,
    demo_settings,
    make_demo_database,
    strict_json,
)

KINDS = list(protocol_classes())
each_kind = pytest.mark.parametrize("kind", KINDS)
UNKNOWN = "nobody@contract.example"
HOSTILE = "hostile@contract.example"
PAYLOAD = (
    '"><script>alert(1)</script><img src=x onerror=alert(1)> **PWNED** '
    "[click](javascript:alert(1)) <a href=javascript:alert(1)>x</a> `code` # heading"
)
QUERY_CHARACTERS = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "#") + "é"
HANG_SECONDS = 30.0
DEADLINE_MS = 1500  # short, yet long enough for the other source on a busy machine


async def hanging_source(lookup: Lookup) -> None:
    """A source that never answers in time (``[sources.slow]`` of the deadline test)."""
    await asyncio.sleep(HANG_SECONDS)


# ── Independent signing ──────────────────────────────────────────────────────────────────────


def independent_signature(scheme: Scheme, secret: str, message: bytes) -> str:
    """``scheme``'s signature computed from its name alone (``<digest>-<encoding>``)."""
    digest, encoding = str(scheme).split("-")
    mac = hmac.new(secret.encode(), message, getattr(hashlib, digest)).digest()
    return mac.hex() if encoding == "hex" else base64.b64encode(mac).decode()


@each_kind
def test_the_published_signature_vectors_hold(kind: str) -> None:
    protocol = protocol_classes()[kind]
    if protocol.scheme is None:  # a bearer token: nothing is signed, so nothing to publish
        assert not protocol.signature_vectors, f"{kind}: vectors, yet no scheme to check them"
        return
    assert protocol.signature_vectors, f"{kind}: declare signature_vectors (docs/protocols.md)"
    for vector in protocol.signature_vectors:
        expected = independent_signature(protocol.scheme, vector.secret, vector.message)
        assert expected == vector.signature
        assert sign(protocol.scheme, vector.secret, vector.message) == vector.signature


@each_kind
def test_the_command_line_reads_the_same_kind_without_importing_it(kind: str) -> None:
    """``deskside sign`` and the CLI's choices read the class body's literals."""
    protocol = protocol_classes()[kind]
    light = kinds()[kind]
    module = __import__(light.module, fromlist=["HELPDESK"])
    read = read_light(Path(module.__file__ or "").read_text(encoding="utf-8"), light.module)
    assert read is not None, f"{kind}: kind, title, method, signature_header, scheme as literals"
    assert (read.kind, read.title, read.method, read.scheme, read.signature_header) == (
        protocol.kind,
        protocol.title,
        protocol.method,
        protocol.scheme,
        protocol.signature_header,
    )
    assert protocol.config_model.model_fields["kind"].annotation is not None
    assert module.HELPDESK is protocol


@each_kind
def test_its_own_verify_takes_its_example_and_refuses_another_secret(kind: str) -> None:
    protocol = protocol_classes()[kind]
    config = protocol.config_model.model_validate({"kind": kind, "secret": "contract-secret"})
    desk = protocol(kind, config)
    desk.verify(protocol.example_request("contract-secret", ["ada@example.com"]))
    with pytest.raises(Unauthorized):
        desk.verify(protocol.example_request("another-secret", ["ada@example.com"]))


# ── The demo app, on one event loop ──────────────────────────────────────────────────────────


@dataclass
class Reply:
    status: int
    document: Any


@dataclass
class Served:
    """The demo app serving every helpdesk, and how to send it a raw request."""

    runner: asyncio.Runner
    client: httpx.AsyncClient
    desks: dict[str, Protocol]
    max_body: int

    def send(self, request: RawRequest, path: str, method: str | None = None) -> Reply:
        return self.runner.run(self._send(request, path, method))

    async def _send(self, request: RawRequest, path: str, method: str | None) -> Reply:
        url = f"{path}?{request.query.decode('latin-1')}" if request.query else path
        response = await self.client.request(
            method or request.method, url, content=request.body, headers=dict(request.headers)
        )
        assert response.status_code < 500, response.text
        content_type = response.headers["content-type"]
        desk = next((d for d in self.desks.values() if d.path == path), None)
        if response.status_code == 200 and desk is not None and content_type != "application/json":
            return Reply(200, desk.read_answer(content_type, response.content))  # e.g. a page
        assert content_type == "application/json", response.headers
        return Reply(response.status_code, strict_json(response.text))

    def ask(self, kind: str, email: str, *, secret: str | None = None) -> Reply:
        desk = self.desks[kind]
        signing = demo_secret(kind) if secret is None else secret
        return self.send(desk.example_request(signing, [email]), desk.path)


def _database(tmp: Path) -> str:
    database = make_demo_database(tmp / "demo.db")
    add_customer(database, HOSTILE, company=PAYLOAD, name=PAYLOAD, plan=PAYLOAD, modules=PAYLOAD)
    return database


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return _database(tmp_path_factory.mktemp("contract"))


@contextmanager
def serving(database: str, tmp: Path, **changes: Any) -> Iterator[Served]:
    """The demo app, changed as :func:`demo_settings` says, served in-process on a loop of
    its own (for module-scoped fixtures)."""
    with pytest.MonkeyPatch.context() as monkeypatch, asyncio.Runner() as runner:
        config = demo_settings(monkeypatch, tmp, database, **changes)
        app = create_app(config)
        lifespan = app.router.lifespan_context(app)
        runner.run(lifespan.__aenter__())
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL)
        desks = {protocol.kind: protocol for protocol in app.state.service.protocols}
        try:
            yield Served(runner, client, desks, config.server.max_body_bytes)
        finally:
            runner.run(client.aclose())
            runner.run(lifespan.__aexit__(None, None, None))


@pytest.fixture(scope="module")
def served(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(database, tmp_path_factory.mktemp("served")) as found:
        yield found


def test_the_demo_serves_every_registered_helpdesk(served: Served) -> None:
    assert sorted(served.desks) == sorted(KINDS)


@each_kind
def test_a_known_customer_is_shown_as_the_helpdesk_expects(served: Served, kind: str) -> None:
    desk = served.desks[kind]
    request = desk.example_request(demo_secret(kind), [desk.demo_email])
    reply = served.send(request, desk.path)
    assert reply.status == 200, reply.document
    assert desk.check_answer(reply.status, reply.document, request) == []
    assert desk.shows_customer(reply.document)


@each_kind
def test_an_unknown_customer_is_the_helpdesks_not_found(served: Served, kind: str) -> None:
    desk = served.desks[kind]
    request = desk.example_request(demo_secret(kind), [UNKNOWN])
    reply = served.send(request, desk.path)
    assert reply.status == 200, reply.document
    assert desk.check_answer(reply.status, reply.document, request) == []
    assert not desk.shows_customer(reply.document)


@each_kind
def test_a_wrong_or_missing_signature_is_401(served: Served, kind: str) -> None:
    desk = served.desks[kind]
    forged = desk.example_request(demo_secret(kind) + "-forged", ["owner@acme.example"])
    assert served.send(forged, desk.path).status == 401
    reply = served.send(desk.unsigned(forged), desk.path)
    assert reply.status == 401
    assert list(reply.document) == ["error"]


@each_kind
def test_a_malformed_request_is_400(served: Served, kind: str) -> None:
    desk = served.desks[kind]
    reply = served.send(desk.malformed_request(demo_secret(kind)), desk.path)
    assert reply.status == 400, reply.document
    assert list(reply.document) == ["error"]


@each_kind
def test_another_method_is_405(served: Served, kind: str) -> None:
    desk = served.desks[kind]
    accepted = {desk.method, *desk.other_methods}
    other = next(method for method in ("GET", "POST", "PUT") if method not in accepted)
    request = desk.example_request(demo_secret(kind), ["owner@acme.example"])
    assert served.send(request, desk.path, method=other).status == 405


@each_kind
def test_a_body_over_the_limit_is_413(served: Served, kind: str) -> None:
    desk = served.desks[kind]
    huge = b'{"email":"owner@acme.example","pad":"' + b"x" * served.max_body + b'"}'
    request = desk.sign_request(
        demo_secret(kind), RawRequest("POST", huge, b"", {"content-type": "application/json"})
    )
    assert served.send(request, desk.path, method=desk.method).status == 413


@each_kind
def test_a_hostile_customer_never_becomes_markup(served: Served, kind: str) -> None:
    desk = served.desks[kind]
    reply = served.ask(kind, HOSTILE)
    assert reply.status == 200, reply.document
    markdown = MarkdownIt("commonmark", {"html": True})  # the worst viewer: raw HTML let through
    for form, text in desk.shown_markup(reply.document):
        html = text if form == "html" else markdown.render(text)
        assert_harmless_html(html)
        assert "<strong>PWNED</strong>" not in html, html
        assert "<h1>" not in html and "<code>code</code>" not in html, html


# ── Never a 5xx ──────────────────────────────────────────────────────────────────────────────

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _bodies(desk: Protocol) -> st.SearchStrategy[bytes]:
    """Raw bytes, and JSON shaped like the helpdesk's own example with values replaced."""
    example = strict_json(desk.example_request("s", ["a@b.example"]).body.decode() or "{}")
    keys = list(example) if isinstance(example, dict) else []
    shaped = st.dictionaries(st.sampled_from(keys or ["email"]), _json_values, max_size=6)
    return st.one_of(st.binary(max_size=300), shaped.map(lambda d: json.dumps(d).encode()))


@each_kind
def test_no_request_is_ever_a_5xx(served: Served, kind: str) -> None:
    desk = served.desks[kind]

    @settings(FUZZING, max_examples=120)
    @given(
        body=_bodies(desk),
        query=st.text(QUERY_CHARACTERS, max_size=80),
        signed=st.booleans(),
    )
    def fuzz(body: bytes, query: str, signed: bool) -> None:
        request = RawRequest(
            desk.method, body, query.encode(), {"content-type": "application/json"}
        )
        if signed:
            request = desk.sign_request(demo_secret(kind), request)
        served.send(request, desk.path)  # asserts < 500 and strict JSON

    fuzz()


# ── A hanging source ─────────────────────────────────────────────────────────────────────────

SLOW_SOURCE = f"""
[sources.slow]
kind = "python"
label = "Slow billing"
function = "{__name__}:hanging_source"
"""


@pytest.fixture(scope="module")
def hanging(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("hanging")
    with serving(database, tmp, sources=SLOW_SOURCE, deadline_ms=DEADLINE_MS) as found:
        yield found


@each_kind
def test_a_hanging_source_gives_a_partial_answer_with_a_note(hanging: Served, kind: str) -> None:
    desk = hanging.desks[kind]
    request = desk.example_request(demo_secret(kind), [desk.demo_email])
    started = time.monotonic()
    reply = hanging.send(request, desk.path)
    elapsed = time.monotonic() - started
    assert reply.status == 200, reply.document
    assert elapsed < HANG_SECONDS / 2, elapsed  # cut off at the deadline, not waited for
    assert desk.check_answer(reply.status, reply.document, request) == []
    assert desk.shows_customer(reply.document)
    assert "Slow billing unavailable" in str(reply.document), reply.document


# ── deskside probe, over real HTTP ───────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def listening(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo served by uvicorn on a real socket, as a helpdesk reaches it."""
    tmp = tmp_path_factory.mktemp("probe")
    with pytest.MonkeyPatch.context() as monkeypatch:
        app = create_app(demo_settings(monkeypatch, tmp, database))
    port = unused_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60  # generous: a busy machine starts it slowly
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@each_kind
def test_probe_passes_against_it_and_a_forged_signature_is_refused(
    listening: str, served: Served, kind: str
) -> None:
    desk = served.desks[kind]
    url = listening + desk.path
    report = asyncio.run(probe(url, kind, demo_secret(kind), email=desk.demo_email))
    assert report.ok, report.findings
    forged = asyncio.run(probe(url, kind, demo_secret(kind), bad_signature=True))
    assert forged.ok, forged.findings
