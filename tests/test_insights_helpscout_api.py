"""The Help Scout client against the fake Help Scout: OAuth, token storage, renewals, rate
limits, retries, paging and webhooks, through the real code (Authlib, httpx, the store)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from cryptography.fernet import Fernet
from sqlalchemy import select, update
from typer.testing import CliRunner

from deskside.errors import ConfigError
from deskside.insights.crypto import Cipher
from deskside.insights.helpscout import cli as helpscout_cli
from deskside.insights.helpscout.client import HelpScoutAPI
from deskside.insights.helpscout.connection import (
    AuthorizationRefused,
    ConnectionLost,
    HelpScoutAPIError,
    NotConnected,
    webhook_secrets,
)
from deskside.insights.models import Connection, OAuthState, utcnow
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, database_url
from fake_helpscout import FakeHelpScout, RecordingSleeper, approve, generate_dataset
from fake_http import Received, Reply

pytestmark = pytest.mark.anyio
KEY = Fernet.generate_key().decode()


def make_settings(
    fake: FakeHelpScout, *, key: str | None = KEY, **helpscout: Any
) -> InsightsSettings:
    document: dict[str, Any] = {"helpscout": fake.settings_document(**helpscout)}
    if key is not None:
        document["encryption_key"] = key
    return InsightsSettings.model_validate(document)


@pytest.fixture
def helpscout() -> Iterator[FakeHelpScout]:
    with FakeHelpScout(generate_dataset(120, customers=30)) as fake:
        yield fake


@pytest.fixture
def database_file(tmp_path: Path) -> Path:
    return tmp_path / "insights.db"


@pytest.fixture
async def store(database_file: Path) -> AsyncIterator[Store]:
    store = await Store(database_url(f"sqlite:///{database_file}")).open()
    yield store
    await store.aclose()


@pytest.fixture
def sleeper(helpscout: FakeHelpScout) -> RecordingSleeper:
    return RecordingSleeper(helpscout)


def client(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper, **helpscout_settings: Any
) -> HelpScoutAPI:
    return HelpScoutAPI(
        make_settings(helpscout, **helpscout_settings), store, sleep=sleeper, clock=helpscout.now
    )


async def connect(api: HelpScoutAPI) -> None:
    code, state = approve(await api.authorization_url())
    await api.complete_authorization(code, state)


async def stored_token(store: Store) -> dict[str, Any]:
    async with store.session() as session:
        connection = await session.get(Connection, "helpscout")
    assert connection is not None and connection.token is not None
    return dict(json.loads(Cipher(KEY).decrypt(connection.token)))


async def test_oauth_round_trip(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with client(helpscout, store, sleeper) as api:
        url = httpx.URL(await api.authorization_url())
        assert str(url).startswith(helpscout.url("/authentication/authorizeClientApplication?"))
        assert url.params["client_id"] == "fake-app-id"
        state = url.params["state"]
        assert len(state) >= 40 and "client_secret" not in str(url)
        async with store.session() as session:
            hashes = list(await session.scalars(select(OAuthState.state_hash)))
        assert state not in hashes and len(hashes) == 1  # only its SHA-256 is kept

        code, returned_state = approve(str(url))
        assert returned_state == state
        await api.complete_authorization(code, state)
        assert [m["name"] for m in await api.mailboxes()] == ["Support", "Billing", "Sales"]

    async with store.session() as session:
        connection = await session.get(Connection, "helpscout")
        assert connection is not None and connection.mode == "oauth"
        assert not list(await session.scalars(select(OAuthState)))  # used up
    token = await stored_token(store)
    assert token["access_token"] in helpscout.valid_access_tokens()
    assert token["refresh_token"] and token["expires_at"]


async def test_forged_reused_and_expired_states_are_refused(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with client(helpscout, store, sleeper) as api:
        with pytest.raises(AuthorizationRefused, match="not started here"):
            await api.complete_authorization(helpscout.issue_code(), "forged-state")

        code, state = approve(await api.authorization_url())
        await api.complete_authorization(code, state)
        with pytest.raises(AuthorizationRefused, match="already used"):
            await api.complete_authorization(helpscout.issue_code(), state)

        _, late_state = approve(await api.authorization_url())
        async with store.session() as session:
            await session.execute(
                update(OAuthState).values(created_at=utcnow() - timedelta(minutes=11))
            )
        with pytest.raises(AuthorizationRefused, match="expired"):
            await api.complete_authorization(helpscout.issue_code(), late_state)
    assert len(helpscout.token_requests("authorization_code")) == 1  # refused before exchanging


async def test_a_refused_code_is_a_clear_error(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with client(helpscout, store, sleeper) as api:
        _, state = approve(await api.authorization_url())
        with pytest.raises(AuthorizationRefused, match="invalid_grant") as refused:
            await api.complete_authorization("code-that-was-never-issued", state)
        assert "code-that" not in str(refused.value)
        assert not await api.is_connected()


async def test_tokens_are_not_readable_in_the_database_file(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper, database_file: Path
) -> None:
    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        await api.register_webhook("https://deskside.example/webhooks/helpscout")
        helpscout.expire_access_tokens()
        await api.mailboxes()  # a refresh: the renewed token is stored too
    await store.aclose()
    raw = b"".join(p.read_bytes() for p in database_file.parent.glob(database_file.name + "*"))
    secrets = helpscout.issued_secrets()
    assert len(secrets) == 2  # the current access and refresh tokens
    (webhook,) = helpscout.webhooks.values()
    for secret in [*secrets, webhook["secret"]]:
        assert secret.encode() not in raw
    assert b"refresh_token" not in raw and b"access_token" not in raw


async def test_without_an_encryption_key_nothing_is_stored(
    helpscout: FakeHelpScout, store: Store
) -> None:
    with pytest.raises(ConfigError, match="encryption_key is not set"):
        HelpScoutAPI(make_settings(helpscout, key=None), store)
    async with store.session() as session:
        assert await session.get(Connection, "helpscout") is None
    assert helpscout.token_requests() == []


async def test_the_token_is_refreshed_before_it_expires(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    helpscout.expires_in = 120  # inside the client's 300 s leeway: due for renewal at once
    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        first = await stored_token(store)
        await api.mailboxes()
        renewed = await stored_token(store)
        assert len(helpscout.token_requests("refresh_token")) == 1
        assert renewed["access_token"] != first["access_token"]
        assert renewed["access_token"] in helpscout.valid_access_tokens()
        (refresh,) = helpscout.token_requests("refresh_token")
        assert refresh["refresh_token"] == first["refresh_token"]
        assert all(
            r.headers["authorization"] == f"Bearer {renewed['access_token']}"
            for r in helpscout.api_requests()
        )
    async with client(helpscout, store, sleeper) as later:  # a new process uses the stored one
        helpscout.expires_in = 172_800
        await later.mailboxes()
        assert len(helpscout.token_requests("refresh_token")) == 2  # still due, renewed again


async def test_a_401_renews_the_token_once_and_retries(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        helpscout.expire_access_tokens()  # Help Scout forgot it though it is not due yet
        assert len(await api.mailboxes()) == 3
        assert len(helpscout.token_requests("refresh_token")) == 1
        statuses = [r.path for r in helpscout.api_requests()]
        assert statuses == ["/v2/mailboxes", "/v2/mailboxes"]
        assert (await stored_token(store))["access_token"] in helpscout.valid_access_tokens()


async def test_a_revoked_grant_says_to_connect_again(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        helpscout.revoke_grants()
        with pytest.raises(ConnectionLost, match="deskside connect helpscout` again") as lost:
            await api.mailboxes()
        assert "invalid_grant" in str(lost.value)
        assert "rt-" not in str(lost.value) and "at-" not in str(lost.value)


async def test_a_token_renewed_by_another_process_is_adopted(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with (
        client(helpscout, store, sleeper) as worker,
        client(helpscout, store, sleeper) as cli,
    ):
        await connect(cli)
        await worker.mailboxes()  # holds the first token in memory
        helpscout.expire_access_tokens()
        await cli.mailboxes()  # renews: the first refresh token is used up (rotation)
        assert len(await worker.mailboxes()) == 3  # refused refresh → the stored token
        assert len(helpscout.token_requests("refresh_token")) == 2


async def test_client_credentials(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with client(helpscout, store, sleeper, mode="client_credentials") as api:
        await api.connect_client_credentials()
        async with store.session() as session:
            connection = await session.get(Connection, "helpscout")
            assert connection is not None and connection.mode == "client_credentials"
        assert "refresh_token" not in await stored_token(store)
        helpscout.expire_access_tokens()
        assert len(await api.mailboxes()) == 3  # 401 → a new token with the credentials
        helpscout.expires_in = 60
        await api.connect_client_credentials()
        helpscout.expires_in = 172_800
        await api.mailboxes()  # due for renewal: Authlib fetches one before the call
    requests = helpscout.token_requests()
    assert [r["grant_type"] for r in requests] == ["client_credentials"] * 4
    assert all(r["client_id"] == "fake-app-id" for r in requests)


async def test_wrong_client_credentials(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with client(
        helpscout, store, sleeper, mode="client_credentials", client_secret="wrong"
    ) as api:
        with pytest.raises(HelpScoutAPIError, match="invalid_client") as refused:
            await api.connect_client_credentials()
        assert "wrong" not in str(refused.value)
    async with HelpScoutAPI(make_settings(helpscout), store) as api:
        with pytest.raises(NotConnected, match="deskside connect helpscout"):
            await api.mailboxes()


async def test_an_exhausted_minute_is_waited_out(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        helpscout.rate_limit = 3
        helpscout.advance(60 - helpscout.now() % 60 + 10)  # 10 s into a fresh minute
        for _ in range(4):
            await api.mailboxes()
    assert len(sleeper.sleeps) == 1
    assert 49 <= sleeper.sleeps[0] <= 51  # the rest of the minute
    assert len(helpscout.api_requests()) == 4  # never refused with 429


@pytest.mark.parametrize("says", ["helpscout", "seconds", "date"])
async def test_a_429_waits_as_long_as_help_scout_says(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper, says: Any
) -> None:
    """``X-RateLimit-Retry-After: 45``, ``Retry-After: 45`` or ``Retry-After`` as the HTTP date
    45 s from now: each is waited out, and the wait is announced, then its end."""
    notices: list[tuple[float, str]] = []
    async with HelpScoutAPI(
        make_settings(helpscout),
        store,
        sleep=sleeper,
        clock=helpscout.now,
        on_wait=lambda seconds, why: notices.append((seconds, why)),
    ) as api:
        await connect(api)
        helpscout.rate_limit = 2
        helpscout.retry_after = says
        helpscout.advance(60 - helpscout.now() % 60 + 15)
        token = (await stored_token(store))["access_token"]
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {token}"}) as other:
            for _ in range(2):  # another app of the account uses up the minute
                await other.get(helpscout.url("/v2/mailboxes"))
        assert len(await api.mailboxes()) == 3
    # a date counts from the client's own clock, a moment after Help Scout wrote it
    assert sleeper.sleeps == [pytest.approx(45, abs=1)]
    assert notices == [(sleeper.sleeps[0], "rate limit"), (0, "rate limit")]
    assert len(helpscout.api_requests()) == 4  # the refused request, then once more


@pytest.mark.parametrize(
    ("headers", "waited"),
    [
        ({"Retry-After": "86400"}, 300),  # a day: cut to five minutes
        ({"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, 300),
        ({"Retry-After": "Thu, 01 Jan 1970 00:00:00 GMT"}, 0),  # already past: at once
        ({"Retry-After": "3", "X-RateLimit-Retry-After": "7"}, 7),  # the longer of the two
        ({"Retry-After": "nan"}, 1),  # nonsense: the backoff
        ({"Retry-After": "soon", "X-RateLimit-Retry-After": "-5"}, 0),
    ],
)
async def test_what_a_429_asks_is_obeyed_within_reason(
    helpscout: FakeHelpScout,
    store: Store,
    sleeper: RecordingSleeper,
    headers: dict[str, str],
    waited: float,
) -> None:
    refusals = iter(range(1))

    def throttle(request: Received) -> Reply | None:
        if request.path.startswith("/v2/") and next(refusals, None) is not None:
            return Reply(429, b'{"message": "slow down"}', headers=headers)
        return None

    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        helpscout.fault = throttle
        assert len(await api.mailboxes()) == 3
    assert sleeper.sleeps == [waited]


async def test_a_503_with_retry_after_is_retried_when_it_says(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    answers = iter([Reply(503, b"{}", headers={"Retry-After": "20"})])

    def unavailable(request: Received) -> Reply | None:
        return next(answers, None) if request.path == "/v2/mailboxes" else None

    notices: list[tuple[float, str]] = []
    async with HelpScoutAPI(
        make_settings(helpscout),
        store,
        sleep=sleeper,
        on_wait=lambda seconds, why: notices.append((seconds, why)),
    ) as api:
        await connect(api)
        helpscout.fault = unavailable
        assert len(await api.mailboxes()) == 3
    assert sleeper.sleeps == [20]
    assert notices == [(20, "Help Scout answered 503"), (0, "Help Scout answered 503")]


async def test_a_429_without_retry_after_backs_off_exponentially(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    refusals = iter(range(3))

    def throttle(request: Received) -> Reply | None:
        if request.path.startswith("/v2/") and next(refusals, None) is not None:
            return Reply.json({"message": "slow down"}, status=429)
        return None

    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        helpscout.fault = throttle
        assert len(await api.mailboxes()) == 3
    assert sleeper.sleeps == [1, 2, 4]


async def test_throttling_that_never_ends_fails_after_bounded_retries(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        helpscout.fault = lambda r: (
            Reply.json({}, status=429) if r.path.startswith("/v2/") else None
        )
        with pytest.raises(HelpScoutAPIError, match="still rate limiting"):
            await api.mailboxes()
    assert len(sleeper.sleeps) == 5


async def test_server_errors_and_dropped_connections_are_retried(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    answers = iter([Reply.json({"message": "oops"}, status=503), Reply(200, b'{"trunc', delay=0)])

    def flaky(request: Received) -> Reply | None:
        return next(answers, None) if request.path == "/v2/mailboxes" else None

    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        helpscout.fault = flaky
        with pytest.raises(HelpScoutAPIError, match="not JSON"):
            await api.mailboxes()  # a 503 is retried; a broken body is not a retry matter
        assert sleeper.sleeps == [1]
        helpscout.fault = lambda r: (
            Reply.json({}, status=500) if r.path.startswith("/v2/") else None
        )
        with pytest.raises(HelpScoutAPIError, match="500"):
            await api.mailboxes()
        assert sleeper.sleeps == [1, 1, 2, 4, 8]
        helpscout.fault = None
        assert len(await api.mailboxes()) == 3

    unreachable = make_settings(helpscout, api_url="http://127.0.0.1:9")
    async with HelpScoutAPI(unreachable, store, sleep=sleeper) as api:
        with pytest.raises(HelpScoutAPIError, match="could not be reached"):
            await api.mailboxes()
    assert sleeper.sleeps[5:] == [1, 2, 4, 8]


async def test_paging_conversations_and_threads(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    helpscout.page_size = 25
    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        since = utcnow() - timedelta(days=100)
        pages = [page async for page in api.conversations(since)]
        expected = helpscout.dataset.matching(since)
        assert [c["id"] for p in pages for c in p.conversations] == [c["id"] for c in expected]
        assert pages[0].total_elements == len(expected) and pages[-1].next_url is None
        assert [p.number for p in pages] == list(range(1, len(pages) + 1))
        query = helpscout.api_requests("/v2/conversations")[0].query
        assert query["status"] == ["all"] and query["embed"] == ["threads"]
        assert query["sortField"] == ["modifiedAt"] and query["sortOrder"] == ["asc"]
        assert query["modifiedSince"][0].endswith("Z") and "+" not in query["modifiedSince"][0]

        box = helpscout.dataset.mailboxes[1]["id"]
        only = [c async for p in api.conversations(since, [box]) for c in p.conversations]
        assert only and {c["mailboxId"] for c in only} == {box}

        longest = max(helpscout.dataset.conversations, key=lambda c: c["threads"])
        helpscout.page_size = 2
        threads = await api.threads(longest["id"])
        assert [t["id"] for t in threads] == [t["id"] for t in longest["_embedded"]["threads"]]


async def test_a_next_page_on_another_host_is_not_followed(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    async with client(helpscout, store, sleeper) as api:
        await connect(api)
        elsewhere = {
            "_embedded": {"mailboxes": []},
            "_links": {"next": {"href": "https://evil.example/x"}},
        }
        helpscout.fault = lambda r: Reply.json(elsewhere) if r.path == "/v2/mailboxes" else None
        with pytest.raises(HelpScoutAPIError, match="another host"):
            await api.mailboxes()


async def test_webhooks_and_disconnect(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper
) -> None:
    settings = make_settings(helpscout, webhook_secret=["configured-secret"])
    async with HelpScoutAPI(settings, store, sleep=sleeper) as api:
        await connect(api)
        first = await api.register_webhook("https://deskside.example/hooks", [5001])
        second = await api.register_webhook("https://deskside.example/webhooks/helpscout")
        assert list(helpscout.webhooks) == [second]  # the first one was replaced
        registered = helpscout.webhooks[second]
        assert registered["payloadVersion"] == "V2" and "convo.created" in registered["events"]
        assert len(registered["secret"]) <= 40 and "mailboxIds" not in registered
        assert [r.method for r in helpscout.api_requests("/v2/webhooks")] == [
            "POST",
            "DELETE",
            "POST",
        ]
        assert helpscout.api_requests("/v2/webhooks")[0].json()["mailboxIds"] == [5001]
        assert first != second
        async with store.session() as session:
            secrets = await webhook_secrets(session, settings)
        assert secrets == ["configured-secret", registered["secret"]]

        await api.delete_webhook("999")  # gone already: fine

        report = await api.disconnect()
        assert report.was_connected and report.webhook_deleted
        assert helpscout.webhooks == {}
        with pytest.raises(NotConnected):
            await api.mailboxes()
        assert (await api.disconnect()).was_connected is False
    async with store.session() as session:
        assert await session.get(Connection, "helpscout") is None
        assert await webhook_secrets(session, settings) == ["configured-secret"]


async def test_the_import_says_when_it_waits_for_the_rate_limit(
    helpscout: FakeHelpScout, store: Store, sleeper: RecordingSleeper, database_file: Path
) -> None:
    async with client(helpscout, store, sleeper) as api:
        await connect(api)
    refusals = iter(range(1))

    def throttle(request: Received) -> Reply | None:
        if request.path == "/v2/conversations" and next(refusals, None) is not None:
            return Reply(429, b"{}", headers={"Retry-After": "1"})
        return None

    helpscout.fault = throttle
    config = database_file.with_name("deskside.toml")
    table = helpscout.settings_document()
    config.write_text(
        f'[insights]\nencryption_key = "{KEY}"\n[insights.helpscout]\n'
        + "".join(f"{name} = {json.dumps(value)}\n" for name, value in table.items())
    )
    app = typer.Typer()
    helpscout_cli.register(app)
    command = ["import", "-c", str(config), "--database", f"sqlite:///{database_file}"]
    result = await asyncio.to_thread(CliRunner().invoke, app, [*command, "--since", "400d"])
    assert result.exit_code == 0, result.output
    assert "waiting 1 s (rate limit)" in result.output  # not a silent pause
    assert f"imported {len(helpscout.dataset.conversations)} conversations" in result.output
