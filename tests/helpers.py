"""Shared test utilities: an independent signer, the demo app on a temporary SQLite file, what
the Schemathesis tests share, and a small HTML tree to assert on what an agent's browser would
build.

The signer here is deliberately written from the vendors' descriptions (docs/protocols.md), not
with deskside's code, so a mistake in :mod:`deskside.signing` cannot hide in both.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import sqlite3
import subprocess
import sys
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings

from deskside.config import Settings, load_settings
from deskside.demo import (
    DEMO_DATABASE_ENV,
    create_demo_database,
    demo_config_path,
    demo_helpdesks,
    demo_secret_envs,
)
from deskside.server import create_app
from fake_http import unused_port

HS_SECRET = "hs-test-secret"
TT_SECRET = "tt-test-secret"
HS_HEADER = "X-HelpScout-Signature"
TT_HEADER = "X-There-There-Signature"
BASE_URL = "https://deskside.test"


# ── Independent signers ───────────────────────────────────────────────────────────────────────


def helpscout_signature(secret: str, body: bytes) -> str:
    """Standard base64 of HMAC-SHA1 over the raw body."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha1).digest()).decode()


def therethere_signature(secret: str, body: bytes) -> str:
    """Lower-case hex HMAC-SHA256 over the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def as_body(document: Any) -> bytes:
    return document if isinstance(document, bytes) else json.dumps(document).encode()


# ── The demo, on a temporary SQLite file ──────────────────────────────────────────────────────


def make_demo_database(path: Path) -> str:
    """Create the demo's tables and rows in a new SQLite file; returns its URL.

    Call it from fixtures (it runs its own event loop), not from async tests.
    """
    url = f"sqlite:///{path}"
    asyncio.run(create_demo_database(url))
    return url


def add_customer(database: str, email: str, *, company: str, name: str, **columns: Any) -> None:
    """Add a company with one user ``email`` to the demo database (plain sqlite3, no deskside).

    ``columns`` override the company's columns (``stripe_customer_id``, ``modules``, …) or the
    user's (``role``, ``last_seen_at``).
    """
    path = database.removeprefix("sqlite:///")
    user_keys = {"role", "last_seen_at", "is_owner"}
    company_row = {
        "name": company,
        "plan": "Pro",
        "status": "active",
        "mrr_cents": 4900,
        "employees": 3,
        "employee_limit": 10,
        "modules": "payroll",
        "created_at": "2024-01-01 00:00:00",
    } | {k: v for k, v in columns.items() if k not in user_keys}
    user_row = {"email": email, "name": name, "role": "owner", "is_owner": 1} | {
        k: v for k, v in columns.items() if k in user_keys
    }
    with sqlite3.connect(path) as connection:
        keys = ", ".join(company_row)
        marks = ", ".join("?" for _ in company_row)
        cursor = connection.execute(
            f"insert into companies ({keys}) values ({marks})",  # noqa: S608 - test's own keys
            list(company_row.values()),
        )
        user_row["company_id"] = cursor.lastrowid
        keys = ", ".join(user_row)
        marks = ", ".join("?" for _ in user_row)
        connection.execute(
            f"insert into users ({keys}) values ({marks})",  # noqa: S608
            list(user_row.values()),
        )


def demo_config_text(
    *,
    deadline_ms: int | None = None,
    helpscout: str = "",
    fold_plus: bool = True,
    sources: str = "",
    card: str = "",
    replace: Mapping[str, str] | None = None,
) -> str:
    """The demo config, with extra lines for ``[helpdesks.helpscout]``, extra source tables and
    extra ``[[card.…]]`` tables; ``replace`` maps lines of the demo config to new text."""
    text = demo_config_path().read_text(encoding="utf-8")
    for old, new in (replace or {}).items():
        assert old in text, old
        text = text.replace(old, new, 1)
    if deadline_ms is not None:
        text = text.replace("deadline_ms = 2500", f"deadline_ms = {deadline_ms}", 1)
    if not fold_plus:
        text = text.replace("fold_plus_addressing = true", "fold_plus_addressing = false", 1)
    marker = "# ── Helpdesks"
    assert marker in text
    text = text.replace(marker, f"{card}\n{sources}\n{marker}", 1)
    anchor = 'secret = "env:HELPSCOUT_SECRET"'
    return text.replace(anchor, f"{anchor}\n{helpscout}", 1)


def demo_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, **changes: Any
) -> Settings:
    """Settings of the demo config (changed as :func:`demo_config_text` says) on ``database``,
    serving every registered helpdesk as ``deskside demo`` does; each demo secret is
    ``<name>-test-secret`` (Help Scout's :data:`HS_SECRET`, There There's :data:`TT_SECRET`)."""
    monkeypatch.setenv(DEMO_DATABASE_ENV, database)
    envs = demo_secret_envs()
    for desk, env in envs.items():
        monkeypatch.setenv(env, f"{desk}-test-secret")
    monkeypatch.setenv(envs["helpscout"], HS_SECRET)
    monkeypatch.setenv(envs["therethere"], TT_SECRET)
    path = tmp_path / "deskside.toml"
    path.write_text(demo_config_text(**changes), encoding="utf-8")
    return load_settings(path, extra_helpdesks=demo_helpdesks())


def demo_secret(kind: str) -> str:
    """The secret :func:`demo_settings` gives helpdesk ``kind``."""
    return {"helpscout": HS_SECRET, "therethere": TT_SECRET}.get(kind, f"{kind}-test-secret")


async def _never_an_error_page(response: httpx.Response) -> None:
    """Checked on every response of every test: no 5xx, no stack trace, always JSON."""
    await response.aread()
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    assert response.headers["content-type"] == "application/json"
    response.json()


async def poll_until(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    """Poll ``condition`` every 20 ms until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"not so within {seconds} s: {what}"
        await asyncio.sleep(0.02)


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real ASGI app (lifespan included) behind an httpx client."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app),
            base_url=BASE_URL,
            event_hooks={"response": [_never_an_error_page]},
        ) as client,
    ):
        yield client


