"""Metrics, request ids and logs: through the real app in-process, and ``deskside serve
--workers 2`` (and gunicorn, where installed) as real processes.

Counters are process-wide, so every in-process test compares them before and after.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import logging.config
import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from deskside import logs
from deskside.config import Settings
from deskside.errors import UNAUTHORIZED_CODES
from deskside.helpdesks import protocol_classes
from deskside.server import create_app
from fake_http import unused_port
from helpers import (
    BASE_URL,
    HS_HEADER,
    HS_SECRET,
    TT_HEADER,
    TT_SECRET,
    demo_config_text,
    demo_settings,
    helpscout_request,
    helpscout_signature,
    make_demo_database,
    therethere_signature,
)

pytestmark = pytest.mark.anyio

ADMIN = "admin-token-observability"
HELPER_SECRET = "helper-test-secret"
PLAIN_SECRET = "plain-test-secret"
CARD_SECRET = "card-test-secret"
IDENTITY_TOKEN = "helper_identity-test-secret"
SECRETS = [HS_SECRET, TT_SECRET, HELPER_SECRET, PLAIN_SECRET, CARD_SECRET, IDENTITY_TOKEN, ADMIN]


def with_admin(*, metrics_public: bool = True) -> dict[str, Any]:
    server = "[server]\n" + ("" if metrics_public else "metrics_public = false\n")
    return {"replace": {"[server]\n": f'[admin]\ntoken = "{ADMIN}"\n\n{server}'}}


def sha256_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def helper_signature(secret: str, query: str) -> str:
    digest = hmac.new(secret.encode(), query.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def helper_query(email: str, timestamp: int | None = None) -> str:
    stamp = int(time.time()) if timestamp is None else timestamp
    return urllib.parse.urlencode({"email": email, "timestamp": stamp})


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_demo_database(tmp_path_factory.mktemp("observability") / "demo.db")


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The real app, lifespan included; no response checks (``/metrics`` is not JSON)."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE_URL) as client,
    ):
        yield client


@pytest.fixture
async def client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with served(demo_settings(monkeypatch, tmp_path, database, **with_admin())) as client:
        yield client


async def post_signed(
    client: httpx.AsyncClient,
    path: str,
    header: str,
    signature: str,
    body: bytes,
    **headers: str,
) -> httpx.Response:
    headers = {"Content-Type": "application/json", header: signature, **headers}
    return await client.post(path, content=body, headers=headers)


# ── Request metrics ───────────────────────────────────────────────────────────────────────────


async def test_requests_are_counted_by_helpdesk_and_status(client: httpx.AsyncClient) -> None:
    def counts() -> dict[str, float]:
        return {
            status: sample("deskside_requests_total", helpdesk="helpscout", status=status)
            for status in ("200", "400", "401", "405", "413")
        } | {"seconds": sample("deskside_request_duration_seconds_count", helpdesk="helpscout")}

    before = counts()
    good = json.dumps(helpscout_request("owner@acme.example")).encode()
    assert (
        await post_signed(
            client, "/helpscout", HS_HEADER, helpscout_signature(HS_SECRET, good), good
        )
    ).status_code == 200
    assert (
        await post_signed(client, "/helpscout", HS_HEADER, helpscout_signature("wrong", good), good)
    ).status_code == 401
    malformed = b"{not json"
    assert (
        await post_signed(
            client, "/helpscout", HS_HEADER, helpscout_signature(HS_SECRET, malformed), malformed
        )
    ).status_code == 400
    big = b"{" + b" " * (70 * 1024) + b"}"
    assert (await post_signed(client, "/helpscout", HS_HEADER, "x", big)).status_code == 413
    assert (await client.get("/helpscout")).status_code == 405
    after = counts()

    assert {key: after[key] - before[key] for key in after} == {
        "200": 1, "400": 1, "401": 1, "405": 1, "413": 1, "seconds": 5,
    }  # fmt: skip


async def test_extra_routes_count_apart_and_probes_not_at_all(client: httpx.AsyncClient) -> None:
    identity = sample("deskside_requests_total", helpdesk="helper/identity", status="200")
    helper = sample("deskside_request_duration_seconds_count", helpdesk="helper")
    answer = await client.post(
        "/helper/identity",
        json={"email": "owner@acme.example"},
        headers={"Authorization": f"Bearer {IDENTITY_TOKEN}"},
    )
    assert answer.status_code == 200
    for path in ("/healthz", "/readyz", "/metrics", "/no-such-path"):
        await client.get(path)
    assert sample("deskside_requests_total", helpdesk="helper/identity", status="200") == (
        identity + 1
    )
    assert sample("deskside_request_duration_seconds_count", helpdesk="helper") == helper
    text = (await client.get("/metrics")).text
    helpdesks = set(re.findall(r'deskside_requests_total\{helpdesk="([^"]*)"', text))
    assert helpdesks <= {*protocol_classes(), "helper/identity"}  # Helper's widget identity apart


# ── Signature failures ────────────────────────────────────────────────────────────────────────


async def test_every_refusal_is_counted_with_its_reason(client: httpx.AsyncClient) -> None:
    def failures() -> dict[tuple[str, str], float]:
        desks = ("helpscout", "therethere", "helper", "card", "helper/identity", "admin")
        return {
            (desk, code): sample("deskside_signature_failures_total", helpdesk=desk, reason=code)
            for desk in desks
            for code in UNAUTHORIZED_CODES
        }

    body = json.dumps(helpscout_request("owner@acme.example")).encode()
    tt_body = b'{"email": "owner@acme.example"}'
    query = helper_query("owner@acme.example")
    stale = helper_query("owner@acme.example", int(time.time()) - 3600)
    before = failures()
    refused = [
        # missing: no signature header at all
        await client.post("/helpscout", content=body),
        # malformed: not base64
        await post_signed(client, "/helpscout", HS_HEADER, "not base64!", body),
        # wrong_encoding: a hex digest of the right length where base64 is expected
        await post_signed(client, "/helpscout", HS_HEADER, "ab" * 20, body),
        # mismatch: signed with another secret
        await post_signed(client, "/therethere", TT_HEADER, sha256_hex("other", tt_body), tt_body),
        # expired: correctly signed, an hour old
        await client.get(
            f"/helper?{stale}",
            headers={"Authorization": f"Bearer {helper_signature(HELPER_SECRET, stale)}"},
        ),
        # malformed: not a bearer signature
        await client.get(f"/helper?{query}", headers={"Authorization": "Basic abc"}),
        # token: wrong bearer tokens for the widget identity and the admin endpoint
        await client.post(
            "/helper/identity", json={"email": "a@b.example"}, headers={"Authorization": "Bearer x"}
        ),
        await client.post("/admin/cache/clear", json={"email": "a@b.example"}),
        # missing: the generic endpoint without a signature
        await client.post("/card", content=tt_body),
    ]
    after = failures()

    assert [response.status_code for response in refused] == [401] * len(refused)
    assert all(response.json() == {"error": "invalid signature"} for response in refused)
    moved = {key: after[key] - before[key] for key in after if after[key] != before[key]}
    assert moved == {
        ("helpscout", "missing"): 1,
        ("helpscout", "malformed"): 1,
        ("helpscout", "wrong_encoding"): 1,
        ("therethere", "mismatch"): 1,
        ("helper", "expired"): 1,
        ("helper", "malformed"): 1,
        ("helper/identity", "token"): 1,
        ("admin", "token"): 1,
        ("card", "missing"): 1,
    }


# ── /metrics ──────────────────────────────────────────────────────────────────────────────────


async def test_metrics_are_prometheus_text_without_customer_data(
    client: httpx.AsyncClient,
) -> None:
    body = json.dumps(helpscout_request("owner@acme.example", "pat@initrode.example")).encode()
    await post_signed(client, "/helpscout", HS_HEADER, helpscout_signature(HS_SECRET, body), body)
    await post_signed(client, "/helpscout", HS_HEADER, "bad", body)
    await client.get("/owner@acme.example")  # a path is never a label
    await client.get("/helper?email=owner%40acme.example", headers={"X-Request-ID": "rid-1"})

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    for name in ("deskside_requests", "deskside_request_duration_seconds"):
        assert name in families
    assert "deskside_signature_failures" in families
    requests = families["deskside_requests"]
    assert any(
        s.labels == {"helpdesk": "helpscout", "status": "200"} and s.value >= 1
        for s in requests.samples
    )
    assert "app" in {s.labels["source"] for s in families["deskside_cache"].samples}
    assert "@" not in response.text
    assert "rid-1" not in response.text
    for family in families.values():
        if not family.name.startswith("deskside_"):
            continue  # the process and Python ones of the default registry
        for metric_sample in family.samples:
            assert set(metric_sample.labels) <= {"helpdesk", "status", "reason", "source", "kind",
                                                 "result", "answer", "le"}  # fmt: skip


async def test_metrics_can_require_the_admin_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database, **with_admin(metrics_public=False))
    failures = sample("deskside_signature_failures_total", helpdesk="metrics", reason="token")
    async with served(settings) as client:
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
        admin = await client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    assert (anonymous.status_code, wrong.status_code, admin.status_code) == (401, 401, 200)
    assert "deskside_requests_total" in admin.text
    after = sample("deskside_signature_failures_total", helpdesk="metrics", reason="token")
    assert after == failures + 2


def test_private_metrics_need_an_admin_token(tmp_path: Path) -> None:
    from deskside.config import load_settings
    from deskside.errors import ConfigError

    config = tmp_path / "deskside.toml"
    config.write_text(
        '[server]\nmetrics_public = false\n[sources.app]\nkind = "sql"\n'
        'url = "sqlite:///x.db"\nquery = "select 1 where :email = 1"\n'
    )
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    assert "metrics_public = false needs an [admin] token" in str(refused.value)
    config.write_text(config.read_text() + '[helpdesks.metrics]\nkind = "card"\ntoken = "t"\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(config)
    assert "/metrics is deskside's own path" in str(refused.value)


# ── Logs ──────────────────────────────────────────────────────────────────────────────────────


@contextmanager
def production_logging(log_format: logs.LogFormat, level: str) -> Iterator[io.StringIO]:
    """deskside's own logging set-up, writing to a buffer; the previous set-up afterwards."""
    config = logs.logging_config(log_format, level, stream=io.StringIO())
    names = ["", *config["loggers"]]
    saved = [
        (logging.getLogger(n), logging.getLogger(n).level, logging.getLogger(n).handlers[:],
         logging.getLogger(n).propagate, logging.getLogger(n).disabled)
        for n in names
    ]  # fmt: skip
    logging.config.dictConfig(config)
    stream = config["handlers"]["stderr"]["stream"]
    try:
        yield stream
    finally:
        for logger, level_, handlers, propagate, disabled in saved:
            for handler in logger.handlers:
                if handler not in handlers:
                    handler.close()
            logger.setLevel(level_)
            logger.handlers = handlers
            logger.propagate = propagate
            logger.disabled = disabled


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def test_every_log_line_of_a_request_carries_its_id(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database)
    body = b'{"email": "owner@acme.example"}'
    with production_logging("json", "info") as stream:
        async with served(settings) as client:
            good = await post_signed(
                client, "/therethere", TT_HEADER, therethere_signature(TT_SECRET, body), body
            )
            refused = await post_signed(client, "/therethere", TT_HEADER, "00" * 32, body)
            kept = await client.get("/healthz", headers={"X-Request-ID": "lb-42.a:b_c"})
            replaced = await client.get("/healthz", headers={"X-Request-ID": "not a sane id"})
            too_long = await client.get("/healthz", headers={"X-Request-ID": "a" * 65})
    lines = json_lines(stream)

    ids = [r.headers["x-request-id"] for r in (good, refused, kept, replaced, too_long)]
    assert ids[2] == "lb-42.a:b_c"
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in (ids[0], ids[1], ids[3], ids[4]))
    assert len(set(ids)) == 5
    access = [line for line in lines if line["logger"] == "deskside.access"]
    assert [(a["method"], a["path"], a["status"], a["request_id"]) for a in access] == [
        ("POST", "/therethere", 200, ids[0]),
        ("POST", "/therethere", 401, ids[1]),
    ]  # the probes are logged at debug level only
    assert access[0]["helpdesk"] == "therethere"
    assert isinstance(access[0]["duration_ms"], float)
    assert {"time", "level", "logger", "message", "pid"} <= set(access[0])
    rejection = next(line for line in lines if "rejected request" in line["message"])
    assert rejection["request_id"] == ids[1]
    assert rejection["level"] == "WARNING"
    assert "does not match any configured secret" in rejection["message"]
    assert (rejection["helpdesk"], rejection["reason"]) == ("therethere", "mismatch")
    assert all("request_id" not in line for line in lines if line["logger"] == "uvicorn.error")


