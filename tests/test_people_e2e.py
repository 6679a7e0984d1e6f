"""People with roles in a real browser (Debian's Chromium through Playwright, against a real
``deskside serve``): a viewer invited with ``deskside users add`` sets their password and sees
no controls beyond a viewer's; an admin sees them all, and the People page. Skips like
:mod:`test_web_e2e` without Playwright or Chromium."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from test_web_e2e import LiveServer, chromium_browser, live_server, log_in

DESKSIDE = [sys.executable, "-m", "deskside"]
VIEWER = "vera@team.example"
VIEWER_PASSWORD = "vera-has-a-long-password"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium_browser() as found:
        yield found


@pytest.fixture(scope="module")
def server(browser: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("people-e2e")) as running:
        yield running


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def invite(server: LiveServer, email: str, role: str) -> str:
    """``deskside users add`` on the server's own store; the invitation link it prints."""
    directory = server.log.parent
    config = str(directory / "deskside.toml")
    added = subprocess.run(
        [*DESKSIDE, "users", "add", email, "--role", role, "--url", server.url, "-c", config],
        capture_output=True,
        text=True,
        env={**os.environ, "DESKSIDE_DATA_DIR": str(directory / "data"), "COLUMNS": "200"},
        timeout=120,
        check=False,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    found = re.search(rf"{re.escape(server.url)}/ui/invitation\?token=\S+", added.stdout)
    assert found, added.stdout
    return found.group()


def topic_page(page: Any, server: LiveServer) -> None:
    """Open a topic's page, once the server has grouped the conversations (polling)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        page.goto(f"{server.url}/ui/topics")
        links = page.locator("main a[href*='/ui/topics/']")
        if links.count():
            links.first.click()
            page.wait_for_url(re.compile(r"/ui/topics/\d+$"))
            return
        page.wait_for_timeout(200)
    raise AssertionError("no topic appeared within a minute")


def nav_links(page: Any) -> list[str]:
    return [text.strip() for text in page.locator("nav .nav a").all_inner_texts()]


def test_a_viewer_sees_no_controls_of_other_roles(page: Any, server: LiveServer) -> None:
    link = invite(server, VIEWER, "viewer")
    page.goto(link)
    page.get_by_label("New password").fill(VIEWER_PASSWORD)
    page.get_by_label("Again").fill(VIEWER_PASSWORD)
    page.get_by_role("button", name="Set the password and log in").click()
    page.wait_for_url(re.compile(r"/ui/insights$"))
    assert page.locator("#whoami").inner_text() == f"{VIEWER} · viewer"
    assert nav_links(page) == ["Insights", "Reports", "Preview"]
    assert page.locator("table.conversations tbody tr").count() == 3  # reads the dashboard
    assert page.get_by_role("button", name="Relabel").count() == 0
    topic_page(page, server)
    assert page.get_by_role("button", name="Rename").count() == 0
    assert page.get_by_role("button", name="Split").count() == 0
    answer = page.goto(f"{server.url}/ui/people")
    assert answer.status == 403
    assert "This needs the admin role; you are viewer." in page.locator("main").inner_text()

    # The link worked once
    page.get_by_role("button", name="Log out", exact=True).click()
    page.wait_for_url(re.compile(r"/ui/login$"))
    page.goto(link)
    assert "not valid" in page.get_by_role("alert").inner_text()

    # Logged out, the viewer logs in with their email and password
    page.goto(f"{server.url}/ui/login")
    page.get_by_label("Email").fill(VIEWER)
    page.get_by_label("Password").fill(VIEWER_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/ui/insights$"))
    assert page.locator("#whoami").inner_text() == f"{VIEWER} · viewer"
    assert page.get_by_role("button", name="Relabel").count() == 0


def test_an_editor_sees_the_editing_controls_and_no_admin_ones(
    page: Any, server: LiveServer
) -> None:
    editor = "eve@team.example"
    page.goto(invite(server, editor, "editor"))
    page.get_by_label("New password").fill(VIEWER_PASSWORD)
    page.get_by_label("Again").fill(VIEWER_PASSWORD)
    page.get_by_role("button", name="Set the password and log in").click()
    page.wait_for_url(re.compile(r"/ui/insights$"))
    assert page.locator("#whoami").inner_text() == f"{editor} · editor"
    assert nav_links(page) == ["Insights", "Reports", "Preview"]
    assert page.get_by_role("button", name="Relabel").count() == 3
    topic_page(page, server)
    assert page.get_by_role("button", name="Rename").count() == 1
    assert page.get_by_role("checkbox", name=re.compile("^Split off")).count() >= 1
    for admins_only in ("people", "connection", "audit", "setup"):
        answer = page.goto(f"{server.url}/ui/{admins_only}")
        assert answer.status == 403, admins_only
        assert "This needs the admin role; you are editor." in page.locator("main").inner_text()


def test_an_admin_sees_every_control_and_the_people(page: Any, server: LiveServer) -> None:
    log_in(page, server)
    assert page.locator("#whoami").inner_text() == "admin · admin"
    assert nav_links(page) == [
        "Insights",
        "Reports",
        "Help Scout",
        "Preview",
        "Setup",
        "People",
        "Audit",
    ]
    assert page.get_by_role("button", name="Relabel").count() == 3
    topic_page(page, server)
    assert page.get_by_role("button", name="Rename").count() == 1
    page.get_by_role("link", name="People").click()
    page.wait_for_url(re.compile(r"/ui/people$"))
    page.get_by_label("Email").fill("eddie@team.example")
    page.get_by_label("Role", exact=True).select_option("editor")
    page.get_by_role("button", name="Add and show the invitation link").click()
    shown = page.locator("#shown-value").inner_text()
    assert shown.startswith(f"{server.url}/ui/invitation?token=")
    assert page.locator("tr[data-person='eddie@team.example']").count() == 1
