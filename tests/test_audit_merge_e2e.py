"""The Audit page and merging topics in a real browser (Debian's Chromium through Playwright,
against a real ``deskside serve``): an admin reads the audit, filters it by action and
downloads it as CSV, which an editor may not; a person merges two topics after confirming and
undoes the merge. Skips like :mod:`test_web_e2e` without Playwright or Chromium."""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from test_people_e2e import accept_invitation, invite
from test_web_e2e import LiveServer, deliver_conversations, live_server, log_in

EDITOR = "eddie@team.example"
EDITOR_PASSWORD = "eddie-has-a-long-password"
PHOTO_CRASH = ("Photo upload", "The app crashes every time I upload a photo, error 500.")


@pytest.fixture(scope="module")
def server(chromium: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("audit-merge-e2e")) as running:
        yield running


def audit_actions(page: Any) -> list[str]:
    return [row.get_attribute("data-action") for row in page.locator("#audit tbody tr").all()]


def relabel(page: Any, server: LiveServer, conversation_id: int, label: str) -> None:
    """Relabel a conversation on the Insights page, once the classifier has labelled it."""
    deadline = time.monotonic() + 60
    while True:
        page.goto(f"{server.url}/ui/insights")
        row = page.locator(f"tr[data-conversation='{conversation_id}']")
        if row.get_by_role("button", name="Relabel").count():
            break
        assert time.monotonic() < deadline, server.log.read_text()
        page.wait_for_timeout(300)
    row.locator("select").select_option(label)
    row.get_by_role("button", name="Relabel").click()
    page.wait_for_url(re.compile(rf"relabelled={conversation_id}"))


def test_an_admin_reads_filters_and_downloads_the_audit(
    chromium_page: Any, chromium: Any, server: LiveServer, tmp_path: Path
) -> None:
    log_in(chromium_page, server)
    relabel(chromium_page, server, 3, "docs")
    chromium_page.get_by_role("link", name="Audit").click()
    chromium_page.wait_for_url(re.compile(r"/ui/audit$"))
    actions = audit_actions(chromium_page)
    assert {"login", "relabel"} <= set(actions)
    assert "conversation 3 to docs" in chromium_page.locator("#audit").inner_text()

    chromium_page.get_by_label("Action").select_option("relabel")
    chromium_page.get_by_role("button", name="Filter").click()
    chromium_page.wait_for_url(re.compile(r"action=relabel"))
    assert set(audit_actions(chromium_page)) == {"relabel"}

    with chromium_page.expect_download() as started:
        chromium_page.locator("#audit-csv").click()
    saved = tmp_path / "audit.csv"
    started.value.save_as(saved)
    with saved.open(newline="", encoding="utf-8") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["id", "at", "workspace", "actor", "action", "detail"]
    assert ["ui:admin", "relabel", "conversation 3 to docs"] in [row[3:] for row in rows[1:]]
    assert {row[4] for row in rows[1:]} == {"relabel"}  # the filter holds for the download

    # an editor gets the refusal page
    link = invite(server, EDITOR, "editor")
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    editor = context.new_page()
    accept_invitation(editor, link, EDITOR_PASSWORD)
    answer = editor.goto(f"{server.url}/ui/audit")
    assert answer.status == 403
    assert "This needs the admin role; you are editor." in editor.locator("main").inner_text()
    assert editor.locator("#audit").count() == 0
    context.close()


def bug_topic_of(page: Any, server: LiveServer, conversation_id: int) -> str:
    """The URL of the topic ``conversation_id`` is in, once it is labelled bug (polling)."""
    deadline = time.monotonic() + 60
    while True:
        page.goto(f"{server.url}/ui/insights")
        row = page.locator(f"tr[data-conversation='{conversation_id}']")
        link = row.locator("a[href*='/ui/topics/']")
        if link.count() and row.locator("select").input_value() == "bug":
            return f"{server.url}{link.get_attribute('href')}"
        assert time.monotonic() < deadline, server.log.read_text()
        page.wait_for_timeout(300)


def topic_name(page: Any) -> str:
    """The topic page's name (its heading without the badges)."""
    return str(page.locator("h1").evaluate("h => h.firstChild.textContent")).strip()


def test_a_merge_is_confirmed_shown_and_undone(chromium_page: Any, server: LiveServer) -> None:
    log_in(chromium_page, server)
    deliver_conversations(server.url, {4: PHOTO_CRASH})
    first_url, second_url = (
        bug_topic_of(chromium_page, server, 1),
        bug_topic_of(chromium_page, server, 4),
    )
    if first_url == second_url:  # grouped together: split the new one off
        chromium_page.goto(first_url)
        chromium_page.locator("#pick-4").check()
        chromium_page.get_by_label("Split the ticked conversations into a new topic named").fill(
            "Second crash"
        )
        chromium_page.get_by_role("button", name="Split").click()
        chromium_page.wait_for_url(re.compile(r"done=split"))
        second_url = chromium_page.url.split("?")[0]
    chromium_page.goto(first_url)
    first = topic_name(chromium_page)
    chromium_page.goto(second_url)
    second = topic_name(chromium_page)

    # the target is picked (none is preselected), then confirmed with both topics shown
    choice = chromium_page.get_by_label("Merge into")
    assert choice.input_value() == ""
    target = choice.locator("option", has_text=re.compile(rf"^{re.escape(first)} \(\d+\)$"))
    choice.select_option(target.get_attribute("value"))
    chromium_page.get_by_role("button", name="Merge…").click()
    chromium_page.wait_for_url(re.compile(r"/merge$"))
    assert chromium_page.locator("#merge-from").inner_text() == second
    assert chromium_page.locator("#merge-into-name").inner_text() == first
    chromium_page.get_by_role("button", name=f"Merge into “{first}”").click()
    chromium_page.wait_for_url(re.compile(r"done=merge"))
    assert chromium_page.url.startswith(first_url)
    assert "Merged into this topic." in chromium_page.locator("#flash").inner_text()
    assert chromium_page.locator("#topic-conversations").inner_text() == "2"
    assert chromium_page.locator("tr[data-conversation='4']").count() == 1

    chromium_page.get_by_role("button", name="Undo the merge").click()
    chromium_page.wait_for_url(re.compile(r"done=unmerged"))
    assert chromium_page.url.startswith(second_url)
    assert "The merge is undone" in chromium_page.locator("#flash").inner_text()
    assert topic_name(chromium_page) == second
    assert chromium_page.locator("tr[data-conversation='4']").count() == 1
    chromium_page.goto(first_url)
    assert topic_name(chromium_page) == first
    assert chromium_page.locator("tr[data-conversation='4']").count() == 0
    chromium_page.goto(f"{server.url}/ui/topics")
    names = chromium_page.locator("main a.topic__title").all_inner_texts()
    assert first in names and second in names
