"""The HTTP source against a real local server: what it sends, and what it makes of the answers."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from deskside.errors import SourceError
from deskside.lookup import Lookup
from deskside.sources.http import HttpSource, HttpSourceConfig
from fake_http import FakeHTTPServer, Received, Reply, unused_port
from test_source_contract import ContractCase, SilentServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def server() -> Iterator[FakeHTTPServer]:
    with FakeHTTPServer() as running:
        yield running


def config(url: str, **options: Any) -> HttpSourceConfig:
    return HttpSourceConfig.model_validate({"kind": "http", "url": url, **options})


@asynccontextmanager
async def http_source(url: str, **options: Any) -> AsyncIterator[HttpSource]:
    source = HttpSource("billing", config(url, **options))
    try:
        yield source
    finally:
        await source.aclose()


async def fetch(url: str, *emails: str, **options: Any) -> list[dict[str, Any]]:
    async with http_source(url, **options) as source:
        return await source.fetch(Lookup(emails=emails))


def account_of(request: Received) -> Reply:
    """Each address's own account, plus the organisation every address shares."""
    email = request.path.rsplit("/", 1)[-1]
    return Reply.json([{"org": "Acme"}, {"account": email}])


async def test_one_request_per_address_each_percent_encoded(server: FakeHTTPServer) -> None:
    server.route("/users/*", account_of)

    records = await fetch(server.url("/users/{email}"), "a+b@x.example", "c@y.example")

    targets = sorted(request.target for request in server.received())
    assert targets == ["/users/a%2Bb%40x.example", "/users/c%40y.example"]
    assert all(request.method == "GET" for request in server.received())
    assert len(records) == 3
    assert {"org": "Acme"} in records
    assert {"account": "a+b@x.example"} in records
    assert {"account": "c@y.example"} in records


async def test_address_in_the_query_string_keeps_its_plus(server: FakeHTTPServer) -> None:
    server.route("/lookup", lambda request: Reply.json({"email": request.query["email"][0]}))

    records = await fetch(server.url("/lookup?email={email}&v=2"), "pat+test@x.example")

    [request] = server.received()
    assert request.target == "/lookup?email=pat%2Btest%40x.example&v=2"
    assert records == [{"email": "pat+test@x.example"}]


async def test_emails_placeholder_makes_one_request(server: FakeHTTPServer) -> None:
    server.route("/search", Reply.json({"found": True}))

    records = await fetch(server.url("/search?q={emails}"), "a@x.example", "b+c@y.example")

    [request] = server.received()
    assert request.query == {"q": ["a@x.example,b+c@y.example"]}
    assert records == [{"found": True}]


async def test_post_body_gets_the_addresses(server: FakeHTTPServer) -> None:
    server.route("/customers/search", Reply.json({"data": []}))
    body = {
        "filter": {"email": "{email}", "any_of": "{emails}"},
        "note": "lookup for {email}",
        "query": "email in ({emails})",
        "fields": ["name", "{email}"],
        "limit": 5,
        "active": True,
    }

    await fetch(
        server.url("/customers/search"), "a@x.example", "b@y.example", method="POST", body=body
    )

    [request] = server.received()
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "filter": {"email": "a@x.example", "any_of": ["a@x.example", "b@y.example"]},
        "note": "lookup for a@x.example",
        "query": "email in (a@x.example,b@y.example)",
        "fields": ["name", "a@x.example"],
        "limit": 5,
        "active": True,
    }


async def test_placeholders_in_addresses_are_not_expanded_again(server: FakeHTTPServer) -> None:
    server.route("/search", Reply.json([]))
    odd = "{email}{emails}@x.example"  # braces are legal in an address

    await fetch(server.url("/search"), odd, method="POST", body={"q": "in ({emails})"})

    assert server.received()[0].json() == {"q": f"in ({odd})"}


async def test_post_with_email_in_the_url_posts_once_per_address(
    server: FakeHTTPServer,
) -> None:
    server.route("/users/*", lambda request: Reply.json(request.json()))

    records = await fetch(
        server.url("/users/{email}"),
        "a@x.example",
        "b@y.example",
        method="POST",
        body={"email": "{email}"},
    )

    assert sorted(r.json()["email"] for r in server.received()) == ["a@x.example", "b@y.example"]
    assert sorted(r["email"] for r in records) == ["a@x.example", "b@y.example"]