def _ready_answer(answer: httpx.Response) -> bool:
    return answer.status_code == 200


@contextmanager
def deskside_serving(
    config: Path,
    env: Mapping[str, str],
    log: Path,
    *,
    options: Sequence[str] = (),
    ready: Callable[[httpx.Response], bool] = _ready_answer,
    within: float = 120,
) -> Iterator[str]:
    """``deskside serve -c config`` (and ``options``) in a process of its own on a free local
    port, its output in ``log``; yields its base URL once ``GET /readyz`` answers as ``ready``
    wants (default: 200), polled. Fails with the log when the process exits or is not ready
    ``within`` seconds (generous: a busy machine starts it slowly); stops it on the way out."""
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "deskside", "serve", "-c", str(config), "--port", str(port)]
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, *options], stdout=output, stderr=subprocess.STDOUT, env=dict(env)
        )
    try:
        deadline = time.monotonic() + within
        while not _answers(f"{base}/readyz", ready):
            if process.poll() is not None or time.monotonic() > deadline:
                state = "exited" if process.poll() is not None else f"not ready in {within:g} s"
                raise AssertionError(f"deskside serve {state}:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _answers(url: str, ready: Callable[[httpx.Response], bool]) -> bool:
    try:
        return ready(httpx.get(url, timeout=2))
    except (httpx.TransportError, ValueError):  # not listening yet, or no JSON yet
        return False


async def post_helpscout(
    client: httpx.AsyncClient, document: Any, *, secret: str = HS_SECRET, path: str = "/helpscout"
) -> httpx.Response:
    body = as_body(document)
    headers = {"Content-Type": "application/json", HS_HEADER: helpscout_signature(secret, body)}
    return await client.post(path, content=body, headers=headers)


async def post_therethere(
    client: httpx.AsyncClient, document: Any, *, secret: str = TT_SECRET, path: str = "/therethere"
) -> httpx.Response:
    body = as_body(document)
    headers = {"Content-Type": "application/json", TT_HEADER: therethere_signature(secret, body)}
    return await client.post(path, content=body, headers=headers)


def helpscout_request(*emails: str, **extra: Any) -> dict[str, Any]:
    """A Dynamic Content request as Help Scout sends it, for ``emails``."""
    customer: dict[str, Any] = {"id": 54321, "fname": "Fred", "lname": "Smith"}
    if emails:
        customer |= {"email": emails[0], "emails": list(emails)}
    return {
        "ticket": {"id": 123, "number": 45, "subject": "Help me!"},
        "customer": customer,
        "user": {"id": 9, "fname": "Ann", "lname": "Agent", "role": "owner"},
        "mailbox": {"id": 87654, "email": "help@yourapp.example"},
    } | extra


# ── Schemathesis ─────────────────────────────────────────────────────────────────────────────

TRACEBACK = re.compile(r'Traceback \(most recent call last\)|File "[^"\n]+", line \d+')
"""A Python stack trace, which no answer may show."""

FUZZING = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    # No "explain" phase: it traces every line, slowing lookups past the card deadline.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
"""Hypothesis settings of the Schemathesis tests (add ``max_examples``): repeatable runs."""


def strict_json(text: str) -> Any:
    """``text`` as JSON without NaN or Infinity, and with no stack trace in it."""
    assert not TRACEBACK.search(text), text[:2000]

    def constant(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(text, parse_constant=constant)


# ── Text as an agent reads it (docs/protocols.md §6.5) ────────────────────────────────────────

_BIDI_MARKS = frozenset({0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)})
_BREAKS = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def readable(text: str) -> str:
    """``text`` as an agent reads it in a sidebar: control characters and bidi marks gone, line
    breaks and tabs as spaces, each run of white space one space, no space at either end."""
    kept = (
        " " if c in _BREAKS else c
        for c in text
        if c in _BREAKS or (unicodedata.category(c) != "Cc" and ord(c) not in _BIDI_MARKS)
    )
    return " ".join("".join(kept).split())


# ── HTML as a browser would parse it ──────────────────────────────────────────────────────────

_VOID = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    children: list[Element | str] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> list[Element]:
        found = []
        for child in self.children:
            if isinstance(child, Element):
                found.append(child)
                found += child.iter()
        return found

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Element]:
        return [
            e
            for e in self.iter()
            if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)
        ]


