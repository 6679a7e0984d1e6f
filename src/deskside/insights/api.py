"""The insights JSON API under ``/api/insights`` (the dashboard reads it; scripts may too).

Every route needs ``Authorization: Bearer <[admin] token>`` or a web UI session. Reads come
from the store; the actions (relabel, rename, merge, split, export) are what a person decides,
and stick.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import String, cast, func, select

from deskside.config import Settings
from deskside.errors import BadRequest, HTTPError
from deskside.insights import reports as reporting
from deskside.insights.analysis import Analysis, UnknownConversation, UnknownTopic
from deskside.insights.classify import LABELS
from deskside.insights.models import Classification, Conversation, Topic, TopicMember, utcnow
from deskside.insights.queries import ConversationItem, event_counts, labelled_conversations
from deskside.insights.store import Store
from deskside.web.auth import require_admin

__all__ = ["API_PREFIX", "insights_api"]

API_PREFIX = "/api/insights"
T = TypeVar("T")


class NotFound(HTTPError):
    status = 404


class BadGateway(HTTPError):
    """A service deskside called (GitHub) failed."""

    status = 502


class LabelChange(BaseModel):
    label: str = Field(description="bug, feature, docs, question or other")


class TopicItem(BaseModel):
    id: int
    label: str
    name: str
    named_by_person: bool
    conversations: int
    customers: int
    """Distinct customers (by address, else Help Scout id)."""
    first_seen: datetime | None
    last_seen: datetime | None
    trending: bool
    trend_note: str | None


class TopicDetail(TopicItem):
    members: list[ConversationItem]


class Rename(BaseModel):
    name: str = Field(min_length=1, max_length=200)


class Merge(BaseModel):
    into: int


class Split(BaseModel):
    conversation_ids: list[int] = Field(min_length=1)
    name: str | None = Field(default=None, max_length=200)


class WeekCounts(BaseModel):
    week: str
    """The Monday that starts the week, ``YYYY-MM-DD``."""
    counts: dict[str, int]


class Overview(BaseModel):
    conversations: int
    labels: dict[str, int]
    weeks: list[WeekCounts]
    """New conversations per week and label, oldest first."""
    events: dict[str, int]


def insights_api(
    settings: Settings,
    store: Store,
    analysis: Analysis,
    *,
    trends: Callable[[], Awaitable[dict[int, str]]],
) -> APIRouter:
    """The router; ``trends()`` gives the trending topics' notes by topic id. Callers need the
    admin token, or a web UI session (with its CSRF token for changes)."""
    router = APIRouter(prefix=API_PREFIX, dependencies=[Depends(require_admin)], tags=["insights"])

    @router.get("/overview")
    async def overview(weeks: int = Query(12, ge=1, le=104)) -> Overview:
        """Counts by label, and new conversations per week and label."""
        since = utcnow() - timedelta(weeks=weeks)
        async with store.read() as session:
            total = await session.scalar(select(func.count()).select_from(Conversation)) or 0
            by_label = dict(
                (label, count)
                for label, count in await session.execute(
                    select(Classification.label, func.count()).group_by(Classification.label)
                )
            )
            rows = await session.execute(
                select(Conversation.created_at, Classification.label)
                .outerjoin(Classification, Classification.conversation_id == Conversation.id)
                .where(Conversation.created_at >= since)
            )
            per_week: dict[str, dict[str, int]] = defaultdict(dict)
            for created_at, label in rows:
                if created_at is None:
                    continue
                monday = (created_at - timedelta(days=created_at.weekday())).date().isoformat()
                key = label or "unlabelled"
                per_week[monday][key] = per_week[monday].get(key, 0) + 1
            events = await event_counts(session)
        return Overview(
            conversations=total,
            labels={label: by_label.get(label, 0) for label in LABELS},
            weeks=[WeekCounts(week=w, counts=per_week[w]) for w in sorted(per_week)],
            events=events,
        )

    @router.get("/conversations")
    async def conversations(
        label: str | None = None,
        topic: int | None = None,
        limit: int = Query(100, ge=1, le=1000),
    ) -> list[ConversationItem]:
        """The newest conversations first, with their label and topic."""
        async with store.read() as session:
            return await labelled_conversations(session, label=label, topic=topic, limit=limit)

    @router.post("/conversations/{conversation_id}/label")
    async def relabel(conversation_id: int, change: LabelChange) -> dict[str, Any]:
        """An agent's label: it sticks, and the classifier learns from it."""
        try:
            label = await analysis.relabel(conversation_id, change.label)
        except UnknownConversation:
            raise NotFound(f"no conversation {conversation_id}") from None
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return {"id": conversation_id, "label": label, "labelled_by": "agent"}

    async def topic_items(*where: Any) -> list[TopicItem]:
        notes = await trends()
        customer = func.coalesce(
            Conversation.customer_email,
            cast(Conversation.customer_id, String),
            cast(Conversation.id, String),
        )
        query = (
            select(
                Topic,
                func.count(TopicMember.conversation_id),
                func.count(func.distinct(customer)),
                func.min(Conversation.created_at),
                func.max(Conversation.created_at),
            )
            .join(TopicMember, TopicMember.topic_id == Topic.id)
            .join(Conversation, Conversation.id == TopicMember.conversation_id)
            .where(Topic.merged_into.is_(None), *where)
            .group_by(Topic.id)
        )
        async with store.read() as session:
            rows = (await session.execute(query)).all()
        items = [
            TopicItem(
                id=topic.id,
                label=topic.label,
                name=topic.name,
                named_by_person=topic.named_by_person,
                conversations=conversations,
                customers=customers,
                first_seen=first,
                last_seen=last,
                trending=topic.id in notes,
                trend_note=notes.get(topic.id),
            )
            for topic, conversations, customers, first, last in rows
        ]
        items.sort(key=lambda t: (not t.trending, -t.customers, -t.conversations, t.id))
        return items

    @router.get("/topics")
    async def topics(
        label: str | None = None,
        trending: bool = False,
        min_customers: int = Query(1, ge=1),
    ) -> list[TopicItem]:
        """Topics, trending ones first, then by customers."""
        where = [] if label is None else [Topic.label == label]
        found = await topic_items(*where)
        return [t for t in found if t.customers >= min_customers and (t.trending or not trending)]

    @router.get("/topics/{topic_id}")
    async def topic(topic_id: int) -> TopicDetail:
        """A topic and its conversations (newest first)."""
        found = await topic_items(Topic.id == topic_id)
        if not found:
            raise NotFound(f"no topic {topic_id}")
        members = await conversations(topic=topic_id, limit=1000)
        return TopicDetail(**found[0].model_dump(), members=members)

    @router.post("/topics/{topic_id}/rename")
    async def rename(topic_id: int, change: Rename) -> dict[str, Any]:
        """A person's name for the topic; regrouping keeps it."""
        await _decide(analysis.rename_topic(topic_id, change.name))
        return {"id": topic_id, "name": " ".join(change.name.split())}

    @router.post("/topics/{topic_id}/merge")
    async def merge(topic_id: int, change: Merge) -> dict[str, Any]:
        """Merge this topic into another of the same label, for good."""
        await _decide(analysis.merge_topics(topic_id, change.into))
        return {"id": change.into, "merged": topic_id}

    @router.post("/topics/{topic_id}/split")
    async def split(topic_id: int, change: Split) -> dict[str, Any]:
        """Move some conversations out into a new topic, for good."""
        new_id = await _decide(analysis.split_topic(topic_id, change.conversation_ids, change.name))
        return {"id": new_id, "from": topic_id}

    @router.get("/reports", response_model=None)
    async def reports(
        trending: bool = False,
        format: Literal["json", "markdown", "csv"] = "json",
    ) -> list[reporting.Report] | Response:
        """A report per bug and feature topic (trending ones first)."""
        notes = await trends()
        found = await reporting.build_reports(store, trending=notes)
        if trending:
            found = [report for report in found if report.trending]
        if format == "markdown":
            body = "\n\n---\n\n".join(reporting.to_markdown(r) for r in found)
            return PlainTextResponse(body, media_type="text/markdown; charset=utf-8")
        if format == "csv":
            return PlainTextResponse(reporting.to_csv(found), media_type="text/csv; charset=utf-8")
        return found

    @router.post("/reports/{topic_id}/export/github")
    async def export_github(topic_id: int) -> dict[str, Any]:
        """Open the topic's GitHub issue, or update the one opened before."""
        options = settings.insights.reports
        token = (
            options.github_token.get_secret_value()
            if options.github_token is not None
            else os.environ.get("GITHUB_TOKEN", "")
        )
        if not options.github_repository or not token:
            raise BadRequest("set [insights.reports] github_repository and github_token")
        found = await reporting.build_reports(store, trending=await trends(), topic_ids=[topic_id])
        if not found:
            raise NotFound(f"no bug or feature report for topic {topic_id}")
        try:
            async with reporting.GitHubIssues(
                options.github_repository, token, options.github_api_url
            ) as github:
                result = await github.export(store, found[0])
        except reporting.GitHubError as exc:
            raise BadGateway(str(exc)) from None
        return {"number": result.number, "url": result.url, "created": result.created}

    return router


async def _decide(decision: Awaitable[T]) -> T:
    """Run a person's decision; unknown topics are 404, impossible ones 400."""
    try:
        return await decision
    except UnknownTopic as exc:
        raise NotFound(str(exc)) from None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
