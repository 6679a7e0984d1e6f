"""Help Scout Docs article titles (a fake Docs API on 127.0.0.1) and how the classifier uses
them: a message that closely matches an article title becomes likelier to be ``docs``."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from deskside.insights.analysis import cli as classify_cli
from deskside.insights.analysis.classify import ArticleMatcher, Classifier
from deskside.insights.analysis.engine import Analysis
from deskside.insights.helpscout.docs import DocsAPIError, fetch_article_titles
from deskside.insights.models import Conversation
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, database_url
from fake_http import FakeHTTPServer, Received, Reply

KEY = "docs-key-123"
TITLES = [
    "Connecting your Google Calendar",
    "Setting up single sign-on (SSO) with Okta",
    "Exporting invoices to CSV",
    "Understanding user roles and permissions",
]


def paged(
    key: str, items: list[dict[str, object]], per_page: int = 2
) -> Callable[[Received], Reply]:
    """A Docs API list handler serving ``items`` ``per_page`` at a time."""

    def handler(request: Received) -> Reply:
        page = int(request.query.get("page", ["1"])[0])
        pages = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page : page * per_page]
        return Reply.json(
            {key: {"page": page, "pages": pages, "count": len(items), "items": chunk}}
        )

    return handler


@pytest.fixture
def docs_api() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer() as server:
        collections = [{"id": "c1", "name": "Getting started"}, {"id": "c2", "name": "Billing"}]
        server.route("/v1/collections", paged("collections", collections, per_page=1))
        first = [{"id": f"a{i}", "name": title} for i, title in enumerate(TITLES[:3])]
        second = [{"id": "b1", "name": TITLES[3]}, {"id": "b2", "name": TITLES[0]}]
        server.route("/v1/collections/c1/articles", paged("articles", first))
        server.route("/v1/collections/c2/articles", paged("articles", second))
        yield server


def test_titles_of_every_collection_and_page(docs_api: FakeHTTPServer) -> None:
    titles = asyncio.run(fetch_article_titles(KEY, base_url=docs_api.base_url))
    assert titles == TITLES  # every page, duplicates once
    requests = docs_api.received()
    expected = "Basic " + base64.b64encode(f"{KEY}:X".encode()).decode()
    assert {request.headers["authorization"] for request in requests} == {expected}
    articles = docs_api.received("/v1/collections/c1/articles")
    assert [r.query["page"] for r in articles] == [["1"], ["2"]]
    assert all(r.query["status"] == ["published"] for r in articles)


def test_a_refused_key_is_reported() -> None:
    with FakeHTTPServer() as server:
        server.route("/v1/collections", Reply.json({"error": "Unauthorized"}, status=401))
        with pytest.raises(DocsAPIError, match="refused the API key"):
            asyncio.run(fetch_article_titles("wrong", base_url=server.base_url))


@pytest.mark.parametrize(
    "reply",
    [Reply.json({}, status=500), Reply.json({"unexpected": True}), Reply.text("<html>")],
    ids=["500", "shape", "not-json"],
)
def test_other_failures_are_reported(reply: Reply) -> None:
    with FakeHTTPServer() as server:
        server.route("/v1/collections", reply)
        with pytest.raises(DocsAPIError, match="Help Scout Docs API"):
            asyncio.run(fetch_article_titles(KEY, base_url=server.base_url))


def test_article_matcher_finds_the_closest_title() -> None:
    matcher = ArticleMatcher(TITLES)
    [(title, score), (_, unrelated)] = matcher.best(
        ["how do I connect google calendar", "the app crashes on start"]
    )
    assert title == "Connecting your Google Calendar"
    assert score > matcher.threshold > unrelated
    assert ArticleMatcher([]).best(["anything"]) == [(None, 0.0)]


def test_titles_make_docs_likelier_for_close_matches_only() -> None:
    plain = Classifier.default()
    with_titles = Classifier.default(article_titles=TITLES)
    close = "Connecting your Google Calendar: how?"
    unrelated = "The invoice total is wrong since the last update."
    assert with_titles.predict_one(close).scores["docs"] > plain.predict_one(close).scores["docs"]
    assert with_titles.predict_one(unrelated) == plain.predict_one(unrelated)
    assert with_titles.predict_one(unrelated).scores == plain.predict_one(unrelated).scores


def test_cli_reads_titles_with_the_docs_api_key(docs_api: FakeHTTPServer) -> None:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """deskside"""

    classify_cli.register(app)
    result = CliRunner().invoke(
        app,
        ["classify", "--config", "none.toml"],
        input=json.dumps({"id": 1, "text": "Exporting invoices to CSV"}) + "\n",
        env={
            "DESKSIDE_HELPSCOUT_DOCS_API_KEY": KEY,
            "DESKSIDE_HELPSCOUT_DOCS_API_URL": docs_api.base_url,
            "DESKSIDE_DATABASE": "",
        },
    )
    assert result.exit_code == 0, result.output
    assert "4 Help Scout Docs article titles" in result.stderr
    assert json.loads(result.stdout)["id"] == 1


def test_cli_goes_on_without_titles_when_the_docs_api_fails() -> None:
    with FakeHTTPServer() as server:
        server.route("/v1/collections", Reply.json({}, status=401))
        app = typer.Typer()

        @app.callback()
        def main() -> None:
            """deskside"""

        classify_cli.register(app)
        result = CliRunner().invoke(
            app,
            ["classify", "--config", "none.toml", "--docs-api-key", "bad"],
            input='{"id": 1, "text": "How do I log in?"}\n',
            env={"DESKSIDE_HELPSCOUT_DOCS_API_URL": server.base_url, "DESKSIDE_DATABASE": ""},
        )
    assert result.exit_code == 0, result.output
    assert "refused the API key" in result.stderr
    assert json.loads(result.stdout)["label"] == "question"


async def _analysed_scores(url: str, settings: InsightsSettings) -> float:
    store = await Store(database_url(url)).open()
    try:
        async with store.session() as session:
            session.add(Conversation(id=1, subject="Connecting your Google Calendar: how?"))
        analysis = Analysis(store, settings)
        await analysis.update()
        return analysis.classifier.predict_one("Connecting your Google Calendar: how?").scores[
            "docs"
        ]
    finally:
        await store.aclose()


def test_the_server_analysis_reads_titles_with_the_configured_key(
    docs_api: FakeHTTPServer, tmp_path: Path
) -> None:
    with_key = InsightsSettings.model_validate(
        {"classifier": {"docs_api_key": KEY, "docs_api_url": docs_api.base_url}}
    )
    plain = asyncio.run(_analysed_scores(f"sqlite:///{tmp_path / 'a.db'}", InsightsSettings()))
    titled = asyncio.run(_analysed_scores(f"sqlite:///{tmp_path / 'b.db'}", with_key))
    assert titled > plain
    assert docs_api.received("/v1/collections")
