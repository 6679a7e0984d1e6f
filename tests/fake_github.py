"""A fake of GitHub's issues REST API on 127.0.0.1 (a :class:`FakeHTTPServer` in a thread).

It answers ``POST /repos/OWNER/NAME/issues`` and ``GET``/``PATCH …/issues/N`` for one
repository, insists on ``Authorization: Bearer <token>``, and records every request::

    with FakeGitHub(token="t", repository="acme/app") as github:
        ... point the client at github.api_url ...
        assert [r.method for r in github.requests()] == ["POST", "PATCH"]
        github.delete(1)            # the issue is gone: 410, as GitHub answers
        github.refuse_next(422, {"message": "Validation Failed"})
"""

from __future__ import annotations

import itertools
import re
import threading
from typing import Any

from fake_http import FakeHTTPServer, Received, Reply

__all__ = ["FakeGitHub"]

_ISSUES = re.compile(r"^/repos/(?P<repo>[^/]+/[^/]+)/issues(?:/(?P<number>\d+))?$")


class FakeGitHub:
    """Issues of one repository, kept in memory."""

    def __init__(self, *, token: str, repository: str = "acme/app") -> None:
        self.token = token
        self.repository = repository
        self.issues: dict[int, dict[str, Any]] = {}
        self._deleted: dict[int, int] = {}
        self._refusals: list[Reply] = []
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self.server = FakeHTTPServer()
        self.server.route("/repos/*", self._answer)
        self.api_url = self.server.base_url

    def requests(self, method: str | None = None) -> list[Received]:
        """The issue requests so far, oldest first (only ``method`` ones if given)."""
        found = self.server.received("/repos/*")
        return [r for r in found if method is None or r.method == method]

    def delete(self, number: int, *, status: int = 410) -> None:
        """Forget issue ``number``; it then answers ``status`` (GitHub: 410, else 404)."""
        with self._lock:
            self.issues.pop(number, None)
            self._deleted[number] = status

    def refuse_next(self, status: int, document: dict[str, Any]) -> None:
        """Answer the next issue request with ``status`` and ``document``."""
        with self._lock:
            self._refusals.append(Reply.json(document, status=status))

    def close(self) -> None:
        self.server.close()

    def __enter__(self) -> FakeGitHub:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _answer(self, request: Received) -> Reply:
        if request.headers.get("authorization") != f"Bearer {self.token}":
            return Reply.json({"message": "Bad credentials"}, status=401)
        match = _ISSUES.match(request.path)
        if match is None or match["repo"] != self.repository:
            return Reply.json({"message": "Not Found"}, status=404)
        with self._lock:
            if self._refusals:
                return self._refusals.pop(0)
            if match["number"] is None:
                return self._create(request) if request.method == "POST" else _not_found()
            return self._issue(request, int(match["number"]))

    def _create(self, request: Received) -> Reply:
        document = request.json()
        if not str(document.get("title") or "").strip():
            return Reply.json(
                {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Issue", "field": "title", "code": "missing_field"}],
                },
                status=422,
            )
        number = next(self._numbers)
        self.issues[number] = {
            "number": number,
            "title": document["title"],
            "body": document.get("body"),
            "labels": [{"name": name} for name in document.get("labels", [])],
            "state": "open",
            "html_url": f"https://github.example/{self.repository}/issues/{number}",
        }
        return Reply.json(self.issues[number], status=201)

    def _issue(self, request: Received, number: int) -> Reply:
        if number in self._deleted:
            return Reply.json({"message": "This issue was deleted"}, status=self._deleted[number])
        issue = self.issues.get(number)
        if issue is None:
            return _not_found()
        if request.method == "PATCH":
            document = request.json()
            issue.update({k: document[k] for k in ("title", "body", "state") if k in document})
        elif request.method != "GET":
            return Reply.json({"message": "Not Found"}, status=404)
        return Reply.json(issue)


def _not_found() -> Reply:
    return Reply.json({"message": "Not Found"}, status=404)
