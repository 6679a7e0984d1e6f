"""Single sign-on in a real browser (Debian's Chromium through Playwright, against a real
``deskside serve`` and the local OpenID provider of :mod:`test_oidc`): a newcomer from an
allowed domain clicks "Sign in with SSO", comes back signed in as a viewer and sees no controls
beyond a viewer's. Skips like :mod:`test_web_e2e` without Playwright or Chromium."""

from __future__ import annotations

import re
from typing import Any

import pytest

from fake_http import FakeHTTPServer
from test_oidc import CLIENT_ID, CLIENT_SECRET, LocalProvider
from test_people_e2e import nav_links
from test_web_e2e import live_server


def test_a_newcomer_signs_in_with_sso_and_sees_a_viewers_controls(
    chromium_page: Any, tmp_path_factory: pytest.TempPathFactory
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
            chromium_page.goto(f"{server.url}/ui/login")
            chromium_page.get_by_role("link", name="Sign in with SSO").click()
            chromium_page.wait_for_url(re.compile(r"/ui/insights$"))
            assert chromium_page.locator("#whoami").inner_text() == f"{provider.email} · viewer"
            assert nav_links(chromium_page) == ["Insights", "Reports", "Preview"]
            assert chromium_page.locator("table.conversations tbody tr").count() == 3
            assert chromium_page.get_by_role("button", name="Relabel").count() == 0
            answer = chromium_page.goto(f"{server.url}/ui/people")
            assert answer.status == 403
