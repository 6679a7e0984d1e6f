"""Single sign-on end to end: a small OpenID provider on 127.0.0.1 (discovery, a JWKS of an
RS256 key made here, ``/authorize`` sending the browser back with a code, ``/token`` answering
with an ID token this file signs) and the real app, driven with httpx, redirects followed by
hand. A good sign-in adds a viewer; a forged, misaddressed, expired or wrongly-nonced token, a
replayed ``state``, a domain not allowed and a config without ``default_role`` are refused."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from deskside.config import Settings
from deskside.errors import ConfigError
from deskside.web.roles import Role
from fake_http import FakeHTTPServer, Received, Reply
from helpers import demo_settings, parse_html
from test_people import ADMIN, PASSWORD, client_of, log_in, running
from test_web import NO_INSIGHTS

pytestmark = pytest.mark.anyio

CLIENT_ID = "deskside-test-client"
CLIENT_SECRET = "oidc-client-secret-for-tests"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_jwt(key: rsa.RSAPrivateKey, kid: str, claims: dict[str, Any]) -> str:
    """An RS256 JWT, signed independently of the code under test."""
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64(signature)}"


class LocalProvider:
    """An OpenID provider: it signs in whoever :attr:`email` says, and its ID tokens carry
    :attr:`overrides` (to forge, misaddress or expire them) and are signed with
    :attr:`signing_key` (another key than its JWKS's forges them)."""

    def __init__(self, server: FakeHTTPServer) -> None:
        self.server = server
        self.issuer = server.url("")
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.signing_key = self.key
        self.kid = "test-key-1"
        self.email = "new.person@team.example"
        self.overrides: dict[str, Any] = {}
        self._codes: dict[str, dict[str, str]] = {}
        numbers = self.key.public_key().public_numbers()
        jwk = {
            "kty": "RSA",
            "kid": self.kid,
            "use": "sig",
            "alg": "RS256",
            "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64(numbers.e.to_bytes(3, "big")),
        }
        server.route(
            "/.well-known/openid-configuration",
            Reply.json(
                {
                    "issuer": self.issuer,
                    "authorization_endpoint": server.url("/authorize"),
                    "token_endpoint": server.url("/token"),
                    "jwks_uri": server.url("/jwks"),
                    "response_types_supported": ["code"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "code_challenge_methods_supported": ["S256"],
                }
            ),
        )
        server.route("/jwks", Reply.json({"keys": [jwk]}))
        server.route("/authorize", self._authorize)
        server.route("/token", self._token)

    def _authorize(self, request: Received) -> Reply:
        query = {name: values[0] for name, values in request.query.items()}
        assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
        assert query["code_challenge_method"] == "S256" and "openid" in query["scope"]
        code = secrets.token_urlsafe(16)
        self._codes[code] = query
        back = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return Reply.status(302, Location=back)

    def _token(self, request: Received) -> Reply:
        form = {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
        asked = self._codes.pop(form.get("code", ""), None)  # a code works once
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        verifier = form.get("code_verifier", "")
        if (
            asked is None
            or request.headers.get("authorization") != f"Basic {basic}"
            or _b64(hashlib.sha256(verifier.encode()).digest()) != asked["code_challenge"]
            or form.get("redirect_uri") != asked["redirect_uri"]
        ):
            return Reply.json({"error": "invalid_grant"}, status=400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "subject-" + self.email,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": asked["nonce"],
            "email": self.email,
            "email_verified": True,
            **self.overrides,
        }
        id_token = sign_jwt(self.signing_key, self.kid, claims)
        return Reply.json({"access_token": "at", "token_type": "Bearer", "id_token": id_token})


@pytest.fixture
def provider() -> Iterator[LocalProvider]:
    with FakeHTTPServer() as server:
        yield LocalProvider(server)


def oidc_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    database: str,
    provider: LocalProvider,
    *,
    default_role: str | None = "viewer",
    client_secret: str = CLIENT_SECRET,
) -> Settings:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    monkeypatch.setenv("DESKSIDE_OIDC_SECRET", client_secret)
    role = f'default_role = "{default_role}"\n' if default_role else ""
    table = (
        f'[ui.oidc]\nissuer = "{provider.issuer}"\nclient_id = "{CLIENT_ID}"\n'
        f'client_secret = "env:DESKSIDE_OIDC_SECRET"\nallowed_domains = ["team.example"]\n'
        f"{role}\n"
    )
    return demo_settings(monkeypatch, tmp_path, database, replace={"[server]\n": table + ADMIN})


@pytest.fixture
def settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, provider: LocalProvider
) -> Settings:
    return oidc_settings(monkeypatch, tmp_path, database, provider)


async def to_provider(browser: httpx.AsyncClient) -> str:
    """From the login page's "Sign in with SSO" to the provider's authorize URL."""
    login = await browser.get("/ui/login")
    assert "Sign in with SSO" in login.text
    start = await browser.get("/ui/sso/login", params={"next": "/ui/preview"})
    assert start.status_code == 303, start.text
    return start.headers["location"]


async def sign_in(browser: httpx.AsyncClient) -> tuple[httpx.Response, str]:
    """The whole round trip; the app's answer to the callback, and the callback's URL."""
    authorize = await to_provider(browser)
    async with httpx.AsyncClient() as outside:
        at_provider = await outside.get(authorize)
    assert at_provider.status_code == 302, at_provider.text
    callback = at_provider.headers["location"]
    parts = urlsplit(callback)
    return await browser.get(f"{parts.path}?{parts.query}"), callback


async def test_a_first_sign_in_from_an_allowed_domain_adds_a_viewer(settings: Settings) -> None:
    async with running(settings) as (app, people), client_of(app) as browser:
        answer, _ = await sign_in(browser)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"].endswith("/ui/preview")
        preview = await browser.get("/ui/preview")
        assert preview.status_code == 200
        assert "new.person@team.example" in preview.text
        assert (await browser.get("/ui/people")).status_code == 403  # a viewer, not an admin
        listed = {person.email: person.role for person in await people.listed()}
        assert listed == {"new.person@team.example": Role.viewer}
        actions = [(row.actor, row.action) for row in await people.audit()]
        assert ("ui:new.person@team.example", "login") in actions
        # no invitation for them: the People page says how they sign in
        async with client_of(app) as admin:
            assert (await log_in(admin, "admin", PASSWORD)).status_code == 303
            page = parse_html((await admin.get("/ui/people")).text)
        statuses = {
            row.attrs["data-person"]: row.find_all("td")[2].text().strip()
            for row in page.find_all("tr")
            if "data-person" in row.attrs
        }
        assert statuses == {"new.person@team.example": "single sign-on"}


async def test_a_person_already_there_signs_in_with_their_role(
    settings: Settings, provider: LocalProvider
) -> None:
    provider.email = "Boss@Elsewhere.example"  # not an allowed domain: added by an admin
    async with running(settings) as (app, people), client_of(app) as browser:
        await people.add("boss@elsewhere.example", Role.admin, by="test")
        answer, _ = await sign_in(browser)
        assert answer.status_code == 303, answer.text
        assert (await browser.get("/ui/people")).status_code == 200
        assert len(await people.listed()) == 1


async def refused(
    settings: Settings, status: int, because: str, *, title: str = "Sign-in failed"
) -> None:
    """A sign-in ends on a refusal page with ``status``; nobody logged in, nobody added; the
    audit's failed login says ``because``."""
    async with running(settings) as (app, people), client_of(app) as browser:
        answer, _ = await sign_in(browser)
        assert answer.status_code == status, answer.text
        assert title in answer.text
        assert "deskside_session=" not in answer.headers.get("set-cookie", "")
        assert (await browser.get("/ui/preview")).status_code == 303
        assert await people.listed() == []
        audit = await people.audit()
        assert [row.action for row in audit] == ["login_failed"]
        assert because in audit[0].detail


async def test_a_token_signed_by_another_key_is_refused(
    settings: Settings, provider: LocalProvider
) -> None:
    provider.signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await refused(settings, 401, "bad_signature")


async def test_a_token_for_another_client_is_refused(
    settings: Settings, provider: LocalProvider
) -> None:
    provider.overrides = {"aud": "some-other-client"}
    await refused(settings, 401, "'aud'")


async def test_an_expired_token_is_refused(settings: Settings, provider: LocalProvider) -> None:
    an_hour_ago = int(time.time()) - 3600
    provider.overrides = {"iat": an_hour_ago - 300, "exp": an_hour_ago}
    await refused(settings, 401, "expired")


async def test_a_token_with_another_nonce_is_refused(
    settings: Settings, provider: LocalProvider
) -> None:
    provider.overrides = {"nonce": "not-the-nonce-sent"}
    await refused(settings, 401, "'nonce'")


async def test_a_token_from_another_issuer_is_refused(
    settings: Settings, provider: LocalProvider
) -> None:
    provider.overrides = {"iss": "https://impostor.example"}
    await refused(settings, 401, "'iss'")


async def test_a_wrong_client_secret_is_refused_by_the_provider(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, provider: LocalProvider
) -> None:
    secret = "not-the-secret"
    settings = oidc_settings(monkeypatch, tmp_path, database, provider, client_secret=secret)
    await refused(settings, 401, "the code was refused")


async def test_an_unreachable_provider_is_a_clear_error(
    settings: Settings, provider: LocalProvider
) -> None:
    provider.server.route("/.well-known/openid-configuration", Reply.status(503))
    async with running(settings) as (app, people), client_of(app) as browser:
        start = await browser.get("/ui/sso/login")
        assert start.status_code == 502
        assert "could not be reached" in start.text
        assert await people.listed() == []


async def test_a_domain_not_allowed_is_denied(settings: Settings, provider: LocalProvider) -> None:
    provider.email = "someone@outside.example"
    await refused(settings, 403, "not a person", title="Access denied")


async def test_without_a_default_role_a_newcomer_is_denied(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, provider: LocalProvider
) -> None:
    settings = oidc_settings(monkeypatch, tmp_path, database, provider, default_role=None)
    await refused(settings, 403, "not a person", title="Access denied")


async def test_a_replayed_or_forged_state_is_refused(settings: Settings) -> None:
    async with running(settings) as (app, people), client_of(app) as browser:
        answer, callback = await sign_in(browser)
        assert answer.status_code == 303, answer.text
        parts = urlsplit(callback)
        # The same callback again, with the flow's cookie put back: used once already
        async with client_of(app) as attacker:
            await to_provider(attacker)  # a flow cookie of its own, with another state
            again = await attacker.get(f"{parts.path}?{parts.query}")
            assert again.status_code == 400, again.text
            assert "deskside_session=" not in again.headers.get("set-cookie", "")
        async with client_of(app) as other:
            # A browser's own flow cookie, with a state it never started
            authorize = await to_provider(other)
            state = parse_qs(urlsplit(authorize).query)["state"][0]
            params = {"code": "x", "state": state + "x"}
            forged = await other.get("/ui/sso/callback", params=params)
            assert forged.status_code == 400
            # A state, and the very cookie it came with, replayed after use
            authorize = await to_provider(other)
            cookie = other.cookies.get("deskside_sso")
            assert cookie
            async with httpx.AsyncClient() as outside:
                at_provider = await outside.get(authorize)
            back = urlsplit(at_provider.headers["location"])
            first = await other.get(f"{back.path}?{back.query}")
            assert first.status_code == 303, first.text
        async with client_of(app) as replay:
            replay.cookies.set("deskside_sso", cookie, path="/ui/sso")
            replayed = await replay.get(f"{back.path}?{back.query}")
            assert replayed.status_code == 400, replayed.text
            assert "already used" in replayed.text
            assert (await replay.get("/ui/preview")).status_code == 303
        failed = [row for row in await people.audit() if row.action == "login_failed"]
        assert len(failed) == 3


async def test_a_login_page_without_sso_has_no_button(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    settings = demo_settings(monkeypatch, tmp_path, database, replace={"[server]\n": ADMIN})
    async with running(settings) as (app, _), client_of(app) as browser:
        assert "Sign in with SSO" not in (await browser.get("/ui/login")).text
        assert (await browser.get("/ui/sso/login")).status_code == 303  # to the login


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ('issuer = "http://idp.example"', "https://"),
        ('default_role = "owner"', "default_role"),
        ('allowed_domains = ["@team.example/x"]', "bare domains"),
    ],
)
def test_a_mistaken_oidc_table_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str, table: str, problem: str
) -> None:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    keys = {
        "issuer": '"https://idp.example"',
        "client_id": '"x"',
        "client_secret": '"s"',
        "default_role": '"viewer"',
    }
    name = table.split(" ")[0]
    lines = [f"{key} = {value}" for key, value in keys.items() if key != name] + [table]
    text = "[ui.oidc]\n" + "\n".join(lines) + "\n\n"
    with pytest.raises(ConfigError) as raised:
        demo_settings(monkeypatch, tmp_path, database, replace={"[server]\n": text + ADMIN})
    assert problem in str(raised.value)


def test_single_sign_on_needs_the_insights_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    monkeypatch.setenv("DESKSIDE_ADMIN_PASSWORD", PASSWORD)
    table = '[ui.oidc]\nissuer = "https://idp.example"\nclient_id = "x"\nclient_secret = "s"\n\n'
    with pytest.raises(ConfigError) as raised:
        demo_settings(
            monkeypatch,
            tmp_path,
            database,
            replace={"[server]\n": table + ADMIN, **NO_INSIGHTS},
        )
    assert "[ui.oidc] needs an [insights] table" in str(raised.value)