async def test_access_lines_leave_the_query_string_out(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    settings = demo_settings(monkeypatch, tmp_path, database)
    query = helper_query("owner@acme.example")
    with production_logging("text", "debug") as stream:
        async with served(settings) as client:
            answer = await client.get(
                f"/helper?{query}",
                headers={"Authorization": f"Bearer {helper_signature(HELPER_SECRET, query)}"},
            )
            probe = await client.get("/healthz")
            await client.get("/a%0Afake%20line")
    text = stream.getvalue()
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    assert f"deskside.access [{request_id}]: GET /helper 200 " in text
    assert f"deskside.access [{probe.headers['x-request-id']}]: GET /healthz 200 " in text
    assert "GET /a\\x0afake line 404" in text  # no forged line
    assert "email" not in text and "acme" not in text and "timestamp=" not in text


def test_a_json_line_is_one_line_whatever_the_record_holds() -> None:
    with production_logging("json", "info") as stream:
        try:
            raise ValueError("broken\nsecond line")
        except ValueError:
            logging.getLogger("deskside.test").exception(
                "failed for %s\nforged line ☃", "x", extra={"source": "app", "since": object}
            )
    (text,) = stream.getvalue().splitlines()
    assert text.isascii()
    line = json.loads(text)
    assert list(line)[:5] == ["time", "level", "logger", "message", "pid"]
    assert line["level"] == "ERROR" and line["logger"] == "deskside.test"
    assert line["message"] == "failed for x\nforged line ☃"
    assert line["source"] == "app" and line["since"] == "<class 'object'>"
    assert line["exc_info"].endswith("ValueError: broken\nsecond line")
    assert line["time"].endswith("+00:00")


def test_text_lines_outside_a_request_have_no_id() -> None:
    with production_logging("text", "info") as stream:
        logging.getLogger("deskside.test").info("hello")
    assert re.search(r" INFO deskside\.test \[-\]: hello$", stream.getvalue().strip())


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_no_secret_signature_authorization_or_body_is_ever_logged(
    log_format: logs.LogFormat, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    """Every kind of request, good and refused, at debug level: the log holds none of what
    was sent but the method and path."""
    settings = demo_settings(monkeypatch, tmp_path, database, **with_admin(), deadline_ms=400,
                             sources='[sources.down]\nkind = "http"\nurl = "http://127.0.0.1:'
                             f'{unused_port()}/u?email={{email}}"\n')  # fmt: skip
    sent: list[str] = []  # everything secret or customer-bound that went over the wire

    async def send(method: str, url: str, body: bytes = b"", **headers: str) -> httpx.Response:
        sent.extend(value for name, value in headers.items() if name.lower() != "content-type")
        if body:
            sent.append(body.decode())
        if "?" in url:
            sent.append(url.split("?", 1)[1])
        return await client.request(method, url, content=body, headers=headers)

    hs_body = json.dumps(helpscout_request("owner@acme.example", "pat@initrode.example")).encode()
    tt_body = b'{"email": "lapsed@globex.example"}'
    plain_body = json.dumps(
        {"cardKeys": ["account"], "customer": {"email": "pat@initech.example"}}
    ).encode()
    card_body = b'{"emails": ["mallory@evil.example"]}'
    query = helper_query("owner+vip@acme.example")
    stale = helper_query("owner@acme.example", 1_600_000_000)

    def hs_sign(secret: str) -> str:
        return helpscout_signature(secret, hs_body)

    def tt_sign(body: bytes, secret: str = TT_SECRET) -> str:
        return therethere_signature(secret, body)

    def h_sign(query: str, secret: str = HELPER_SECRET) -> str:
        return helper_signature(secret, query)

    identity = b'{"email": "owner@acme.example"}'
    clear = b'{"email": "pat@initech.example"}'
    oversized = b'{"email": "x' + b"y" * 70_000 + b'@z.example"}'
    nested = b'{"email": ["nested@list.example"]}'
    plain, card = "Plain-Request-Signature", "X-Deskside-Signature"
    plain_sig, card_sig = sha256_hex(PLAIN_SECRET, plain_body), sha256_hex(CARD_SECRET, card_body)

    def bearer(value: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {value}"}

    with production_logging(log_format, "debug") as stream:
        async with served(settings) as client:
            answers = [
                await send("POST", "/helpscout", hs_body, **{HS_HEADER: hs_sign(HS_SECRET)}),
                await send("POST", "/helpscout", hs_body, **{HS_HEADER: hs_sign("guess")}),
                await send("POST", "/helpscout", hs_body, **{HS_HEADER: "ab" * 20}),
                await send("POST", "/helpscout", hs_body, **{HS_HEADER: "dGhpcy1pcy11cmw_-"}),
                await send("POST", "/therethere", tt_body, **{TT_HEADER: tt_sign(tt_body)}),
                await send("POST", "/therethere", tt_body, **{TT_HEADER: tt_sign(tt_body, "x")}),
                await send("GET", f"/helper?{query}", **bearer(h_sign(query))),
                await send("GET", f"/helper?{stale}", **bearer(h_sign(stale))),
                await send("GET", f"/helper?{query}", **bearer(h_sign(query, "x"))),
                await send("POST", "/plain", plain_body, **{plain: plain_sig}),
                await send("POST", "/plain", plain_body, **{plain: sha256_hex("x", plain_body)}),
                await send("POST", "/card", card_body, **{card: card_sig}),
                await send("POST", "/card", card_body, **bearer("card-bearer-guess")),
                await send("POST", "/helper/identity", identity, **bearer(IDENTITY_TOKEN)),
                await send("POST", "/helper/identity", identity, **bearer("identity-guess")),
                await send("POST", "/admin/cache/clear", clear, **bearer(ADMIN)),
                await send("POST", "/admin/cache/clear", clear, **bearer("admin-guess")),
                await send("POST", "/therethere", oversized, **{TT_HEADER: "ab" * 32}),
                await send("POST", "/therethere", nested, **{TT_HEADER: tt_sign(nested)}),
                await send("GET", "/metrics", **bearer("metrics-guess")),
            ]  # fmt: skip
    output = stream.getvalue()

    assert [a.status_code for a in answers] == [
        200, 401, 401, 401, 200, 401, 200, 401, 401, 200, 401, 200, 401, 200, 401, 200, 401, 413,
        400, 200,
    ]  # fmt: skip
    assert output.count("deskside.access") == len(answers)  # every request was logged...
    assert "source down failed" in output  # ...and so was the failing source
    for value in [*SECRETS, *sent]:
        assert value not in output, value
    for email in ("owner", "initrode", "globex", "initech", "evil.example", "nested", "@"):
        assert email not in output, email
    for needle in ("Bearer", "Authorization", "authorization", "yyyyyyyy"):
        assert needle not in output, needle


# ── Real processes ────────────────────────────────────────────────────────────────────────────


def demo_process_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A demo config on a fresh demo database, and the environment its secrets come from."""
    database = make_demo_database(tmp_path / "demo.db")
    config = tmp_path / "deskside.toml"
    config.write_text(demo_config_text(), encoding="utf-8")
    env = {
        **os.environ,
        "DESKSIDE_DEMO_DATABASE_URL": database,
        "HELPSCOUT_SECRET": HS_SECRET,
        "THERETHERE_SECRET": TT_SECRET,
        "HELPER_SECRET": HELPER_SECRET,
        "PLAIN_SECRET": PLAIN_SECRET,
        "CARD_SECRET": CARD_SECRET,
        "HELPER_IDENTITY_TOKEN": IDENTITY_TOKEN,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("STRIPE_API_KEY", None)
    return config, env


def wait_until_serving(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"no answer at {base}: {log.read_text()}")


async def send_batch(base: str, count: int) -> list[httpx.Response]:
    """``count`` signed There There requests at once, each on its own connection (so that the
    kernel hands them to different workers), and one refused request."""
    body = b'{"email": "owner@acme.example"}'
    headers = {TT_HEADER: therethere_signature(TT_SECRET, body)}
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10) as client:
        good = [client.post("/therethere", content=body, headers=headers) for _ in range(count)]
        bad = client.post("/therethere", content=body, headers={TT_HEADER: "00" * 32})
        return list(await asyncio.gather(*good, bad))


def therethere_totals(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}, timeout=5).text
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "deskside_requests_total" and s.labels["helpdesk"] == "therethere":
                totals[s.labels["status"]] = s.value
            if s.name == "deskside_signature_failures_total":
                totals[f"{s.labels['helpdesk']}:{s.labels['reason']}"] = s.value
    return totals


def access_lines(log: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line["logger"] == "deskside.access"]


def test_serve_with_workers_adds_up_every_worker(tmp_path: Path) -> None:
    config, env = demo_process_env(tmp_path)
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "deskside", "serve", "-c", str(config), "--port", str(port),
             "--workers", "2"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
        )  # fmt: skip
    try:
        wait_until_serving(base, process, log)
        answers: list[httpx.Response] = []
        deadline = time.monotonic() + 90  # the second worker may start late on a busy machine
        while time.monotonic() < deadline:  # until both workers have answered some
            answers += asyncio.run(send_batch(base, 12))
            if len({line["pid"] for line in access_lines(log)}) >= 2:
                break
        totals = [therethere_totals(base) for _ in range(4)]  # asked of either worker
        directory = re.search(r"added up in (\S+)\"", log.read_text())
        assert directory is not None, log.read_text()
        assert Path(directory.group(1)).is_dir()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert not Path(directory.group(1)).exists()  # removed when the server stopped

    sent_ok = sum(a.status_code == 200 for a in answers)
    refused = sum(a.status_code == 401 for a in answers)
    assert sent_ok + refused == len(answers)
    lines = access_lines(log)
    assert len({line["pid"] for line in lines}) == 2, "every request went to one worker"
    for total in totals:
        assert total == {"200": sent_ok, "401": refused, "therethere:mismatch": refused}
    by_id = {line["request_id"]: line for line in lines}
    for answer in answers:
        line = by_id[answer.headers["x-request-id"]]
        assert (line["path"], line["status"]) == ("/therethere", answer.status_code)
    output = log.read_text()
    assert TT_SECRET not in output
    assert "owner@acme.example" not in output


def test_gunicorn_with_uvicorn_workers_runs_the_factory(tmp_path: Path) -> None:
    """The README's gunicorn command, with its PROMETHEUS_MULTIPROC_DIR."""
    pytest.importorskip("gunicorn", reason="gunicorn is in the bench extra")
    pytest.importorskip("uvicorn_worker", reason="pip install uvicorn-worker")
    config, env = demo_process_env(tmp_path)
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env |= {"DESKSIDE_CONFIG": str(config), "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    port = unused_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", "2", "-k", "uvicorn_worker.UvicornWorker",
             "-b", f"127.0.0.1:{port}", "deskside.server:create_app_from_env()"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            cwd=tmp_path,
        )  # fmt: skip
    try:
        wait_until_serving(base, process, log)
        answers = asyncio.run(send_batch(base, 8))
        totals = therethere_totals(base)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert [a.status_code for a in answers] == [200] * 8 + [401]
    assert totals == {"200": 8, "401": 1, "therethere:mismatch": 1}
    assert len(access_lines(log)) == 9
    assert "owner@acme.example" not in log.read_text()
