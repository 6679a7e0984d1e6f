"""An optional LLM backend for the classifier: any OpenAI-compatible chat-completions endpoint
(a local llama.cpp, vLLM or Ollama server, or a hosted one), configured by URL.

The model is asked for a JSON answer ``{"label": …, "confidence": …}`` about what the customer
wrote (:func:`~.classify.prepare_text`). Whenever that fails (no connection, a
timeout, an error status, an answer that is not such JSON, a label outside the allowed ones), the
local classifier answers instead, so a prediction is always returned. After a few transport
failures in a row the endpoint is taken to be down and not called again for the rest of the
batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from deskside.insights.analysis.classify import Classifier, Prediction, prepare_text

__all__ = ["LLMClassifier", "LLMError", "LLMSettings", "chat_completions_url"]

_SYSTEM_PROMPT = """You sort customer support messages for a software company.
Choose exactly one label for the customer's message:
{labels}
Answer with one JSON object and nothing else: {{"label": "<label>", "confidence": <0 to 1>}},
where confidence is the probability that the label is right."""

_DESCRIPTIONS = {
    "bug": "bug: something in the product is broken, fails, crashes or gives wrong results",
    "feature": "feature: a request or suggestion for a new capability or an improvement",
    "docs": "docs: documentation is missing, wrong or outdated, or they ask for a guide/article",
    "question": "question: how to use the product, account, billing or plan questions",
    "other": "other: thanks, auto-replies, sales pitches, spam, anything not about the product",
}
_JSON_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


class LLMError(RuntimeError):
    """One request to the endpoint failed, or its answer was unusable."""


@dataclass(frozen=True)
class LLMSettings:
    """Where and how to ask. ``url``: the API base (``http://127.0.0.1:8080/v1``) or the full
    ``…/chat/completions`` URL; ``api_key`` is sent as a bearer token when given."""

    url: str
    model: str = "default"
    api_key: str | None = None
    timeout: float = 20.0
    """Seconds for one answer (connect, write and read each)."""
    concurrency: int = 4
    """Requests in flight at once."""
    max_chars: int = 4000
    """The message is cut to this many characters."""
    give_up_after: int = 3
    """Consecutive transport failures (no connection, timeout) before the endpoint is skipped
    for the rest of a batch."""


def chat_completions_url(url: str) -> str:
    """The chat-completions URL for ``url`` (a base ending in ``/v1``, a server root, or the
    full URL)."""
    url = url.rstrip("/")
    if url.endswith("/chat/completions"):
        return url
    if not url.endswith("/v1"):
        url += "/v1"
    return url + "/chat/completions"


class LLMClassifier:
    """Labels texts with the LLM at ``settings.url``, falling back to ``fallback`` (a trained
    local classifier, which also decides the allowed labels) for each text the LLM did not
    answer usably. Predictions from the LLM have ``by="llm"``."""

    def __init__(
        self,
        settings: LLMSettings,
        fallback: Classifier,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.settings = settings
        self.fallback = fallback
        self._client = client
        self._endpoint = chat_completions_url(settings.url)

    async def classify(self, texts: Sequence[str]) -> list[Prediction]:
        """One prediction per text, in order; never raises for an endpoint's failure."""
        labels = self.fallback.labels or ("bug", "feature", "docs", "question", "other")
        results: list[Prediction | None] = [None] * len(texts)
        failures = 0
        gate = asyncio.Semaphore(max(1, self.settings.concurrency))

        async def one(index: int, client: httpx.AsyncClient) -> None:
            nonlocal failures
            if failures >= self.settings.give_up_after:
                return
            async with gate:
                if failures >= self.settings.give_up_after:
                    return
                try:
                    results[index] = await self._ask(client, texts[index], labels)
                    failures = 0
                except httpx.TransportError:
                    failures += 1
                except LLMError:
                    pass

        async with self._session() as client:
            await asyncio.gather(*(one(index, client) for index in range(len(texts))))
        missing = [index for index, found in enumerate(results) if found is None]
        if missing:
            local = self.fallback.predict([texts[index] for index in missing])
            for index, prediction in zip(missing, local, strict=True):
                results[index] = prediction
        return [prediction for prediction in results if prediction is not None]

    def _session(self) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
        """The caller's client (left open), else a new one closed after the batch."""
        if self._client is not None:
            return contextlib.nullcontext(self._client)
        return httpx.AsyncClient(timeout=httpx.Timeout(self.settings.timeout))

    async def _ask(self, client: httpx.AsyncClient, text: str, labels: Sequence[str]) -> Prediction:
        """The LLM's prediction for ``text``; raises ``LLMError`` or ``httpx.TransportError``."""
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        described = "\n".join(f"- {_DESCRIPTIONS.get(label, label)}" for label in labels)
        body = {
            "model": self.settings.model,
            "temperature": 0,
            "max_tokens": 60,
            "messages": [
                {"role": "system", "content": _SYSTEM_PROMPT.format(labels=described)},
                {"role": "user", "content": prepare_text(text)[: self.settings.max_chars]},
            ],
        }
        response = await client.post(self._endpoint, json=body, headers=headers)
        if response.status_code != 200:
            raise LLMError(f"the LLM endpoint answered {response.status_code}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise LLMError("not a chat-completions answer") from exc
        return _parse_answer(content, labels)


def _parse_answer(content: Any, labels: Sequence[str]) -> Prediction:
    if not isinstance(content, str):
        raise LLMError("the answer has no text")
    for candidate in [content.strip(), *_JSON_OBJECT.findall(content)]:
        try:
            document = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(document, dict):
            break
    else:
        raise LLMError("the answer is not a JSON object")
    label = str(document.get("label", "")).strip().lower()
    confidence = document.get("confidence")
    if label not in labels:
        raise LLMError(f"the answer's label {label!r} is not one of {', '.join(labels)}")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        raise LLMError("the answer has no numeric confidence")
    if not 0 <= confidence <= 1:
        raise LLMError("the answer's confidence is not between 0 and 1")
    return Prediction(label, round(float(confidence), 4), {label: float(confidence)}, by="llm")