class _TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, dict(attrs))
        self.stack[-1].children.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index].tag == tag:
                del self.stack[index:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(html: str) -> Element:
    """``html`` as a tree (stdlib html.parser; entities decoded)."""
    builder = _TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def assert_harmless_html(html: str) -> Element:
    """No element, attribute or URL that runs script or loads something; returns the tree."""
    tree = parse_html(html)
    for element in tree.iter():
        assert element.tag not in {"script", "img", "svg", "iframe", "object", "style", "embed"}
        for name, value in element.attrs.items():
            assert not name.startswith("on"), f"event handler attribute {name}={value!r}"
            assert name not in {"src", "srcdoc", "style", "formaction"}
            if name == "href":
                assert (value or "").lower().startswith(("https://", "http://", "mailto:"))
    return tree


def each_operation(schema: Any) -> Any:
    """A decorator that runs a test ``(schema, data)`` for every (operation, generation mode)
    of a Schemathesis ``schema``, each as a pytest item of its own.

    Schemathesis's ``schema.parametrize()`` runs its operations as sub-tests of one item, and
    under pytest-xdist only the first of them ran; plain parametrisation runs all of them.
    The test draws its case with :func:`draw_case`.
    """
    import schemathesis

    # In a fixed order: every pytest-xdist worker must collect the same items.
    operations = sorted(
        (result.ok() for result in schema.get_all_operations()), key=lambda o: o.label
    )
    modes = list(schemathesis.GenerationMode)
    return pytest.mark.parametrize(
        ("operation", "mode"),
        [(operation, mode) for operation in operations for mode in modes],
        ids=[f"{operation.label}-{mode.value}" for operation in operations for mode in modes],
    )


def draw_case(schema: Any, operation: Any, mode: Any, data: Any) -> Any:
    """One Schemathesis case of ``operation`` in ``mode``, signed by the schema's auth."""
    return data.draw(operation.as_strategy(mode, auth_storage=schema.auth), label="case")


async def add_workspace(insights: Any, name: str, seconds: float = 90) -> Any:
    """Add workspace ``name`` to the running server's insights (an ``InsightsService``) and
    its service once its database is open (polling: opening it may take a while on a busy
    machine, and until then its pages and webhooks answer 503)."""
    await insights.workspaces.add(name)
    deadline = asyncio.get_running_loop().time() + seconds
    while not (live := await insights.workspace(name)).ready:
        assert asyncio.get_running_loop().time() < deadline, f"workspace {name} never opened"
        await asyncio.sleep(0.05)
    return live
