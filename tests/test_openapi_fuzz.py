"""Schemathesis against deskside's own OpenAPI schema: every published route, fuzzed from it.

Each operation gets positive and negative cases generated from its documented request. A
``requests`` auth signs three cases in four exactly as the helpdesk would, over the very bytes
sent (for Helper: the raw query, with a current timestamp), so generated bodies get past the
signature to the parsers; the rest keep whatever Schemathesis generated and must be refused.
Every response is checked: never a 5xx, always strict JSON, and status code, content type and
body as the schema documents them. The app runs in-process (Schemathesis' ASGI transport).
"""

from __future__ import annotations

import atexit
import itertools
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from deskside.helpdesks import protocol_classes
from deskside.protocols import Protocol, RawRequest
from deskside.server import create_app
from helpers import (
    FUZZING,
    demo_secret,
    demo_settings,
    draw_case,
    each_operation,
    make_demo_database,
    strict_json,
)

EXAMPLES = 150  # per operation and generation mode; test_fuzz.py holds the 10,000-request floor
IDENTITY_TOKEN = "helper_identity-test-secret"


# ── Signing as each helpdesk does, as a requests auth ────────────────────────────────────────


class Signer(requests.auth.AuthBase):
    """Signs three requests in four as each helpdesk does (its ``sign_request``, checked
    against published vectors by test_helpdesk_contract.py); the fourth keeps what was
    generated."""

    def __init__(self) -> None:
        self.serial = itertools.count()
        self.signed = 0
        self.desks: dict[str, Protocol] = {}
        """Each helpdesk's route → its protocol (set once the app is built)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if next(self.serial) % 4 == 3:
            return request
        self.signed += 1
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        assert isinstance(raw, bytes)
        url = urlsplit(str(request.url))
        protocol = self.desks.get(url.path)
        if url.path == "/helper/identity":
            request.headers["Authorization"] = f"Bearer {IDENTITY_TOKEN}"
        elif protocol is not None:
            unsigned = RawRequest(protocol.method, raw, url.query.encode(), {})
            signed = protocol.sign_request(demo_secret(protocol.kind), unsigned)
            request.url = urlunsplit(url._replace(query=signed.query.decode()))
            request.headers.update(signed.headers)
            if signed.body != raw:
                request.body = signed.body
        return request


# ── The app and its schema ───────────────────────────────────────────────────────────────────


def demo_app() -> FastAPI:
    """The demo app on a new SQLite file. Built at import: Schemathesis' pytest integration
    needs the schema when tests are collected (its fixture-based loader fails on pytest 9)."""
    tmp = Path(tempfile.mkdtemp(prefix="deskside-openapi-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    database = make_demo_database(tmp / "demo.db")
    with pytest.MonkeyPatch.context() as monkeypatch:  # secrets are read while loading
        return create_app(demo_settings(monkeypatch, tmp, database))


APP = demo_app()
SIGNER = Signer()
SIGNER.desks = {protocol.path: protocol for protocol in APP.state.service.protocols}
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(modes=list(schemathesis.GenerationMode))
schema.auth.set_from_requests(SIGNER)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return APP.openapi()


statuses: Counter[tuple[str, int]] = Counter()


@schemathesis.check
def json_answers(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every answer is JSON (UTF-8, no NaN), never a stack trace; refusals are {"error": …}."""
    statuses[(case.path, response.status_code)] += 1
    desk = SIGNER.desks.get(case.path)
    if response.status_code == 200 and desk is not None and desk.media_type != "application/json":
        (content_type,) = response.headers["content-type"]  # a page: read as the helpdesk does
        desk.read_answer(content_type, response.content)
        return
    assert response.headers.get("content-type") == ["application/json"], response.headers
    answer = strict_json(response.content.decode("utf-8"))
    if response.status_code != 200:
        assert list(answer) == ["error"], answer


CHECKS = [
    not_a_server_error,
    json_answers,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@each_operation(schema)
@settings(FUZZING, max_examples=EXAMPLES)
@given(data=st.data())
def test_every_operation_answers_as_documented(
    operation: Any, mode: Any, data: st.DataObject
) -> None:
    case = draw_case(schema, operation, mode, data)
    response = case.call()
    case.validate_response(response, checks=CHECKS)


def test_signed_cases_got_past_the_signature(document: dict[str, Any]) -> None:
    """Runs after the fuzzing: each operation was answered (200) and refused (401) sometimes."""
    if not statuses:
        pytest.skip("the Schemathesis test did not run")
    assert SIGNER.signed > 0
    print(sorted(statuses.items()))  # shown with pytest -s
    for path in document["paths"]:
        assert statuses[(path, 200)] > 0, (path, statuses)
        assert statuses[(path, 401)] > 0, (path, statuses)


# ── What the schema publishes ────────────────────────────────────────────────────────────────


def test_every_helpdesk_route_is_published(document: dict[str, Any]) -> None:
    """One operation per registered helpdesk (the demo serves them all), with its request,
    signature and answers."""
    assert sorted(p.kind for p in SIGNER.desks.values()) == sorted(protocol_classes())
    for path, protocol in SIGNER.desks.items():
        operation = document["paths"][path][protocol.method.lower()]
        assert {"200", "400", "401", "413"} <= set(operation["responses"]), path
        assert operation["security"], path
        if protocol.method == "POST":
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body["type"] == "object", path
        else:
            assert any(p["in"] == "query" for p in operation["parameters"]), path
    declared = document["components"]["securitySchemes"]
    headers = {scheme.get("name", "").lower() for scheme in declared.values()}
    assert {"x-helpscout-signature", "x-there-there-signature", "plain-request-signature"} <= (
        headers
    )
    assert "/healthz" not in document["paths"]


def test_the_widget_identity_route_is_published(document: dict[str, Any]) -> None:
    operation = document["paths"]["/helper/identity"]["post"]
    assert "email" in operation["requestBody"]["content"]["application/json"]["schema"]["required"]
    assert operation["security"]


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    """Request schemas are inlined: no ``#/$defs/…`` pointing at the document's root."""

    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for item in node:
                yield from refs(item)

    for ref in refs(document):
        target: Any = document
        assert ref.startswith("#/"), ref
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
