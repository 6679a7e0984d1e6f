"""The insights JSON API under ``/api/insights`` (the dashboard reads it; scripts may too).

Every route needs ``Authorization: Bearer <token>`` (``[admin] token``, or a person's API
token) or a web UI session, of at least the role :mod:`deskside.web.roles` names, and acts in
the caller's workspace (:func:`caller_workspace`): another workspace's ids are unknown here
(404). Reads come from the workspace's store; the actions (relabel, rename, merge, split,
export) are what a person decides, and stick; ``forget`` erases people for good.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable
from datetime import timedelta
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from deskside.errors import BadRequest, HTTPError, NotFound, ServiceUnavailable
from deskside.insights import audit
from deskside.insights.analysis import merges
from deskside.insights.analysis.engine import UnknownConversation, UnknownTopic
from deskside.insights.analysis.queries import (
    ConversationItem,
    TopicSummary,
    event_counts,
    label_counts,
    labelled_conversations,
    topic_summaries,
)
from deskside.insights.models import RowId, utcnow
from deskside.insights.privacy import erasure
from deskside.insights.reports import formats
from deskside.insights.reports import github as github_issues
from deskside.insights.reports import report as reporting
from deskside.insights.service import InsightsService, WorkspaceService, live_workspace
from deskside.lookup import normalise_emails
from deskside.signing import bearer_token
from deskside.web.guard import GuardedRoute, identity_of

__all__ = ["API_PREFIX", "Live", "caller", "caller_workspace", "insights_api"]

API_PREFIX = "/api/insights"
T = TypeVar("T")
Label = Annotated[str, Field(pattern=r"^[^\x00]*$")]
"""A label to filter by: any text but a NUL character, which PostgreSQL cannot compare."""


class Conflict(HTTPError):
    """The change cannot be made in the state things are in (a merge no longer undoable)."""

    status = 409


class BadGateway(HTTPError):
    """A service deskside called (GitHub) failed."""

    status = 502


class LabelChange(BaseModel):
    label: str = Field(description="bug, feature, docs, question or other")


class TopicDetail(TopicSummary):
    members: list[ConversationItem]


class Rename(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class Merge(BaseModel):
    into: RowId


class Split(BaseModel):
    conversation_ids: list[RowId] = Field(min_length=1)
    name: str | None = Field(default=None, max_length=200)


class WeekCounts(BaseModel):
    week: str
    """The Monday that starts the week, ``YYYY-MM-DD``."""
    counts: dict[str, int]


class ForgetRequest(BaseModel):
    emails: list[str] = Field(min_length=1, max_length=100, description="addresses to erase")


class Erasure(BaseModel):
    addresses: int
    """How many people (addresses) were erased."""
    rows: int
    """Rows removed or rewritten, in total."""
    removed: dict[str, int]
    """Rows by what they were: a table's name, ``redacted``, ``topics_renamed``,
    ``exports_to_rewrite``, ``cached_answers``."""


class Overview(BaseModel):
    conversations: int
    labels: dict[str, int]
    weeks: list[WeekCounts]
    """New conversations per week and label, oldest first."""
    events: dict[str, int]


async def caller_workspace(request: Request) -> WorkspaceService:
    """The workspace the caller acts in (:attr:`deskside.web.guard.Identity.workspace`): 404
    when there is no such workspace (any more), 503 while its database is not open."""
    found = await live_workspace(request.app.state.insights, identity_of(request).workspace)
    if isinstance(found, WorkspaceService):
        return found
    status, message = found
    raise (NotFound if status == 404 else ServiceUnavailable)(message)


Live = Annotated[WorkspaceService, Depends(caller_workspace)]
"""A route's parameter: the caller's workspace."""


def insights_api(insights: InsightsService) -> APIRouter:
    """The router. Callers need a token, or a web UI session (with its CSRF token for
    changes), of the route's role; each route works in the caller's workspace."""
    router = APIRouter(prefix=API_PREFIX, route_class=GuardedRoute, tags=["insights"])

    @router.get("/overview")
    async def overview(live: Live, weeks: int = Query(12, ge=1, le=104)) -> Overview:
        """Counts by label, and new conversations per week and label (the last ``weeks``
        weeks, this one included; weeks without any are left out)."""
        async with live.store.read() as session:
            counts = await label_counts(session, weeks=weeks)
            events = await event_counts(session)
        return Overview(
            conversations=counts.conversations,
            labels=counts.labels,
            weeks=[
                WeekCounts(week=monday.isoformat(), counts=per_label)
                for monday, per_label in counts.weeks
                if per_label
            ],
            events=events,
        )

    @router.get("/conversations")
    async def conversations(
        live: Live,
        label: Label | None = None,
        topic: RowId | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[ConversationItem]:
        """The newest conversations first, with their label and topic."""
        async with live.store.read() as session:
            return await labelled_conversations(session, label=label, topic=topic, limit=limit)

    @router.post("/conversations/{conversation_id}/label")
    async def relabel(
        live: Live, request: Request, conversation_id: RowId, change: LabelChange
    ) -> dict[str, Any]:
        """An agent's label: it sticks, and the classifier learns from it."""
        try:
            label = await live.analysis.relabel(conversation_id, change.label, by=caller(request))
        except UnknownConversation:
            raise NotFound(f"no conversation {conversation_id}") from None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return {"id": conversation_id, "label": label, "labelled_by": "agent"}

    async def topic_items(
        live: WorkspaceService, label: str | None = None, ids: list[int] | None = None
    ) -> list[TopicSummary]:
        notes = await live.trends()
        async with live.store.read() as session:
            return await topic_summaries(session, notes, label=label, ids=ids)

    @router.get("/topics")
    async def topics(
        live: Live,
        label: Label | None = None,
        trending: bool = False,
        min_customers: int = Query(1, ge=1),
    ) -> list[TopicSummary]:
        """Topics, trending ones first, then by customers."""
        found = await topic_items(live, label)
        return [t for t in found if t.customers >= min_customers and (t.trending or not trending)]

    @router.get("/topics/{topic_id}")
    async def topic(live: Live, topic_id: RowId) -> TopicDetail:
        """A topic and its conversations (newest first)."""
        found = await topic_items(live, ids=[topic_id])
        if not found:
            raise NotFound(f"no topic {topic_id}")
        members = await conversations(live, topic=topic_id, limit=1000)
        return TopicDetail(**found[0].model_dump(), members=members)

    @router.post("/topics/{topic_id}/rename")
    async def rename(
        live: Live, request: Request, topic_id: RowId, change: Rename
    ) -> dict[str, Any]:
        """A person's name for the topic; regrouping keeps it."""
        await _decide(live.analysis.rename_topic(topic_id, change.name, by=caller(request)))
        return {"id": topic_id, "name": " ".join(change.name.split())}

    @router.post("/topics/{topic_id}/merge")
    async def merge(live: Live, request: Request, topic_id: RowId, change: Merge) -> dict[str, Any]:
        """Merge this topic into another of the same label, for good unless undone (see
        ``undo-merge``) before ``undo_until`` (ISO 8601, UTC)."""
        started = utcnow()
        merge = await _decide(live.analysis.merge_topics(topic_id, change.into, by=caller(request)))
        until = started + timedelta(minutes=merges.UNDO_MINUTES)
        return {"id": change.into, "merged": topic_id, "merge": merge, "undo_until": until}

    @router.post("/topics/{topic_id}/undo-merge")
    async def undo_merge(live: Live, request: Request, topic_id: RowId) -> list[TopicSummary]:
        """Undo the latest merge of this topic (merged away or merged into) made within the
        last 10 minutes: both topics as they were, with their names and conversations. 409
        when there is none to undo (none, undone already, too late, or the topics changed)."""
        try:
            found = await merges.latest_merge(live.store, topic_id)
        except merges.UnknownTopic as exc:
            raise NotFound(str(exc)) from None
        except ValueError as exc:
            raise Conflict(str(exc)) from None
        try:
            await live.analysis.undo_merge(found.id, by=caller(request))
        except (LookupError, ValueError) as exc:  # undone meanwhile, or the topics changed
            raise Conflict(f"cannot undo: {exc}") from None
        return await topic_items(live, ids=[found.source, found.target])

    @router.post("/topics/{topic_id}/split")
    async def split(live: Live, request: Request, topic_id: RowId, change: Split) -> dict[str, Any]:
        """Move some conversations out into a new topic, for good."""
        by = caller(request)
        new_id = await _decide(
            live.analysis.split_topic(topic_id, change.conversation_ids, change.name, by=by)
        )
        return {"id": new_id, "from": topic_id}

    @router.get("/reports", response_model=None)
    async def reports(
        live: Live,
        trending: bool = False,
        format: Literal["json", "markdown", "csv"] = "json",
    ) -> list[reporting.Report] | Response:
        """A report per bug and feature topic (trending ones first)."""
        notes = await live.trends()
        found = await reporting.build_reports(live.store, trending=notes)
        if trending:
            found = [report for report in found if report.trending]
        if format == "markdown":
            body = "\n\n---\n\n".join(formats.to_markdown(r) for r in found)
            return PlainTextResponse(body, media_type="text/markdown; charset=utf-8")
        if format == "csv":
            return PlainTextResponse(formats.to_csv(found), media_type="text/csv; charset=utf-8")
        return found

    @router.post("/reports/{topic_id}/export/github")
    async def export_github(live: Live, request: Request, topic_id: RowId) -> dict[str, Any]:
        """Open the topic's GitHub issue, or update the one opened before."""
        options = live.settings.reports
        token = (
            options.github_token.get_secret_value()
            if options.github_token is not None
            else os.environ.get("GITHUB_TOKEN", "")
        )
        if not options.github_repository or not token:
            raise BadRequest("set [insights.reports] github_repository and github_token")
        found = await reporting.build_reports(
            live.store, trending=await live.trends(), topic_ids=[topic_id]
        )
        if not found:
            raise NotFound(f"no bug or feature report for topic {topic_id}")
        try:
            async with github_issues.GitHubIssues(
                options.github_repository, token, options.github_api_url, by=caller(request)
            ) as github:
                result = await github.export(live.store, found[0])
                await erasure.rewrite_erased_exports_quietly(
                    live.store, github, exported=[topic_id]
                )
        except github_issues.GitHubError as exc:
            raise BadGateway(str(exc)) from None
        return {"number": result.number, "url": result.url, "created": result.created}

    @router.post("/forget")
    async def forget(live: Live, request: Request, asked: ForgetRequest) -> Erasure:
        """Erase people for good (GDPR art. 17): everything stored about each address, and
        this server's cached sidebar answers about them; a tombstone keeps them from being
        stored again, and the audit records who asked, never the addresses."""
        addresses = []
        for position, email in enumerate(asked.emails):
            found = normalise_emails([email], fold_plus=False)
            if not found:
                raise BadRequest(f"emails[{position}] is not an email address")
            addresses.append(found[0])
        cache = request.app.state.service.resolver.cache
        removed = await erasure.forget(live.store, addresses, by=caller(request), cache=cache)
        return Erasure(addresses=len(set(addresses)), rows=removed.total, removed=removed.counts)

    @router.get("/audit", response_model=None)
    async def audit_log(
        live: Live,
        who: str | None = Query(None, max_length=100),
        action: str | None = Query(None, max_length=20, pattern=r"^[a-z_]*$"),
        since: str | None = Query(None, max_length=10, description="YYYY-MM-DD, UTC"),
        until: str | None = Query(None, max_length=10, description="YYYY-MM-DD, UTC, included"),
        format: Literal["json", "csv"] = "json",
        limit: int = Query(1000, ge=1, le=10_000),
    ) -> list[dict[str, Any]] | Response:
        """Every change people made, newest first (admins): who, when, what, workspace."""
        try:
            wanted = audit.audit_filter(who, action, since, until)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        found = await audit.workspace_entries(live.store, insights.store, wanted, limit=limit)
        if format == "csv":
            return PlainTextResponse(audit.to_csv(found), media_type="text/csv; charset=utf-8")
        return audit.to_json(found)

    return router


def caller(request: Request) -> str:
    """Who asks, as the audit names them: for the ``[admin] token``, ``api:token-<the first 8
    hex digits of its SHA-256>``; else ``api:<email>`` for a person's token, ``ui:<email>`` or
    ``ui:admin`` for a web UI session."""
    identity = identity_of(request)
    token = bearer_token(request.headers.get("authorization"))
    if token is not None and identity.session is None and identity.person_id is None:
        return "api:token-" + hashlib.sha256(token.encode()).hexdigest()[:8]
    return identity.actor


async def _decide(decision: Awaitable[T]) -> T:
    """Run a person's decision; unknown topics are 404, impossible ones 400."""
    try:
        return await decision
    except UnknownTopic as exc:
        raise NotFound(str(exc)) from None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
