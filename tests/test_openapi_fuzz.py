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
import base64
import hmac
import itertools
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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

from deskside.protocols import PROTOCOLS
from deskside.server import create_app
from helpers import (
    FUZZING,
    HS_SECRET,
    TT_SECRET,
    demo_settings,
    draw_case,
    each_operation,
    make_demo_database,
    strict_json,
)

EXAMPLES = 150  # per operation and generation mode; test_fuzz.py holds the 10,000-request floor
SECRETS = {
    "/helpscout": HS_SECRET,
    "/therethere": TT_SECRET,
    "/helper": "helper-test-secret",
    "/plain": "plain-test-secret",
    "/card": "card-test-secret",
}
IDENTITY_TOKEN = "helper_identity-test-secret"
SIDEBAR_ROUTES = {
    "/helpscout": "post",
    "/therethere": "post",
    "/helper": "get",
    "/plain": "post",
    "/card": "post",
}


# ── An independent signer, as a requests auth ────────────────────────────────────────────────


def _mac(secret: str, message: bytes, digest: str) -> bytes:
    return hmac.new(secret.encode(), message, digest).digest()


def _fresh_timestamp(query: str) -> str:
    """``query`` with its timestamp now, as Helper would send it; other pairs untouched."""
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "timestamp"]
    return urlencode([*pairs, ("timestamp", str(int(time.time())))])


class Signer(requests.auth.AuthBase):
    """Signs three requests in four as each helpdesk does; the fourth keeps what was generated."""

    def __init__(self) -> None:
        self.serial = itertools.count()
        self.signed = 0

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if next(self.serial) % 4 == 3:
            return request
        self.signed += 1
        body = request.body or b""
        raw = body.encode() if isinstance(body, str) else body
        assert isinstance(raw, bytes)
        url = urlsplit(str(request.url))
        if url.path == "/helper":
            query = _fresh_timestamp(url.query)
            request.url = urlunsplit(url._replace(query=query))
            mac = _mac(SECRETS["/helper"], query.encode(), "sha256")
            request.headers["Authorization"] = f"Bearer {base64.b64encode(mac).decode()}"
        elif url.path == "/helper/identity":
            request.headers["Authorization"] = f"Bearer {IDENTITY_TOKEN}"
        elif url.path == "/helpscout":
            mac = _mac(HS_SECRET, raw, "sha1")
            request.headers["X-HelpScout-Signature"] = base64.b64encode(mac).decode()
        elif url.path in SECRETS:
            header = {
                "/therethere": "X-There-There-Signature",
                "/plain": "Plain-Request-Signature",
                "/card": "X-Deskside-Signature",
            }[url.path]
            request.headers[header] = _mac(SECRETS[url.path], raw, "sha256").hex()
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
    """One operation per configured helpdesk, with its request, signature and answers."""
    assert len(SIDEBAR_ROUTES) == len(PROTOCOLS)
    for path, method in SIDEBAR_ROUTES.items():
        operation = document["paths"][path][method]
        assert {"200", "400", "401", "413"} <= set(operation["responses"]), path
        assert operation["security"], path
        if method == "post":
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body["type"] == "object", path
        else:
            names = {p["name"] for p in operation["parameters"] if p["in"] == "query"}
            assert names == {"email", "timestamp"}
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
