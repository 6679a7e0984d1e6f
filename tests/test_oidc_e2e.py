"""Single sign-on in a real browser (Debian's Chromium through Playwright, against a real
``deskside serve`` and the local OpenID provider of :mod:`test_oidc`): a newcomer from an
allowed domain clicks "Sign in with SSO", comes back signed in as a viewer and sees no controls
beyond a viewer's. Skips like :mod:`test_web_e2e` without Playwright or Chromium."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from fake_http import FakeHTTPServer
from test_oidc import CLIENT_ID, CLIENT_SECRET, LocalProvider
from test_people_e2e import nav_links
from test_web_e2e import chromium_browser, live_server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium_browser() as found:
        yield found


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def test_a_newcomer_signs_in_with_sso_and_sees_a_viewers_controls(
    page: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with FakeHTTPServer() as idp:
        provider = LocalProvider(idp)
        table = (
            f'[ui.oidc]\nissuer = "{provider.issuer}"\nclient_id = "{CLIENT_ID}"\n'
            f'client_secret = "{CLIENT_SECRET}"\nallowed_domains = ["team.example"]\n'
            'default_role = "viewer"\n\n'
        )
        directory = tmp_path_factory.mktemp("oidc-e2e")
        with live_server(directory, config_extra=table) as server:
            page.goto(f"{server.url}/ui/login")
            page.get_by_role("link", name="Sign in with SSO").click()
            page.wait_for_url(re.compile(r"/ui/insights$"))
            assert page.locator("#whoami").inner_text() == f"{provider.email} · viewer"
            assert nav_links(page) == ["Insights", "Reports", "Preview"]
            assert page.locator("table.conversations tbody tr").count() == 3
            assert page.get_by_role("button", name="Relabel").count() == 0
            answer = page.goto(f"{server.url}/ui/people")
            assert answer.status == 403