async def test_headers_come_from_the_environment(
    server: FakeHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKSIDE_TEST_BILLING_TOKEN", "Bearer s3cret-token")
    server.route("/me", Reply.json({}))
    headers = {"Authorization": "env:DESKSIDE_TEST_BILLING_TOKEN", "X-Client": "deskside"}

    async with http_source(server.url("/me"), headers=headers) as source:
        await source.fetch(Lookup(emails=("a@x.example",)))

    [request] = server.received()
    assert request.headers["authorization"] == "Bearer s3cret-token"
    assert request.headers["x-client"] == "deskside"
    assert "s3cret" not in repr(config(server.url("/me"), headers=headers))


def test_missing_header_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DESKSIDE_TEST_UNSET_TOKEN", raising=False)

    with pytest.raises(ValidationError) as caught:
        config(
            "https://api.example/u/{email}",
            headers={"Authorization": "env:DESKSIDE_TEST_UNSET_TOKEN"},
        )

    assert "DESKSIDE_TEST_UNSET_TOKEN is not set" in str(caught.value)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ("data.users", [{"id": 1}, {"id": 2}]),
        ("data.account", [{"plan": "pro", "seats": {"used": 3}}]),
        ("data.account.seats", [{"used": 3}]),
        ("data.account.plan", [{"value": "pro"}]),
        ("data.users[].id", [{"value": 1}, {"value": 2}]),
        ("data.users[?id == `2`]", [{"id": 2}]),
        ("data.missing", []),
        ("data.nothing", []),
        (
            None,
            [
                {
                    "data": {
                        "users": [{"id": 1}, {"id": 2}],
                        "account": {"plan": "pro", "seats": {"used": 3}},
                        "nothing": None,
                    }
                }
            ],
        ),
    ],
)
async def test_record_path_picks_the_records(
    server: FakeHTTPServer, record: str | None, expected: list[dict[str, Any]]
) -> None:
    document = {
        "data": {
            "users": [{"id": 1}, {"id": 2}],
            "account": {"plan": "pro", "seats": {"used": 3}},
            "nothing": None,
        }
    }
    server.route("/u", Reply.json(document))

    assert await fetch(server.url("/u?e={email}"), "a@x.example", record=record) == expected


def test_invalid_record_path_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="invalid JMESPath"):
        config("https://api.example/u/{email}", record="data.[")


@pytest.mark.parametrize("url", ["ftp://api.example/u", "api.example/u/{email}", "file:///etc"])
def test_url_must_be_http(url: str) -> None:
    with pytest.raises(ValidationError, match="https://"):
        config(url)


async def test_not_found_is_no_record(server: FakeHTTPServer) -> None:
    server.route("/users/*", Reply.json({"error": "no such user"}, status=404))

    assert await fetch(server.url("/users/{email}"), "a@x.example") == []


async def test_found_for_one_address_not_found_for_the_other(server: FakeHTTPServer) -> None:
    server.route("/users/*", Reply.json({"error": "no such user"}, status=404))
    server.route("/users/a@x.example", Reply.json({"name": "A"}))

    records = await fetch(server.url("/users/{email}"), "a@x.example", "b@y.example")

    assert records == [{"name": "A"}]
    assert len(server.received()) == 2


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply.json({"error": "boom"}, status=500), "HTTP 500"),
        (Reply.text("Service Unavailable", status=503), "HTTP 503"),
        (Reply.json({"error": "bad token"}, status=401), "HTTP 401"),
        (Reply.status(302, Location="/elsewhere"), "HTTP 302"),
        (Reply.text("<html><body>Sign in</body></html>", content_type="text/html"), "JSON"),
        (Reply.text(""), "JSON"),
        (Reply(200, b"\xff\xfe{not json", content_type="application/json"), "JSON"),
    ],
    ids=["500", "503", "401", "redirect", "html", "empty", "garbage"],
)
async def test_bad_answers_are_source_errors(
    server: FakeHTTPServer, reply: Reply, message: str
) -> None:
    server.route("/users/*", reply)
    server.route("/elsewhere", Reply.json({"followed": True}))

    with pytest.raises(SourceError, match=message):
        await fetch(server.url("/users/{email}"), "a@x.example")

    assert server.received("/elsewhere") == []


async def test_an_answer_past_the_size_limit_is_an_error(server: FakeHTTPServer) -> None:
    """No API can fill a worker's memory: past ``max_answer_bytes`` (4 MiB unless set) an
    answer is an error; below it, it is read whole."""
    server.route("/small/*", Reply.json({"name": "x" * 1000}))
    server.route("/huge/*", Reply.json({"name": "x" * 5_000_000}))

    small = await fetch(server.url("/small/{email}"), "a@x.example")
    assert small == [{"name": "x" * 1000}]
    with pytest.raises(SourceError, match="more than 4,194,304 bytes"):
        await fetch(server.url("/huge/{email}"), "a@x.example")
    with pytest.raises(SourceError, match="more than 100 bytes"):
        await fetch(server.url("/small/{email}"), "a@x.example", max_answer_bytes=100)


async def test_one_failing_address_fails_the_source(server: FakeHTTPServer) -> None:
    server.route("/users/*", Reply.json({"name": "found"}))
    server.route("/users/b@y.example", Reply.json({}, status=500))

    with pytest.raises(SourceError, match="HTTP 500"):
        await fetch(server.url("/users/{email}"), "a@x.example", "b@y.example")


