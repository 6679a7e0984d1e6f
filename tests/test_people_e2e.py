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

from test_web_e2e import LiveServer, live_server, log_in

DESKSIDE = [sys.executable, "-m", "deskside"]
VIEWER = "vera@team.example"
VIEWER_PASSWORD = "vera-has-a-long-password"


@pytest.fixture(scope="module")
def server(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("people-e2e")) as running:
        yield running


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


def accept_invitation(page: Any, link: str, password: str) -> None:
    """Open an invitation ``link``, set ``password`` and arrive logged in on the Insights page."""
    page.goto(link)
    page.get_by_label("New password").fill(password)
    page.get_by_label("Again").fill(password)
    page.get_by_role("button", name="Set the password and log in").click()
    page.wait_for_url(re.compile(r"/ui/insights$"))


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


def test_a_viewer_sees_no_controls_of_other_roles(chromium_page: Any, server: LiveServer) -> None:
    link = invite(server, VIEWER, "viewer")
    accept_invitation(chromium_page, link, VIEWER_PASSWORD)
    assert chromium_page.locator("#whoami").inner_text() == f"{VIEWER} · viewer"
    assert nav_links(chromium_page) == ["Insights", "Reports", "Preview"]
    assert chromium_page.locator("table.conversations tbody tr").count() == 3  # reads the dashboard
    assert chromium_page.get_by_role("button", name="Relabel").count() == 0
    topic_page(chromium_page, server)
    assert chromium_page.get_by_role("button", name="Rename").count() == 0
    assert chromium_page.get_by_role("button", name="Split").count() == 0
    answer = chromium_page.goto(f"{server.url}/ui/people")
    assert answer.status == 403
    assert (
        "This needs the admin role; you are viewer." in chromium_page.locator("main").inner_text()
    )

    # The link worked once
    chromium_page.get_by_role("button", name="Log out", exact=True).click()
    chromium_page.wait_for_url(re.compile(r"/ui/login$"))
    chromium_page.goto(link)
    assert "not valid" in chromium_page.get_by_role("alert").inner_text()

    # Logged out, the viewer logs in with their email and password
    chromium_page.goto(f"{server.url}/ui/login")
    chromium_page.get_by_label("Email").fill(VIEWER)
    chromium_page.get_by_label("Password").fill(VIEWER_PASSWORD)
    chromium_page.get_by_role("button", name="Log in").click()
    chromium_page.wait_for_url(re.compile(r"/ui/insights$"))
    assert chromium_page.locator("#whoami").inner_text() == f"{VIEWER} · viewer"
    assert chromium_page.get_by_role("button", name="Relabel").count() == 0


def test_an_editor_sees_the_editing_controls_and_no_admin_ones(
    chromium_page: Any, server: LiveServer
) -> None:
    editor = "eve@team.example"
    accept_invitation(chromium_page, invite(server, editor, "editor"), VIEWER_PASSWORD)
    assert chromium_page.locator("#whoami").inner_text() == f"{editor} · editor"
    assert nav_links(chromium_page) == ["Insights", "Reports", "Preview"]
    assert chromium_page.get_by_role("button", name="Relabel").count() == 3
    topic_page(chromium_page, server)
    assert chromium_page.get_by_role("button", name="Rename").count() == 1
    assert chromium_page.get_by_role("checkbox", name=re.compile("^Split off")).count() >= 1
    for admins_only in ("people", "connection", "audit", "setup"):
        answer = chromium_page.goto(f"{server.url}/ui/{admins_only}")
        assert answer.status == 403, admins_only
        assert (
            "This needs the admin role; you are editor."
            in chromium_page.locator("main").inner_text()
        )


def test_an_admin_sees_every_control_and_the_people(chromium_page: Any, server: LiveServer) -> None:
    log_in(chromium_page, server)
    assert chromium_page.locator("#whoami").inner_text() == "admin · admin"
    assert nav_links(chromium_page) == [
        "Insights",
        "Reports",
        "Help Scout",
        "Preview",
        "Setup",
        "People",
        "Audit",
    ]
    assert chromium_page.get_by_role("button", name="Relabel").count() == 3
    topic_page(chromium_page, server)
    assert chromium_page.get_by_role("button", name="Rename").count() == 1
    chromium_page.get_by_role("link", name="People").click()
    chromium_page.wait_for_url(re.compile(r"/ui/people$"))
    chromium_page.get_by_label("Email").fill("eddie@team.example")
    chromium_page.get_by_label("Role", exact=True).select_option("editor")
    chromium_page.get_by_role("button", name="Add and show the invitation link").click()
    shown = chromium_page.locator("#shown-value").inner_text()
    assert shown.startswith(f"{server.url}/ui/invitation?token=")
    assert chromium_page.locator("tr[data-person='eddie@team.example']").count() == 1
