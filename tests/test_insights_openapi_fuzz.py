"""Schemathesis against the insights JSON API: every operation tagged "insights", fuzzed from
the published schema, positive and negative cases.

The app runs with insights on a SQLite store in a temporary directory that already holds
classified conversations and their topics, so small generated ids name real rows. Three cases
in four carry the admin token; the rest must be refused: 401, or the router's 404 and 405.
Every answer: never a 5xx nor a stack trace, JSON (but the Markdown and CSV reports), refusals
as {"error": …}. GitHub is not configured, so the export answers 400 without a request out.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import schemathesis
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from deskside.config import Settings
from deskside.server import create_app
from helpers import (
    FUZZING,
    TRACEBACK,
    draw_case,
    each_operation,
    make_demo_database,
    serve,
    strict_json,
)
from test_insights_api import EXPORT_BUG, LOGIN_BUG, TOKEN, asking
from test_insights_webhooks import deliver, insights_settings, opened, settled

EXAMPLES = 40  # per operation and generation mode
TEXTS = [
    *EXPORT_BUG,
    *LOGIN_BUG,
    "It would be great if you could add a dark mode to the dashboard.",
    "Please add an export to Excel, a CSV is not enough for our accountant.",
    "How do I change my password?",
]
"""The stored conversations, ids 1, 2, …: topics 1 to 5 (two bugs, two features, a question)."""
REPORTS = "/api/insights/reports"
AUDIT = "/api/insights/audit"
TEXT_FORMATS = {"markdown": "text/markdown; charset=utf-8", "csv": "text/csv; charset=utf-8"}


class AdminToken(requests.auth.AuthBase):
    """The admin token on three requests in four; the fourth goes without."""

    def __init__(self) -> None:
        self.serial = itertools.count()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if next(self.serial) % 4 != 3:
            request.headers["Authorization"] = f"Bearer {TOKEN}"
        return request


# ── The app, its store and its schema ────────────────────────────────────────────────────────


def insights_app() -> FastAPI:
    """An app with insights and the admin token, on a new SQLite store that already holds
    :data:`TEXTS`. Built at import: Schemathesis reads the schema (starting the app's
    lifespan, which opens the store) when tests are collected."""
    tmp = Path(tempfile.mkdtemp(prefix="deskside-insights-openapi-"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    database = make_demo_database(tmp / "demo.db")
    store = f"sqlite:///{tmp / 'insights.db'}"
    options = insights_settings(tmp, database, store, admin_token=TOKEN)
    assert options.insights.reports.github_repository is None  # the export answers 400
    asyncio.run(fill(options, store))
    return create_app(options)


async def fill(options: Settings, store_url: str) -> None:
    """Deliver :data:`TEXTS` as webhooks to another app on the same store, then classify and
    group them."""
    async with serve(options) as client:
        for n, text in enumerate(TEXTS, start=1):
            assert (await deliver(client, "convo.created", asking(n, text))).is_success
        async with opened(store_url) as store:
            await settled(store)
        await client._transport.app.state.insights.analysis.update()  # type: ignore[attr-defined]


APP = insights_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).include(tag="insights")
schema.config.generation.update(modes=list(schemathesis.GenerationMode))
schema.auth.set_from_requests(AdminToken())
PATHS = {
    path
    for path, operations in APP.openapi()["paths"].items()
    if any("insights" in operation["tags"] for operation in operations.values())
}
"""The published insights paths (one operation each)."""


statuses: Counter[tuple[str, int]] = Counter()


@schemathesis.check
def insights_answers(ctx: Any, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """JSON (UTF-8, no NaN) but the reports (Markdown, CSV) and the audit (CSV) asked so, never
    a stack trace; refusals are {"error": …}; without the token, 401 (404, 405: no such route
    or method)."""
    statuses[(case.path, response.status_code)] += 1
    [content_type] = response.headers.get("content-type", [""])
    text = response.content.decode("utf-8")
    if response.request.headers.get("Authorization") != f"Bearer {TOKEN}":
        assert response.status_code in (401, 404, 405), response.status_code
    if content_type in TEXT_FORMATS.values():
        asked = parse_qs(urlsplit(str(response.request.url)).query).get("format")
        assert case.path in (REPORTS, AUDIT) and response.status_code == 200
        assert asked is not None and content_type == TEXT_FORMATS[asked[-1]], asked
        assert not TRACEBACK.search(text), text[:2000]
        return
    assert content_type == "application/json", response.headers
    answer = strict_json(text)
    if response.status_code != 200:
        assert list(answer) == ["error"], answer


CHECKS = [not_a_server_error, insights_answers]


@each_operation(schema)
@settings(FUZZING, max_examples=EXAMPLES)
@given(data=st.data())
def test_every_insights_operation_answers(operation: Any, mode: Any, data: st.DataObject) -> None:
    case = draw_case(schema, operation, mode, data)
    response = case.call()
    case.validate_response(response, checks=CHECKS)


def test_the_fuzzing_reached_rows_and_was_refused() -> None:
    """Runs after the fuzzing: each operation was refused (401) and got past the token; the
    reads answered (200), also for an id that names a row."""
    if not statuses:
        pytest.skip("the Schemathesis test did not run")
    print(sorted(statuses.items()))  # shown with pytest -s
    assert {path for path, _ in statuses} == PATHS
    for path in PATHS:
        assert statuses[(path, 401)] > 0, (path, statuses)
        assert any(s not in (401, 404, 405) for p, s in statuses if p == path), (path, statuses)
    for path in ("/api/insights/overview", "/api/insights/topics/{topic_id}", REPORTS):
        assert statuses[(path, 200)] > 0, (path, statuses)
