"""The optional LLM backend against a fake OpenAI-compatible server on 127.0.0.1: its answers
are used when usable, the local model answers otherwise."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from deskside.insights.analysis import cli as classify_cli
from deskside.insights.analysis.classify import Classifier, Prediction, load_shipped_examples
from deskside.insights.analysis.llm import LLMClassifier, LLMSettings, chat_completions_url
from fake_http import FakeHTTPServer, Received, Reply, unused_port

ROUTE = "/v1/chat/completions"


@pytest.fixture(scope="module")
def local() -> Classifier:
    return Classifier.default()


@pytest.fixture
def server() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer() as fake:
        yield fake


def completion(content: str) -> Reply:
    return Reply.json(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
        }
    )


def classify(
    server: FakeHTTPServer, local: Classifier, texts: list[str], **settings: object
) -> list[Prediction]:
    options: dict[str, object] = {"url": server.url("/v1"), "timeout": 2.0, **settings}
    llm = LLMClassifier(LLMSettings(**options), local)  # type: ignore[arg-type]
    return asyncio.run(llm.classify(texts))


def test_the_llm_answer_is_used(server: FakeHTTPServer, local: Classifier) -> None:
    server.route(ROUTE, completion('{"label": "docs", "confidence": 0.7}'))
    text = "Where is the API reference?\n\nOn Mon, 3 Jun 2024, Bo <bo@x.example> wrote:\n> Hi!"
    [prediction] = classify(server, local, [text], api_key="sk-test", model="tiny")
    assert (prediction.label, prediction.confidence, prediction.by) == ("docs", 0.7, "llm")
    [request] = server.received(ROUTE)
    assert request.headers["authorization"] == "Bearer sk-test"
    body = request.json()
    assert body["model"] == "tiny"
    assert body["temperature"] == 0
    assert body["messages"][-1] == {"role": "user", "content": "Where is the API reference?"}
    assert "docs" in body["messages"][0]["content"]


def test_json_in_a_code_fence_or_with_prose_is_understood(
    server: FakeHTTPServer, local: Classifier
) -> None:
    server.route(
        ROUTE,
        [
            completion('```json\n{"label": "bug", "confidence": 0.91}\n```'),
            completion('Sure! Here it is: {"label": "feature", "confidence": 1}'),
        ],
    )
    predictions = classify(server, local, ["a", "b"], concurrency=1)
    assert [(p.label, p.by) for p in predictions] == [("bug", "llm"), ("feature", "llm")]


@pytest.mark.parametrize(
    "reply",
    [
        Reply.json({"error": "overloaded"}, status=500),
        Reply.text("<html>Bad gateway</html>", status=502, content_type="text/html"),
        completion("I think this is a bug."),
        completion('{"label": "urgent", "confidence": 0.9}'),
        completion('{"label": "bug"}'),
        completion('{"label": "bug", "confidence": 7}'),
        Reply.json({"choices": []}),
    ],
    ids=["500", "html", "prose", "unknown-label", "no-confidence", "bad-confidence", "empty"],
)
def test_unusable_answers_fall_back_to_the_local_model(
    server: FakeHTTPServer, local: Classifier, reply: Reply
) -> None:
    server.route(ROUTE, reply)
    text = "The app crashes when I upload a photo, please fix it."
    [prediction] = classify(server, local, [text])
    assert prediction == local.predict_one(text)
    assert prediction.by == "model"


def test_labels_outside_the_local_models_are_refused(server: FakeHTTPServer) -> None:
    narrowed = Classifier()
    narrowed.train(load_shipped_examples(), labels=["bug", "feature", "question"])
    server.route(ROUTE, completion('{"label": "docs", "confidence": 0.99}'))
    [prediction] = classify(server, narrowed, ["Your docs are outdated"])
    assert prediction.by == "model"
    assert prediction.label in ("bug", "feature", "question")
    assert "docs" not in server.received(ROUTE)[0].json()["messages"][0]["content"]


def test_a_slow_endpoint_times_out_and_is_given_up(
    server: FakeHTTPServer, local: Classifier
) -> None:
    server.route(ROUTE, Reply.json({}, delay=10))
    started = time.monotonic()
    predictions = classify(
        server, local, [f"message {i}" for i in range(20)], timeout=0.3, concurrency=2
    )
    assert time.monotonic() - started < 5  # waited for no answer, however busy the machine
    assert len(predictions) == 20
    assert all(p.by == "model" for p in predictions)
    assert len(server.received(ROUTE)) <= 4  # three failures in a row, plus one in flight


def test_an_unreachable_endpoint_falls_back(local: Classifier) -> None:
    llm = LLMClassifier(LLMSettings(url=f"http://127.0.0.1:{unused_port()}/v1"), local)
    predictions = asyncio.run(llm.classify(["How do I reset my password?"] * 5))
    assert [p.label for p in predictions] == ["question"] * 5


def test_partial_failures_keep_the_order(server: FakeHTTPServer, local: Classifier) -> None:
    def answer(request: Received) -> Reply:
        content = request.json()["messages"][-1]["content"]
        if "good" in content:
            return completion('{"label": "other", "confidence": 0.6}')
        return Reply.json({}, status=503)

    server.route(ROUTE, answer)
    texts = ["good one", "The invoice PDF is blank, error 500", "good two"]
    predictions = classify(server, local, texts)
    assert [p.by for p in predictions] == ["llm", "model", "llm"]
    assert predictions[1] == local.predict_one(texts[1])


def test_chat_completions_url() -> None:
    assert chat_completions_url("http://h:1/v1") == "http://h:1/v1/chat/completions"
    assert chat_completions_url("http://h:1/") == "http://h:1/v1/chat/completions"
    full = "http://h:1/openai/v1/chat/completions"
    assert chat_completions_url(full) == full


def test_cli_uses_the_llm_url(server: FakeHTTPServer) -> None:
    server.route(ROUTE, completion('{"label": "other", "confidence": 0.55}'))
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """deskside"""

    classify_cli.register(app)
    result = CliRunner().invoke(
        app,
        ["classify", "--config", "none.toml", "--llm-url", server.url("/v1")],
        input=json.dumps({"id": 7, "text": "The export is broken"}) + "\n",
        env={"DESKSIDE_LLM_API_KEY": "sk-cli", "DESKSIDE_DATABASE": ""},
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "id": 7,
        "label": "other",
        "confidence": 0.55,
        "unsure": False,
    }
    assert server.received(ROUTE)[0].headers["authorization"] == "Bearer sk-cli"