async def test_slow_server_times_out_quickly(server: FakeHTTPServer) -> None:
    server.route("/slow", Reply.json({"name": "late"}, delay=10))

    started = time.perf_counter()
    with pytest.raises(SourceError, match=r"no answer within 0\.2 s"):
        await fetch(server.url("/slow?e={email}"), "a@x.example", timeout_seconds=0.2)
    elapsed = time.perf_counter() - started

    assert 0.15 < elapsed < 5  # gave up after its timeout, not after the server's 10 s
    assert len(server.received("/slow")) == 1


async def test_timeout_bounds_the_whole_answer(server: FakeHTTPServer) -> None:
    """A server that sends a byte now and then never trips a per-read timeout."""
    server.route("/drip", Reply(body=b'{"name": "' + b"x" * 1000 + b'"}', trickle=0.05))

    started = time.perf_counter()
    with pytest.raises(SourceError, match=r"no answer within 0\.3 s"):
        await fetch(server.url("/drip?e={email}"), "a@x.example", timeout_seconds=0.3)

    assert time.perf_counter() - started < 5  # the whole answer would take 50 s


async def test_connection_refused_is_a_source_error() -> None:
    url = f"http://127.0.0.1:{unused_port()}/users/{{email}}"

    started = time.perf_counter()
    with pytest.raises(SourceError, match="request failed"):
        await fetch(url, "a@x.example", timeout_seconds=30)

    assert time.perf_counter() - started < 10  # refused at once: not a wait for the timeout


@asynccontextmanager
async def contract_case(tmp_path: Path, silent: SilentServer) -> AsyncIterator[ContractCase]:
    """For ``test_source_contract``: an API that knows one customer; one that fails with 500
    (echoing the address); one that never answers."""
    with FakeHTTPServer() as server:
        server.route("/customers/ada@example.com", Reply.json({"plan": "Pro"}))
        server.route("/customers/*", Reply.status(404))
        server.route("/down/*", lambda request: Reply.json({"error": request.path}, status=500))
        yield ContractCase(
            answering={"kind": "http", "url": server.url("/customers/{email}")},
            known="ada@example.com",
            failing={"kind": "http", "url": server.url("/down/{email}")},
            hanging={"kind": "http", "url": silent.url("http") + "/customers/{email}"},
        )


class KeepAliveServer:
    """An HTTP/1.1 API on 127.0.0.1 that keeps connections open (the fake above closes each
    one), answers ``{"plan": "pro"}`` after ``delay`` seconds, and counts the connections
    opened to it. ``close_after_answer`` makes it hang up after every answer without saying
    so, as an API whose idle timeout is shorter than the client's."""

    def __init__(self, delay: float = 0.0, close_after_answer: bool = False) -> None:
        self.delay = delay
        self.close_after_answer = close_after_answer
        self.connections = 0
        self.answers = 0

    async def __aenter__(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=512)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/customers/{{email}}"

    async def __aexit__(self, *_: object) -> None:
        self._server.close()

    async def _serve(self, reader: Any, writer: Any) -> None:
        self.connections += 1
        body = b'{"plan": "pro"}'
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    return
                await asyncio.sleep(self.delay)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
                self.answers += 1
                if self.close_after_answer:
                    return
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            writer.close()


async def test_connections_are_kept_for_the_next_lookups() -> None:
    api = KeepAliveServer(delay=0.05)
    async with api as url, http_source(url) as source:
        for _ in range(3):  # 40 lookups in flight at once, three times over
            found = await asyncio.gather(
                *(source.fetch(Lookup(emails=(f"c{n}@x.example",))) for n in range(40))
            )
            assert found == [[{"plan": "pro"}]] * 40

    assert api.answers == 120
    assert api.connections == 40  # one per lookup in flight, each used again


async def test_a_connection_the_api_closed_is_not_used_again() -> None:
    api = KeepAliveServer(close_after_answer=True)
    async with api as url, http_source(url) as source:
        for n in range(5):
            assert await source.fetch(Lookup(emails=(f"c{n}@x.example",))) == [{"plan": "pro"}]

    assert api.connections == 5


async def test_lookups_cut_short_leave_the_source_usable() -> None:
    """Lookups cancelled at every stage (connecting, waiting for the answer) by a deadline
    leave no connection that later lookups wait for."""
    api = KeepAliveServer(delay=0.02)
    shuffled = random.Random(7)
    async with api as url, http_source(url) as source:

        async def cut_short(n: int) -> None:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(shuffled.uniform(0.0, 0.02)):
                    await source.fetch(Lookup(emails=(f"c{n}@x.example",)))
                    await asyncio.sleep(1)  # answered in time: cut short here instead

        await asyncio.gather(*(cut_short(n) for n in range(200)))
        found = await asyncio.gather(  # a lookup left waiting would fail after its 2 s
            *(source.fetch(Lookup(emails=(f"c{n}@x.example",))) for n in range(100))
        )
        assert found == [[{"plan": "pro"}]] * 100
