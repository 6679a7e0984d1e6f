"""Helper's replay window under fuzzing (docs/protocols.md §4): whatever timestamp, encoding
and junk a signed query carries, it is answered only when its first ``timestamp`` is recent
and it was not answered before; a query that cannot be read is a 400; the signature is checked
before anything is read. What every helpdesk owes under fuzzing is in ``test_fuzz.py``.

Signatures come from the few lines of hmac below, over the query exactly as sent.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskside.server import create_app
from fuzz_data import ENCODERS, JUNK_FRAGMENTS, emails, junk_pairs
from helpers import BASE_URL, FUZZING, demo_secret, demo_settings, make_demo_database

WINDOW = 300  # Helper's default replay window, seconds
SECRET = demo_secret("helper")


def signed(query: bytes) -> dict[str, str]:
    """Standard base64 HMAC-SHA256 of the query as sent, as Helper's bearer."""
    mac = hmac.new(SECRET.encode(), query, hashlib.sha256).digest()
    return {"authorization": f"Bearer {base64.b64encode(mac).decode()}"}


timestamps = st.one_of(
    st.integers(-WINDOW + 30, WINDOW - 30).map(lambda skew: ("fresh", skew)),
    st.integers(WINDOW + 30, 10**10).map(lambda skew: ("stale", skew)),
    st.integers(WINDOW + 30, 10**10).map(lambda skew: ("stale", -skew)),
    st.sampled_from(
        ["", "-5", "1.5", "1e9", "0x10", "١٢٣", "²", " 1", "1 ", "9" * 13, "+1", "0"]
    ).map(lambda text: ("odd", text)),
)


@st.composite
def helper_queries(draw: st.DrawFn) -> tuple[bytes, str]:
    """A query string as some client might write it, and which kind of timestamp it carries."""
    kind, stamp = draw(timestamps)
    stamp_text = str(int(time.time()) + stamp) if kind != "odd" else stamp
    email = draw(st.one_of(emails.map(lambda e: e[:2000]), st.just(None)))  # URL length
    pairs = [("timestamp", stamp_text)] + ([("email", email)] if email is not None else [])
    pairs = draw(st.permutations(pairs)) + draw(junk_pairs)
    encode = ENCODERS[draw(st.sampled_from(sorted(ENCODERS)))]
    parts = [f"{encode(k)}={encode(v)}" for k, v in pairs]
    parts += draw(st.lists(st.sampled_from(JUNK_FRAGMENTS), max_size=2))
    query = "&".join(draw(st.permutations(parts)) if draw(st.booleans()) else parts)
    # As sent: httpx escapes a few characters more (a space, <, >, "); that is what is signed.
    return httpx.URL(BASE_URL + "/helper", query=query.encode()).query, kind


def expected_statuses(query: bytes) -> set[int]:
    """400 for a query that cannot be read, 401 unless its first timestamp is recent, else 200
    (queries decoded as Python's parse_qs does, like the server side of URLSearchParams)."""
    try:
        parsed = parse_qs(query.decode("ascii"), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {400}
    stamp = (parsed.get("timestamp") or [""])[0]
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        return {401}
    skew = abs(time.time() - int(stamp))
    if skew > WINDOW + 10:
        return {401}
    return {200} if skew < WINDOW - 10 else {200, 401}


@dataclass
class Served:
    runner: asyncio.Runner
    client: httpx.AsyncClient
    answered: set[bytes] = field(default_factory=set)

    def get(self, query: bytes, headers: dict[str, str]) -> httpx.Response:
        url = httpx.URL(BASE_URL + "/helper", query=query)
        return self.runner.run(self.client.get(url, headers=headers))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("helper-window")
    database = make_demo_database(tmp / "demo.db")
    with pytest.MonkeyPatch.context() as monkeypatch, asyncio.Runner() as runner:
        app = create_app(demo_settings(monkeypatch, tmp, database))
        lifespan = app.router.lifespan_context(app)
        runner.run(lifespan.__aenter__())
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL)
        try:
            yield Served(runner, client)
        finally:
            runner.run(client.aclose())
            runner.run(lifespan.__aexit__(None, None, None))


@settings(FUZZING, max_examples=400)
@given(drawn=helper_queries(), other=st.text(string.ascii_letters, min_size=1, max_size=3))
def test_only_a_recent_unanswered_query_is_answered(
    served: Served, drawn: tuple[bytes, str], other: str
) -> None:
    query, kind = drawn
    reply = served.get(query, signed(query))
    expected = {401} if query in served.answered else expected_statuses(query)
    assert reply.status_code in expected, (query, reply.text)
    if reply.status_code == 200:
        served.answered.add(query)
        again = served.get(query, signed(query))
        assert again.status_code == 401, "a replayed request was answered"
    if kind == "stale":
        assert reply.status_code in (400, 401), "a stale request was answered"
    # Signed for another query (another timestamp, say): refused before it is read.
    refused = served.get(query, signed(query + b"&" + other.encode()))
    assert refused.status_code == 401, (query, refused.text)
