"""Gorgias's HTTP integration, end to end: the address by GET or POST, a bearer token, and the
flat JSON a Gorgias widget template reads by path (what every helpdesk owes is in
test_helpdesk_contract.py)."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deskside.cli import app
from deskside.demo import demo_secret_envs
from deskside.errors import Unauthorized
from deskside.protocols import RawRequest
from deskside.protocols.gorgias import Gorgias, GorgiasConfig
from deskside.server import create_app
from helpers import add_customer, demo_settings, make_demo_database, serve

pytestmark = pytest.mark.anyio

TOKEN = "gorgias-test-secret"  # what demo_settings gives $GORGIAS_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KEYS = ["title", "subtitle", "badges", "fields", "sections", "links", "notes", "other_accounts"]
HOSTILE = '"><script>alert(1)</script> **bold** [x](javascript:alert(1)) \\*kept\\* `code`'


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    database = make_demo_database(tmp_path_factory.mktemp("gorgias") / "demo.db")
    add_customer(database, "hostile@gorgias.example", company=HOSTILE, name="Eve\u202e\x00x")
    add_customer(database, "huge@gorgias.example", company="Huge", name="H", modules="m," * 50_000)
    return database


@pytest.fixture
async def client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(demo_settings(monkeypatch, tmp_path, database)) as client:
        yield client


def desk(*tokens: str) -> Gorgias:
    return Gorgias("gorgias", GorgiasConfig(kind="gorgias", secret=list(tokens)))


def request(authorization: str | None) -> RawRequest:
    headers = {} if authorization is None else {"authorization": authorization}
    return RawRequest("GET", b"", b"email=owner%40acme.example", headers)


# ── The bearer token ─────────────────────────────────────────────────────────────────────────


def test_every_token_of_a_rotation_is_accepted() -> None:
    rotating = desk("the-new-long-random-token", "the-old-long-random-token")
    rotating.verify(request("Bearer the-new-long-random-token"))
    rotating.verify(request("bearer the-old-long-random-token"))  # the scheme is case-blind


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer ",
        "the-new-long-random-token",  # the token without "Bearer"
        "Basic the-new-long-random-token",
        "Bearer the-new-long-random-toke",  # a prefix
        "Bearer the-new-long-random-tokens",
        "Bearer THE-NEW-LONG-RANDOM-TOKEN",
    ],
)
def test_anything_but_a_configured_token_is_refused(authorization: str | None) -> None:
    with pytest.raises(Unauthorized):
        desk("the-new-long-random-token").verify(request(authorization))


def test_gorgias_signs_nothing_so_deskside_sign_says_so() -> None:
    result = CliRunner().invoke(app, ["sign", "--desk", "gorgias", "--secret", "s"], input="{}")
    assert result.exit_code == 2, result.output
    assert "signs nothing" in result.output


async def test_a_wrong_token_is_401_without_data(client: httpx.AsyncClient) -> None:
    params = {"email": "owner@acme.example"}
    response = await client.get("/gorgias", params=params, headers={"Authorization": "Bearer x"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid signature"}


# ── The address, however Gorgias sends it ───────────────────────────────────────────────────


async def test_get_with_the_address_in_the_query(client: httpx.AsyncClient) -> None:
    params = {"email": " Owner@ACME.example "}
    answer = (await client.get("/gorgias", params=params, headers=AUTH)).json()
    assert answer["title"] == "Acme HR"


async def test_post_with_a_json_body_a_form_or_the_query(client: httpx.AsyncClient) -> None:
    posts = [
        {"json": {"email": "owner@acme.example", "ticket_id": "123"}},
        {"json": {"emails": ["nobody@example.com", "owner@acme.example"]}},
        {"data": {"email": "owner@acme.example", "ticket_id": "123"}},
        {"params": {"email": "owner@acme.example"}},
    ]
    for post in posts:
        response = await client.post("/gorgias", headers=AUTH, **post)  # type: ignore[arg-type]
        assert response.status_code == 200, post
        assert response.json()["title"] == "Acme HR", post


@pytest.mark.parametrize(
    "body", [b'{"email": 5}', b'{"emails": "a@x.example"}', b"[]", b'{"email": ']
)
async def test_a_post_body_of_the_wrong_shape_is_400(
    client: httpx.AsyncClient, body: bytes
) -> None:
    headers = {**AUTH, "Content-Type": "application/json"}
    response = await client.post("/gorgias", content=body, headers=headers)
    assert response.status_code == 400
    assert list(response.json()) == ["error"]


@pytest.mark.parametrize(
    "query",
    [
        "email=nobody%40example.com",  # nobody has this address
        "email=",  # a ticket whose customer has no address: Gorgias's variable is empty
        "email=%7B%7Bticket.customer.email%7D%7D",  # a template Gorgias did not fill in
        "",
    ],
)
async def test_not_found_is_200_and_an_empty_object(client: httpx.AsyncClient, query: str) -> None:
    response = await client.get(f"/gorgias?{query}", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {}


# ── The answer a widget template reads ───────────────────────────────────────────────────────


async def test_the_answer_is_flat_typed_and_its_keys_never_move(client: httpx.AsyncClient) -> None:
    answer = (await client.get("/gorgias?email=owner@acme.example", headers=AUTH)).json()
    assert list(answer) == KEYS
    assert answer["subtitle"] == "Olivia Owner · owner"
    assert answer["badges"] == ["Pro", "Owner"]
    assert answer["fields"]["MRR"] == 249  # a number stays a number
    assert answer["fields"]["Renews"][:2] == "20"  # a date in ISO 8601
    billing = answer["sections"]["Billing"]
    assert billing["Stripe dashboard"].startswith("https://dashboard.stripe.com/customers/")
    assert answer["links"] == {"Open in admin": "https://admin.hr-demo.example/companies/1"}
    assert answer["notes"] == [] and answer["other_accounts"] == []
    for value in [*answer["fields"].values(), *billing.values()]:
        assert isinstance(value, str | int | float | bool)


async def test_two_accounts_the_first_on_top_the_other_with_the_same_keys(
    client: httpx.AsyncClient,
) -> None:
    query = "email=pat@initech.example&email=pat@initrode.example"
    answer = (await client.get(f"/gorgias?{query}", headers=AUTH)).json()
    assert [answer["title"], *(a["title"] for a in answer["other_accounts"])] == [
        "Initech",
        "Initrode",
    ]
    assert list(answer["other_accounts"][0]) == KEYS[:6]


async def test_customer_data_is_plain_text_as_written(client: httpx.AsyncClient) -> None:
    """Gorgias's widget shows values as text: nothing is escaped (no stray backslashes or
    entities), and control and direction characters are gone."""
    answer = (await client.get("/gorgias?email=hostile@gorgias.example", headers=AUTH)).json()
    assert answer["title"] == HOSTILE
    assert answer["subtitle"] == "Evex · owner"


async def test_a_huge_customer_stays_under_64_kib(client: httpx.AsyncClient) -> None:
    response = await client.get("/gorgias?email=huge@gorgias.example", headers=AUTH)
    assert response.status_code == 200
    assert len(response.content) <= 64 * 1024
    assert response.json()["title"] == "Huge"


# ── One route, two methods ───────────────────────────────────────────────────────────────────


def test_the_schema_publishes_get_and_post_each_as_an_operation_of_its_own(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database: str
) -> None:
    application = create_app(demo_settings(monkeypatch, tmp_path, database))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. FastAPI's "Duplicate Operation ID"
        schema = application.openapi()
    operations = schema["paths"]["/gorgias"]
    assert sorted(operations) == ["get", "post"]
    assert (
        operations["get"]["security"] == operations["post"]["security"] == [{"gorgias_token": []}]
    )
    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids)), ids


async def test_another_method_is_405_allowing_get_and_post(client: httpx.AsyncClient) -> None:
    response = await client.put("/gorgias?email=owner@acme.example", headers=AUTH)
    assert response.status_code == 405
    assert sorted(response.headers["allow"].split(", ")) == ["GET", "POST"]


# ── Setup and the demo ───────────────────────────────────────────────────────────────────────


def test_setup_gives_the_url_template_and_the_header_value() -> None:
    values = desk("first-token", "second-token").setup_values("https://deskside.example")
    shown = {value.label: value for value in values}
    url = shown["URL (with Gorgias's variable)"].value
    assert url == "https://deskside.example/gorgias?email={{ticket.customer.email}}"
    header = shown["Header value"]
    assert header.value == "Bearer first-token" and header.secret


def test_the_demo_reads_its_token_from_gorgias_token() -> None:
    assert demo_secret_envs()["gorgias"] == "GORGIAS_TOKEN"
    (post,) = desk(TOKEN).demo_requests("http://127.0.0.1:8000")
    assert post.request.method == "POST"
    assert post.request.headers["authorization"] == f"Bearer {TOKEN}"
