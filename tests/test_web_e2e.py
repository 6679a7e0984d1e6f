"""The web UI in a real browser: Debian's Chromium, headless, driven by Playwright against a real
``deskside serve`` process on 127.0.0.1.

The browser is conftest's ``chromium`` (Playwright and ``/usr/bin/chromium``, or
``DESKSIDE_CHROMIUM``): without them the tests skip, saying so; under
``DESKSIDE_REQUIRE_SERVICES=1`` they fail instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import demo_config_text, deskside_serving, helpscout_signature, make_demo_database
from test_insights_webhooks import conversation

PASSWORD = "e2e-admin-password"
WEBHOOK_SECRET = "e2e-webhook-secret"
SECRETS = {
    "HELPSCOUT_SECRET": "e2e-helpscout-secret",
    "THERETHERE_SECRET": "e2e-therethere-secret",
    "HELPER_SECRET": "e2e-helper-secret",
    "PLAIN_SECRET": "e2e-plain-secret",
    "CARD_SECRET": "e2e-card-secret",
    "HELPER_IDENTITY_TOKEN": "e2e-identity-token",
    "HELPSCOUT_WEBHOOK_SECRET": WEBHOOK_SECRET,
    "DESKSIDE_ADMIN_PASSWORD": PASSWORD,
}
CONVERSATIONS = {
    1: ("Upload crashes", "The app crashes every time I upload a photo. Error 500."),
    2: ("Dark mode?", "It would be great if you could add a dark mode to the dashboard."),
    3: ("Password", "How do I change my password?"),
}
INJECTED_COMPANY = '"><script>alert("xss")</script> [Evil Corp](https://evil.example) _Ltd_'
INJECTED_NAME = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) **Mallory**"


@dataclass(frozen=True)
class LiveServer:
    url: str
    password: str
    log: Path


@contextlib.contextmanager
def live_server(
    directory: Path, *, conversations: bool = True, config_extra: str = ""
) -> Iterator[LiveServer]:
    """``deskside serve`` on the demo config and database (in ``directory``), with the admin
    password :data:`PASSWORD`, the tables ``config_extra`` adds and, with ``conversations``,
    three Help Scout conversations delivered as webhooks and classified."""
    directory.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(1) as pool:  # its own event loop, beside Playwright's
        database = pool.submit(make_demo_database, directory / "demo.sqlite3").result()
    config = directory / "deskside.toml"
    admin = config_extra + '[admin]\npassword = "env:DESKSIDE_ADMIN_PASSWORD"\n\n[server]\n'
    config.write_text(demo_config_text(replace={"[server]\n": admin}), encoding="utf-8")
    env = {
        **os.environ,
        **SECRETS,
        "DESKSIDE_DEMO_DATABASE_URL": database,
        "DESKSIDE_DATA_DIR": str(directory / "data"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("STRIPE_API_KEY", None)
    log = directory / "server.log"
    options = ["--log-level", "warning", "--log-format", "text"]
    with deskside_serving(config, env, log, options=options, ready=_insights_ready) as url:
        if conversations:
            deliver_conversations(url)
        yield LiveServer(url=url, password=PASSWORD, log=log)


def _insights_ready(answer: httpx.Response) -> bool:
    """``/readyz`` says the insights side is up (the webhooks are taken)."""
    return bool(answer.json().get("insights", {}).get("state") == "ok")


def deliver_conversations(
    url: str, conversations: dict[int, tuple[str, str]] = CONVERSATIONS, *, created: str = ""
) -> None:
    """Send each ``id: (subject, text)`` as a signed ``convo.created`` webhook (``created``:
    an ISO time for every conversation; default the fixture's)."""
    for conversation_id, (subject, text) in conversations.items():
        document = conversation(
            conversation_id, subject=subject, threads=1, customer_id=700 + conversation_id
        )
        document["_embedded"]["threads"][0]["body"] = f"<p>{text}</p>"
        if created:
            document["createdAt"] = document["_embedded"]["threads"][0]["createdAt"] = created
        body = json.dumps(document).encode()
        response = httpx.post(
            f"{url}/webhooks/helpscout",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-HelpScout-Event": "convo.created",
                "X-HelpScout-Signature": helpscout_signature(WEBHOOK_SECRET, body),
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text


def log_in(page: Any, server: LiveServer) -> None:
    page.goto(f"{server.url}/ui/login")
    page.get_by_label("Admin password").fill(server.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/ui/(insights|preview)"))


# ── Fixtures ─────────────────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def server(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("e2e")) as running:
        yield running


# ── Tests ────────────────────────────────────────────────────────────────────────────────────


def test_logged_out_access_is_redirected_to_login(chromium_page: Any, server: LiveServer) -> None:
    chromium_page.goto(f"{server.url}/ui/insights?label=bug")
    assert re.search(r"/ui/login\?next=/ui/insights%3Flabel%3Dbug$", chromium_page.url), (
        chromium_page.url
    )
    assert chromium_page.get_by_label("Admin password").is_visible()
    chromium_page.get_by_label("Admin password").fill("wrong-password")
    chromium_page.get_by_role("button", name="Log in").click()
    assert chromium_page.get_by_role("alert").inner_text() == "Wrong password."
    chromium_page.get_by_label("Admin password").fill(server.password)
    chromium_page.get_by_role("button", name="Log in").click()
    chromium_page.wait_for_url(f"{server.url}/ui/insights?label=bug")  # back where it was going


def test_preview_shows_the_injection_payload_as_text(
    chromium_page: Any, server: LiveServer
) -> None:
    log_in(chromium_page, server)
    chromium_page.goto(f"{server.url}/ui/preview")
    chromium_page.get_by_label("Customer email").fill("mallory@evil.example")
    chromium_page.get_by_role("button", name="Preview", exact=True).click()
    chromium_page.wait_for_url(re.compile(r"/ui/preview\?email="))

    # There There's rows and Plain's cards: the payload is text on the page
    therethere = chromium_page.locator("section[data-desk=therethere] table")
    assert INJECTED_COMPANY in therethere.inner_text()
    plain = chromium_page.locator("section[data-desk=plain] .plain-card").first
    assert INJECTED_COMPANY in plain.inner_text()
    assert INJECTED_NAME in plain.inner_text()
    helper = chromium_page.locator("section[data-desk=helper]")
    assert INJECTED_NAME in helper.locator("dd").first.inner_text()

    # Help Scout's HTML in its sandboxed frame: the title is the payload, as text
    frame = chromium_page.frame_locator("iframe.hs-frame")
    assert frame.locator("h4").inner_text() == INJECTED_COMPANY
    assert INJECTED_NAME in frame.locator("p.muted").first.inner_text()
    # nothing injected exists anywhere: no image, no extra script, no handler
    for scope in (chromium_page, frame):
        assert scope.locator("img").count() == 0
        assert scope.locator("[onerror], [onclick], [onload]").count() == 0
    assert frame.locator("script").count() == 1  # the frame's own section toggle
    assert chromium_page.locator("script").count() == 1  # the UI's own file
    # a collapsed section opens with the keyboard
    account = frame.get_by_role("button", name=re.compile("Account"))
    assert account.get_attribute("aria-expanded") == "false"
    account.focus()
    account.press("Enter")
    assert account.get_attribute("aria-expanded") == "true"
    assert "mallory@evil.example" in frame.locator(".c-sb-section.open").last.inner_text()
    # the sources' timings and cache state
    assert "App database" in chromium_page.locator("#sources").inner_text()


def test_send_as_helpdesk_probes_the_live_endpoint(chromium_page: Any, server: LiveServer) -> None:
    log_in(chromium_page, server)
    chromium_page.goto(f"{server.url}/ui/preview?email=owner%40acme.example")
    chromium_page.get_by_role("button", name="Send as Help Scout").click()
    verdict = chromium_page.locator("section[data-desk=helpscout] .probe")
    assert verdict.inner_text().startswith("PASS"), verdict.inner_text()
    assert f"{server.url}/helpscout" in verdict.inner_text()


def test_relabel_a_conversation_and_see_the_count_change(
    chromium_page: Any, server: LiveServer
) -> None:
    log_in(chromium_page, server)
    counts = _wait_for_labels(chromium_page, server, {"bug": "1", "feature": "1", "question": "1"})
    assert counts["docs"] == "0"
    row = chromium_page.locator("tr[data-conversation='3']")
    assert "Password" in row.inner_text()
    row.get_by_label("Label of conversation #103").select_option("docs")  # as Help Scout numbers it
    row.get_by_role("button", name="Relabel").click()
    chromium_page.wait_for_url(re.compile(r"relabelled=3"))
    assert "Conversation #103 is now labelled docs" in chromium_page.locator("#flash").inner_text()
    after = _counts(chromium_page)
    assert (after["docs"], after["question"], after["all"]) == ("1", "0", "3")
    assert chromium_page.locator("svg.chart__svg rect.series--docs").count() == 1


def test_a_post_without_the_csrf_token_is_refused(chromium_page: Any, server: LiveServer) -> None:
    log_in(chromium_page, server)
    # the browser's own cookies, but no CSRF token: what a forged cross-site form would send
    refused = chromium_page.request.post(
        f"{server.url}/ui/insights/conversations/1/label", form={"label": "other"}
    )
    assert refused.status == 403
    chromium_page.goto(f"{server.url}/ui/insights")
    assert _counts(chromium_page)["other"] == "0"


def test_logout_ends_the_session(chromium_page: Any, server: LiveServer) -> None:
    log_in(chromium_page, server)
    chromium_page.get_by_role("button", name="Log out").click()
    chromium_page.wait_for_url(re.compile(r"/ui/login$"))
    chromium_page.goto(f"{server.url}/ui/setup")
    assert "/ui/login?next=/ui/setup" in chromium_page.url


def _counts(page: Any) -> dict[str, str]:
    return {
        element.get_attribute("data-label"): element.inner_text()
        for element in page.locator(".count__n").all()
    }


def _wait_for_labels(page: Any, server: LiveServer, wanted: dict[str, str]) -> dict[str, str]:
    """Reload the dashboard until the background classifier has labelled the webhooks."""
    deadline = time.monotonic() + 60
    while True:
        page.goto(f"{server.url}/ui/insights")
        counts = _counts(page)
        if all(counts.get(label) == n for label, n in wanted.items()):
            return counts
        assert time.monotonic() < deadline, f"still {counts}\n{server.log.read_text()}"
        time.sleep(0.5)
