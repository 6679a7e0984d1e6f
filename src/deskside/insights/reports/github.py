"""Reports as GitHub issues (:class:`GitHubIssues`): one issue per topic, opened on the first
export and updated by later ones (the store remembers which); the token never appears in an
error's message."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from deskside.insights import audit
from deskside.insights.models import (
    ReportExport,
    utcnow,
)
from deskside.insights.reports.formats import to_markdown
from deskside.insights.reports.report import Report
from deskside.insights.store import Store, insert_for

__all__ = [
    "GITHUB_BODY_LIMIT",
    "ExportResult",
    "GitHubError",
    "GitHubIssues",
]

log = logging.getLogger("deskside.insights.reports")

GITHUB_BODY_LIMIT = 60_000
"""Characters of an issue body sent to GitHub (its limit is 65,536); the conversation list is
cut short, with a count of what was left out, to fit."""
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class GitHubError(Exception):
    """GitHub refused or could not be reached; the message never contains the token."""


@dataclass(frozen=True)
class ExportResult:
    number: int
    url: str
    created: bool
    """True when a new issue was opened, False when the topic's issue was updated."""


class GitHubIssues:
    """Reports as issues of ``repository`` (``owner/name``), one issue per topic.

    The first export of a topic opens an issue (labelled ``bug`` or ``feature``) and remembers
    it in the store (``report_exports``, target ``github:owner/name``); later exports update
    its title and body. An issue deleted since is opened anew. Customers' addresses are left
    out of issues unless ``include_customers``. Use ``async with`` or :meth:`aclose`.
    """

    def __init__(
        self,
        repository: str,
        token: str,
        api_url: str = "https://api.github.com",
        *,
        timeout_seconds: float = 20.0,
        include_customers: bool = False,
        by: str = "cli",
    ) -> None:
        """``by``: who exports, as the audit names them."""
        if not _REPOSITORY.match(repository) or ".." in repository:
            raise ValueError(f"{repository!r} is not a GitHub repository: write owner/name")
        if not token.strip():
            raise ValueError("the GitHub token is empty")
        self.repository = repository
        self.api_url = api_url.rstrip("/")
        self.include_customers = include_customers
        self.by = by
        self._token = token
        self._timeout_seconds = timeout_seconds
        self._client = httpx.AsyncClient(
            base_url=self.api_url,
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 5.0)),
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": "deskside-reports",
            },
            follow_redirects=True,
        )

    @property
    def target(self) -> str:
        """How the store names this destination: ``github:owner/name``."""
        return f"github:{self.repository}"

    async def export(self, store: Store, report: Report) -> ExportResult:
        """Open or update the topic's issue; raises :class:`GitHubError`."""
        async with store.read() as session:
            stored = await session.get(ReportExport, (report.topic_id, self.target))
        title = _issue_title(report)
        body = to_markdown(
            report, include_customers=self.include_customers, max_chars=GITHUB_BODY_LIMIT
        )
        issues = f"/repos/{self.repository}/issues"
        if stored is not None and stored.external_id.isdigit():
            number = stored.external_id
            response = await self._send(
                "PATCH", f"{issues}/{number}", {"title": title, "body": body}
            )
            if response.status_code not in (404, 410):
                result = self._result(response, created=False, action=f"update issue #{number}")
                await self._remember(store, report.topic_id, result)
                return result
            log.info(
                "GitHub issue #%s of topic %s is gone; opening a new one", number, report.topic_id
            )
        document = {"title": title, "body": body, "labels": [report.kind]}
        response = await self._send("POST", issues, document)
        result = self._result(response, created=True, action="open an issue")
        await self._remember(store, report.topic_id, result)
        return result

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> GitHubIssues:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _send(self, method: str, path: str, document: Mapping[str, Any]) -> httpx.Response:
        try:
            return await self._client.request(method, path, json=document)
        except httpx.TimeoutException:
            raise GitHubError(
                f"GitHub ({self.api_url}) did not answer within {self._timeout_seconds:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise GitHubError(
                self._scrub(f"cannot reach GitHub at {self.api_url}: {type(exc).__name__}: {exc}")
            ) from None

    def _result(self, response: httpx.Response, *, created: bool, action: str) -> ExportResult:
        if not response.is_success:
            raise GitHubError(self._scrub(self._refusal(response, action)))
        try:
            issue = response.json()
            return ExportResult(
                number=int(issue["number"]), url=str(issue["html_url"]), created=created
            )
        except (ValueError, KeyError, TypeError):
            raise GitHubError(
                f"GitHub answered {response.status_code} to {action} in {self.repository} "
                "without an issue in its body"
            ) from None

    def _refusal(self, response: httpx.Response, action: str) -> str:
        status = response.status_code
        said = _github_message(response)
        where = f"{action} in {self.repository}"
        if status == 401:
            return (
                f"GitHub refused the token (401{said}) trying to {where}: check "
                "[insights.reports] github_token (or GITHUB_TOKEN)"
            )
        if status == 403 or status == 429:
            if response.headers.get("x-ratelimit-remaining") == "0" or status == 429:
                return (
                    f"GitHub's rate limit was hit ({status}{said}) trying to {where}: retry later"
                )
            return (
                f"GitHub forbids this ({status}{said}) trying to {where}: the token needs "
                "write access to the repository's issues"
            )
        if status == 404:
            return (
                f"GitHub found no repository {self.repository} that the token can see (404) "
                f"trying to {action}"
            )
        if status == 410:
            return f"GitHub says it is gone (410{said}) trying to {where}: are issues turned off?"
        if status == 422:
            return f"GitHub rejected the issue (422{said}) trying to {where}"
        return f"GitHub answered {status}{said} trying to {where}"

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***")

    async def _remember(self, store: Store, topic_id: int, result: ExportResult) -> None:
        async with store.session() as session:
            statement = insert_for(session)(ReportExport).values(
                topic_id=topic_id,
                target=self.target,
                external_id=str(result.number),
                url=result.url,
                exported_at=utcnow(),
            )
            await session.execute(
                statement.on_conflict_do_update(
                    index_elements=["topic_id", "target"],
                    set_={
                        "external_id": statement.excluded.external_id,
                        "url": statement.excluded.url,
                        "exported_at": statement.excluded.exported_at,
                    },
                )
            )
            detail = f"topic {topic_id} to {self.target} #{result.number}"
            audit.record(session, self.by, "report_exported", detail)


def _issue_title(report: Report) -> str:
    title = " ".join(report.title.split()) or f"{report.kind.capitalize()} topic {report.topic_id}"
    return title if len(title) <= 250 else title[:249].rstrip() + "…"


def _github_message(response: httpx.Response) -> str:
    """``: <GitHub's message>`` (with its validation errors), shortened; ``""`` when none."""
    try:
        document = response.json()
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    parts = [str(document.get("message") or "")]
    for error in document.get("errors") or []:
        if isinstance(error, dict):
            parts.append(str(error.get("message") or f"{error.get('field')} {error.get('code')}"))
        else:
            parts.append(str(error))
    text = "; ".join(part for part in parts if part).strip()
    return f": {text[:300]}" if text else ""
