"""The audit trail: every change people make (relabel, rename, split, merge, people, tokens,
logins, erasures) recorded once with who, when, what and workspace, whichever way it was made
(the web UI or the API); admins read it on the Audit page with filters and download it as CSV
and JSON; nothing of customers' messages or addresses is in it."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from deskside.config import Settings
from deskside.insights.models import Conversation, utcnow
from deskside.web import dashboard
from deskside.web.roles import Role
from fake_github import FakeGitHub
from helpers import demo_settings, parse_html
from test_people import (
    ADMIN,
    PASSWORD,
    client_of,
    log_in,
    person_client,
    running,
    session_csrf,
)
from test_web import CONVERSATIONS, seed_conversations

pytestmark = pytest.mark.anyio

ADMIN_TOKEN = "people-admin-token"
"""The test config's [admin] token."""


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str) -> Settings:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    return demo_settings(monkeypatch, tmp_path, database, replace={"[server]\n": ADMIN})


def audit_rows(html: str) -> list[list[str]]:
    """The Audit page's table: when, who, action, what, workspace per row."""
    return [
        [cell.text().strip() for cell in row.find_all("td")]
        for row in parse_html(html).find_all("tr")
        if "data-action" in row.attrs
    ]


async def test_every_change_is_audited_once_with_who_and_what(settings: Settings) -> None:
    async with running(settings) as (app, people):
        editor = await person_client(app, people, "editor@team.example", Role.editor)
        await seed_conversations(editor, settings)
        store = app.state.insights.store
        async with store.read() as session:
            addresses = set(await session.scalars(select(Conversation.customer_email)))
        [bug] = await dashboard.topics(store, {}, label="bug")
        csrf = await session_csrf(editor)
        relabelled = await editor.post(
            "/ui/insights/conversations/3/label", data={"csrf_token": csrf, "label": "docs"}
        )
        assert relabelled.status_code == 303
        renamed = await editor.post(
            f"/ui/topics/{bug.id}/rename", data={"csrf_token": csrf, "name": "Photo uploads"}
        )
        assert renamed.status_code == 303
        _, token = await people.create_token("editor@team.example", "ci", by="cli")
        by_api = await editor.post(
            f"/api/insights/topics/{bug.id}/rename",
            json={"name": "Photo crashes"},
            headers={"authorization": f"Bearer {token}"},
        )
        assert by_api.status_code == 200

        async with client_of(app) as admin:
            assert (await log_in(admin, "admin", PASSWORD)).status_code == 303
            page = await admin.get("/ui/audit")
            assert page.status_code == 200
            rows = audit_rows(page.text)
            changes = [row[1:4] for row in rows if row[2] in ("relabel", "topic_renamed")]
            assert changes == [  # the newest first, in the one workspace there is
                ["api:editor@team.example", "topic_renamed", f"topic {bug.id} to 'Photo crashes'"],
                ["ui:editor@team.example", "topic_renamed", f"topic {bug.id} to 'Photo uploads'"],
                ["ui:editor@team.example", "relabel", "conversation 3 to docs"],
            ]
            assert {row[4] for row in rows} == {"default"}
            assert {"invitation_used", "token_created", "login"} <= {row[2] for row in rows}
            for text in (*CONVERSATIONS.values(), *filter(None, addresses)):
                assert text not in page.text

            # the filters: by action, by who, by days
            renames = await admin.get("/ui/audit", params={"action": "topic_renamed"})
            assert [row[2] for row in audit_rows(renames.text)] == ["topic_renamed"] * 2
            by_api_only = await admin.get("/ui/audit", params={"who": "API:editor"})
            assert [row[1] for row in audit_rows(by_api_only.text)] == ["api:editor@team.example"]
            for nobody in ("_", "%", "editor_team"):  # searched as typed, not as a pattern
                none = await admin.get("/ui/audit", params={"who": nobody})
                assert audit_rows(none.text) == [], nobody
            today = utcnow().date()
            yesterday = (today - timedelta(days=1)).isoformat()
            until_yesterday = await admin.get("/ui/audit", params={"until": yesterday})
            assert audit_rows(until_yesterday.text) == []
            assert "No entries match these filters" in until_yesterday.text
            from_today = await admin.get(
                "/ui/audit", params={"since": today.isoformat(), "until": today.isoformat()}
            )
            assert len(audit_rows(from_today.text)) == len(rows)
            bad = await admin.get("/ui/audit", params={"since": "last tuesday"})
            assert bad.status_code == 400 and "not a date" in bad.text

            # the downloads hold the filtered entries
            query = {"action": "topic_renamed"}
            assert 'href="/ui/audit.csv?action=topic_renamed"' in renames.text
            table = await admin.get("/ui/audit.csv", params=query)
            assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
            assert "attachment" in table.headers["content-disposition"]
            read = list(csv.DictReader(io.StringIO(table.text)))
            assert [(r["actor"], r["action"], r["workspace"]) for r in read] == [
                ("api:editor@team.example", "topic_renamed", "default"),
                ("ui:editor@team.example", "topic_renamed", "default"),
            ]
            document = await admin.get("/ui/audit.json", params=query)
            assert [entry["detail"] for entry in json.loads(document.text)] == [
                f"topic {bug.id} to 'Photo crashes'",
                f"topic {bug.id} to 'Photo uploads'",
            ]
            everything = (await admin.get("/ui/audit.csv")).text
            for text in (*CONVERSATIONS.values(), *filter(None, addresses)):
                assert text not in everything

        # the admin API, for scripts
        api = await editor.get(
            "/api/insights/audit",
            params={"action": "relabel"},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert api.status_code == 200
        assert [(e["actor"], e["detail"]) for e in api.json()] == [
            ("ui:editor@team.example", "conversation 3 to docs")
        ]
        as_csv = await editor.get(
            "/api/insights/audit",
            params={"format": "csv", "who": "ui:"},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert as_csv.status_code == 200 and as_csv.text.startswith("id,at,workspace,actor")
        bad_day = await editor.get(
            "/api/insights/audit",
            params={"until": "2026-13-01"},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert bad_day.status_code == 400
        # an editor may change topics but not read the audit
        assert (await editor.get("/ui/audit")).status_code == 403
        assert (await editor.get("/ui/audit.csv")).status_code == 403
        refused = await editor.get(
            "/api/insights/audit", headers={"authorization": f"Bearer {token}"}
        )
        assert refused.status_code == 403
        await editor.aclose()


async def test_an_export_to_github_is_audited(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    with FakeGitHub(token="gh-token", repository="acme/app") as github:
        reports = (
            "[insights.reports]\n"
            'github_repository = "acme/app"\n'
            'github_token = "gh-token"\n'
            f'github_api_url = "{github.api_url}"\n\n'
            "[insights.helpscout]"
        )
        replace = {"[server]\n": ADMIN, "[insights.helpscout]": reports}
        settings = demo_settings(monkeypatch, tmp_path, database, replace=replace)
        async with running(settings) as (app, people):
            editor = await person_client(app, people, "editor@team.example", Role.editor)
            await seed_conversations(editor, settings)
            [bug] = await dashboard.topics(app.state.insights.store, {}, label="bug")
            exported = await editor.post(
                f"/ui/reports/{bug.id}/export/github",
                data={"csrf_token": await session_csrf(editor)},
            )
            assert exported.status_code == 303
            found = await editor.get(
                "/api/insights/audit",
                params={"action": "report_exported"},
                headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            )
            [entry] = found.json()
            assert entry["actor"] == "ui:editor@team.example"
            assert entry["detail"] == f"topic {bug.id} to github:acme/app #1"
            await editor.aclose()


async def test_disconnecting_help_scout_is_audited(settings: Settings) -> None:
    async with running(settings) as (app, _people), client_of(app) as admin:
        assert (await log_in(admin, "admin", PASSWORD)).status_code == 303
        token = await session_csrf(admin)
        gone = await admin.post("/ui/connection/disconnect", data={"csrf_token": token})
        assert gone.headers["location"] == "/ui/connection?done=disconnect"
        page = await admin.get("/ui/audit", params={"action": "helpscout_disconnect"})
        assert [row[1:4] for row in audit_rows(page.text)] == [
            ["ui:admin", "helpscout_disconnect", "Help Scout"]
        ]
