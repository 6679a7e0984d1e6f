"""The ``stripe`` source: the real SDK making real HTTP requests to a local fake of Stripe."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stripe
from pydantic import ValidationError

from deskside.config import Settings
from deskside.demo import create_demo_database
from deskside.errors import SourceError
from deskside.lookup import Lookup
from deskside.resolve import Resolver
from deskside.sources import build_source
from deskside.sources.sql import SqlSource, SqlSourceConfig
from deskside.sources.stripe import StripeSource, StripeSourceConfig, monthly_cents
from fake_http import unused_port
from fake_stripe import API_KEY, FakeStripe
from test_source_contract import ContractCase, SilentServer

pytestmark = pytest.mark.anyio

DAY = 86400
TRIAL_END = 1_767_225_600 + 14 * DAY  # 2026-01-15T00:00:00Z
PERIOD_END = 1_769_904_000  # 2026-02-01T00:00:00Z


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    """A fake Stripe with pages of two, so that any list longer than that is paginated."""
    with FakeStripe(page_size=2) as server:
        yield server


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's own backoff (0.5 s, doubling) shortened to 50 ms, doubling: same code path."""
    monkeypatch.setattr(stripe.HTTPClient, "INITIAL_DELAY", 0.05)
    monkeypatch.setattr(stripe.HTTPClient, "MAX_DELAY", 0.2)


def config(fake: FakeStripe, **overrides: Any) -> StripeSourceConfig:
    table = {"kind": "stripe", "api_key": fake.api_key, "api_base": fake.url, **overrides}
    return StripeSourceConfig.model_validate(table)


@asynccontextmanager
async def stripe_source(fake: FakeStripe, **overrides: Any) -> AsyncIterator[StripeSource]:
    source = StripeSource("billing", config(fake, **overrides))
    try:
        yield source
    finally:
        await source.aclose()


def lookup(*emails: str) -> Lookup:
    return Lookup(emails=emails)


def at(timestamp: int) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


# -- finding customers ----------------------------------------------------------------------


async def test_customer_found_by_a_second_address_only(fake: FakeStripe) -> None:
    customer = fake.add_customer("pat@initrode.example", name="Pat Patel")
    subscription = fake.add_subscription(customer, fake.price(4900, nickname="Starter"))
    fake.add_customer("someone@else.example")

    async with stripe_source(fake) as source:
        records = await source.fetch(lookup("pat@initech.example", "pat@initrode.example"))

    assert [(r["customer_id"], r["subscription_id"]) for r in records] == [
        (customer["id"], subscription["id"])
    ]
    assert records[0]["email"] == "pat@initrode.example"
    assert records[0]["name"] == "Pat Patel"
    searched = [r.params["email"] for r in fake.received("/v1/customers")]
    assert sorted(searched) == ["pat@initech.example", "pat@initrode.example"]
    assert all(r.params["limit"] == "100" for r in fake.received("/v1/customers"))


async def test_unknown_customer_is_an_empty_list(fake: FakeStripe) -> None:
    fake.add_customer("owner@acme.example")

    async with stripe_source(fake) as source:
        assert await source.fetch(lookup("nobody@example.com")) == []

    assert fake.received("/v1/subscriptions") == []


async def test_customer_without_subscriptions_is_one_record_with_the_same_keys(
    fake: FakeStripe,
) -> None:
    paying = fake.add_customer("a@acme.example")
    fake.add_subscription(paying, fake.price(1000, nickname="Basic"))
    lone = fake.add_customer("b@acme.example", name="Bo", currency=None)

    async with stripe_source(fake) as source:
        with_subscription, without = await source.fetch(lookup("a@acme.example", "b@acme.example"))

    assert without.keys() == with_subscription.keys()
    assert without["customer_id"] == lone["id"]
    assert without["subscription_id"] is None
    assert without["status"] is None
    assert without["mrr_cents"] is None
    assert without["customer_mrr_cents"] == 0
    assert without["items"] == []
    assert without["customer_url"] == f"https://dashboard.stripe.com/test/customers/{lone['id']}"


async def test_several_customers_and_subscriptions_most_relevant_first(fake: FakeStripe) -> None:
    first = fake.add_customer("owner@acme.example", name="Acme US")
    canceled = fake.add_subscription(first, fake.price(900, nickname="Old"), status="canceled")
    past_due = fake.add_subscription(first, fake.price(2000, nickname="Add-on"), status="past_due")
    active = fake.add_subscription(first, fake.price(4900, nickname="Pro"), quantity=2)
    second = fake.add_customer("owner@acme.example", name="Acme EU", currency="eur")
    trial = fake.add_subscription(
        second, fake.price(9900, nickname="Business", currency="eur"), status="trialing"
    )

    async with stripe_source(fake) as source:
        records = await source.fetch(lookup("owner@acme.example"))

    by_customer = [(r["name"], r["subscription_id"], r["status"]) for r in records]
    assert by_customer == [
        ("Acme EU", trial["id"], "trialing"),  # Stripe lists the newest customer first
        ("Acme US", active["id"], "active"),
        ("Acme US", past_due["id"], "past_due"),
    ]
    assert canceled["id"] not in {r["subscription_id"] for r in records}
    assert all("status" not in r.params for r in fake.received("/v1/subscriptions"))
    us = records[1]
    assert us["currency"] == "USD"
    assert us["mrr_cents"] == 9800
    assert us["customer_mrr_cents"] == 9800 + 2000  # active and past_due count, not trials
    assert records[0]["currency"] == "EUR"
    assert records[0]["customer_mrr_cents"] == 0


async def test_include_canceled_lists_every_status(fake: FakeStripe) -> None:
    customer = fake.add_customer("gone@vandelay.example")
    canceled = fake.add_subscription(customer, fake.price(900, nickname="Old"), status="canceled")

    async with stripe_source(fake, include_canceled=True) as source:
        (record,) = await source.fetch(lookup("gone@vandelay.example"))

    assert record["subscription_id"] == canceled["id"]
    assert record["status"] == "canceled"
    assert record["canceled_at"] == at(canceled["canceled_at"])
    assert record["customer_mrr_cents"] == 0
    assert [r.params["status"] for r in fake.received("/v1/subscriptions")] == ["all"]


async def test_every_page_is_read(fake: FakeStripe) -> None:
    customers = [fake.add_customer("shared@bulk.example", name=f"C{n}") for n in range(3)]
    for n in range(5):
        fake.add_subscription(customers[0], fake.price(100 * (n + 1), nickname=f"Plan {n}"))

    async with stripe_source(fake) as source:
        records = await source.fetch(lookup("shared@bulk.example"))

    assert {r["customer_id"] for r in records} == {c["id"] for c in customers}
    subscriptions = {
        r["subscription_id"] for r in records if r["customer_id"] == customers[0]["id"]
    }
    assert subscriptions == {s["id"] for s in fake.subscriptions}
    assert len(records) == 5 + 2
    pages = fake.received("/v1/subscriptions")
    first_customer_pages = [p for p in pages if p.params["customer"] == customers[0]["id"]]
    assert len(first_customer_pages) == 3  # 2 + 2 + 1
    assert sum("starting_after" in p.params for p in first_customer_pages) == 2
    assert sum("starting_after" in p.params for p in fake.received("/v1/customers")) == 1


# -- what a record says ---------------------------------------------------------------------


async def test_monthly_recurring_revenue_is_normalised(fake: FakeStripe) -> None:
    customer = fake.add_customer("cfo@umbrella.example")
    yearly = fake.add_subscription(customer, fake.price(120_000, "year", nickname="Annual"))
    weekly = fake.add_subscription(
        customer, fake.price(1000, "week", nickname="Weekly"), quantity=2
    )
    quarterly = fake.add_subscription(
        customer, fake.price(3000, "month", interval_count=3, nickname="Quarterly")
    )
    daily = fake.add_subscription(customer, fake.price(100, "day", nickname="Daily"))
    seats = fake.add_subscription(customer, fake.price(2500, nickname="Seats"), quantity=3)
    metered = fake.add_subscription(
        customer, fake.price(5, nickname="API calls", usage_type="metered"), quantity=None
    )

    async with stripe_source(fake) as source:
        records = await source.fetch(lookup("cfo@umbrella.example"))

    mrr = {r["subscription_id"]: r["mrr_cents"] for r in records}
    assert mrr == {
        yearly["id"]: 10_000,
        weekly["id"]: 8667,  # 2 * 1000 * 52 / 12 = 8666.67
        quarterly["id"]: 1000,
        daily["id"]: 3042,  # 100 * 365 / 12 = 3041.67
        seats["id"]: 7500,
        metered["id"]: None,  # depends on usage
    }
    assert records[0]["customer_mrr_cents"] == 10_000 + 8667 + 1000 + 3042 + 7500
    row = next(r for r in records if r["subscription_id"] == weekly["id"])
    assert (row["plan"], row["amount_cents"], row["interval"], row["quantity"]) == (
        "Weekly",
        1000,
        "week",
        2,
    )
    quarter = next(r for r in records if r["subscription_id"] == quarterly["id"])
    assert (quarter["interval"], quarter["interval_count"]) == ("month", 3)


def test_monthly_cents_without_a_fixed_price_is_unknown() -> None:
    tiered = {"unit_amount": None, "recurring": {"interval": "month"}}
    one_off = {"unit_amount": 500, "recurring": None}
    fractional = {
        "unit_amount": None,
        "unit_amount_decimal": "12.5",
        "recurring": {"interval": "month"},
    }
    assert monthly_cents(tiered, 1) is None
    assert monthly_cents(one_off, 1) is None
    assert monthly_cents(fractional, 4) == 50


async def test_trial_and_period_ends_are_aware_datetimes(fake: FakeStripe) -> None:
    customer = fake.add_customer("trial@hooli.example")
    trialing = fake.add_subscription(
        customer,
        fake.price(4900, nickname="Pro"),
        status="trialing",
        trial_end=TRIAL_END,
        current_period_end=TRIAL_END,
    )

    async with stripe_source(fake) as source:
        (record,) = await source.fetch(lookup("trial@hooli.example"))

    assert record["subscription_id"] == trialing["id"]
    assert record["status"] == "trialing"
    assert record["trial_end"] == at(TRIAL_END)
    assert record["trial_end"].tzinfo is not None
    assert record["current_period_end"] == at(TRIAL_END)
    assert record["cancel_at_period_end"] is False
    assert record["started_at"] == at(trialing["start_date"])


@pytest.mark.parametrize("on_items", [True, False], ids=["items (2025-03-31+)", "subscription"])
async def test_current_period_end_from_either_api_version(fake: FakeStripe, on_items: bool) -> None:
    customer = fake.add_customer("owner@acme.example")
    fake.add_subscription(
        customer,
        fake.price(4900, nickname="Pro"),
        current_period_end=PERIOD_END,
        period_on_items=on_items,
        cancel_at_period_end=True,
    )

    async with stripe_source(fake) as source:
        (record,) = await source.fetch(lookup("owner@acme.example"))

    assert record["current_period_end"] == at(PERIOD_END)
    assert record["cancel_at_period_end"] is True


async def test_plan_is_nickname_else_product_name_else_price_id(fake: FakeStripe) -> None:
    customer = fake.add_customer("owner@acme.example")
    product = fake.add_product("HR Suite")
    named = fake.add_subscription(customer, fake.price(4900, nickname="Pro", product=product))
    unnamed = fake.add_subscription(customer, fake.price(5900, product=product))
    orphan_price = fake.price(6900, product="prod_deleted")
    orphan = fake.add_subscription(customer, orphan_price)
    two_items = fake.add_subscription(
        customer, fake.price(4900, nickname="Pro"), fake.price(1000, nickname="SSO")
    )

    async with stripe_source(fake) as source:
        records = await source.fetch(lookup("owner@acme.example"))
        again = await source.fetch(lookup("owner@acme.example"))

    plans = {r["subscription_id"]: r["plan"] for r in records}
    assert plans == {
        named["id"]: "Pro",
        unnamed["id"]: "HR Suite",
        orphan["id"]: orphan_price["id"],
        two_items["id"]: "Pro + SSO",
    }
    both = next(r for r in records if r["subscription_id"] == two_items["id"])
    assert [item["plan"] for item in both["items"]] == ["Pro", "SSO"]
    assert both["mrr_cents"] == 5900
    assert again == records
    (names,) = fake.received("/v1/products")  # asked once, then remembered
    assert sorted(names.params["ids"]) == sorted([product["id"], "prod_deleted"])
    expansions = [e for r in fake.received() for e in r.params.get("expand", [])]
    assert all(len(e.split(".")) <= 4 for e in expansions)


async def test_dashboard_links_follow_the_mode(fake: FakeStripe) -> None:
    live = fake.add_customer("live@acme.example", livemode=True)
    subscription = fake.add_subscription(live, fake.price(4900, nickname="Pro"))

    async with stripe_source(fake, dashboard_url="https://dash.example/") as source:
        (record,) = await source.fetch(lookup("live@acme.example"))

    assert record["livemode"] is True
    assert record["customer_url"] == f"https://dash.example/customers/{live['id']}"
    assert record["subscription_url"] == f"https://dash.example/subscriptions/{subscription['id']}"


# -- failures -------------------------------------------------------------------------------


async def test_retryable_429_is_retried_with_backoff(fake: FakeStripe) -> None:
    customer = fake.add_customer("owner@acme.example")
    fake.add_subscription(customer, fake.price(4900, nickname="Pro"))
    fake.fail(429, times=2, code="lock_timeout", should_retry=True)

    async with stripe_source(fake, max_network_retries=2) as source:
        records = await source.fetch(lookup("owner@acme.example"))

    assert [r["customer_id"] for r in records] == [customer["id"]]
    attempts = fake.received("/v1/customers")
    assert len(attempts) == 3
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert all(gap >= 0.045 for gap in gaps), gaps  # the SDK's backoff, never under INITIAL_DELAY


async def test_plain_rate_limit_is_retried_with_backoff(fake: FakeStripe) -> None:
    """The SDK does not retry a 429 without ``Stripe-Should-Retry``; the source does."""
    customer = fake.add_customer("owner@acme.example")
    fake.fail(429, times=2)

    async with stripe_source(fake, max_network_retries=2) as source:
        records = await source.fetch(lookup("owner@acme.example"))

    assert [r["customer_id"] for r in records] == [customer["id"]]
    attempts = fake.received("/v1/customers")
    assert len(attempts) == 3
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert gaps[0] >= 0.15, gaps  # 0.25 s ± jitter, then about twice that
    assert gaps[1] >= 0.3, gaps


async def test_persistent_rate_limit_gives_up_after_the_retries(fake: FakeStripe) -> None:
    fake.add_customer("owner@acme.example")
    fake.fail(429, times=5)

    async with stripe_source(fake, max_network_retries=1) as source:
        with pytest.raises(SourceError, match=r"^rate limited by Stripe \(HTTP 429, req_fake"):
            await source.fetch(lookup("owner@acme.example"))

    assert len(fake.received("/v1/customers")) == 2


async def test_persistent_server_errors_become_a_source_error(fake: FakeStripe) -> None:
    fake.add_customer("owner@acme.example")
    fake.fail(500, times=100)

    async with stripe_source(fake, max_network_retries=1) as source:
        with pytest.raises(SourceError, match=r"^Stripe failed \(HTTP 500, req_fake\d+\)$"):
            await source.fetch(lookup("owner@acme.example"))
        with pytest.raises(SourceError, match="HTTP 500"):
            await source.check()

    assert len(fake.received("/v1/customers")) == 2 + 2  # one try and one retry, twice


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (403, None, r"the API key may not read customers, subscriptions or products \(HTTP 403, "),
        (400, "parameter_unknown", r"Stripe refused the request \(HTTP 400, parameter_unknown, "),
        (404, "resource_missing", r"Stripe refused the request \(HTTP 404, resource_missing, "),
    ],
)
async def test_refusals_are_named(fake: FakeStripe, status: int, code: str, message: str) -> None:
    fake.fail(status, code=code)

    async with stripe_source(fake) as source:
        with pytest.raises(SourceError, match=f"^{message}req_fake"):
            await source.fetch(lookup("owner@acme.example"))

    assert len(fake.received()) == 1  # not retried


async def test_wrong_key_is_a_source_error_without_the_key(fake: FakeStripe) -> None:
    wrong = "sk_test_wrong_0123456789abcdef"
    fake.add_customer("owner@acme.example")

    async with stripe_source(fake, api_key=wrong) as source:
        with pytest.raises(SourceError) as fetched:
            await source.fetch(lookup("owner@acme.example"))
        with pytest.raises(SourceError) as checked:
            await source.check()

    for error in (fetched.value, checked.value):
        assert str(error).startswith("Stripe rejected the API key (HTTP 401")
        assert wrong not in str(error)
        assert wrong[8:] not in str(error)
        assert error.__cause__ is None and error.__suppress_context__
    assert fake.received()[0].headers["authorization"] == f"Bearer {wrong}"


async def test_unreachable_stripe_is_a_source_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    source = StripeSource(
        "billing",
        StripeSourceConfig.model_validate(
            {
                "kind": "stripe",
                "api_key": API_KEY,
                "api_base": f"http://127.0.0.1:{port}",
                "max_network_retries": 0,
            }
        ),
    )
    try:
        with pytest.raises(SourceError, match=r"^cannot reach Stripe \(ConnectError\)$"):
            await source.check()
    finally:
        await source.aclose()


async def test_check_makes_one_cheap_authenticated_call(fake: FakeStripe) -> None:
    async with stripe_source(fake) as source:
        await source.check()

    (request,) = fake.received()
    assert (request.path, dict(request.params)) == ("/v1/customers", {"limit": "1"})
    assert request.headers["authorization"] == f"Bearer {API_KEY}"


# -- in the resolver ------------------------------------------------------------------------


@pytest.mark.parametrize("outage", ["hangs", "fails"])
async def test_a_stripe_outage_leaves_the_other_sources_answer(
    fake: FakeStripe, tmp_path: Path, outage: str
) -> None:
    await create_demo_database(f"sqlite:///{tmp_path}/app.db")
    query = (
        "select c.name as company, c.plan from users u "
        "join companies c on c.id = u.company_id where lower(u.email) in :emails"
    )
    app_config = {"kind": "sql", "url": f"sqlite:///{tmp_path}/app.db", "query": query}
    app = SqlSource("app", SqlSourceConfig.model_validate(app_config))
    fake.add_customer("owner@acme.example")
    if outage == "hangs":
        fake.delay = 20
    else:
        fake.fail(503, times=100)
    billing = StripeSource("billing", config(fake, label="Billing", max_network_retries=1))
    # Long enough for the SQLite source to answer on a busy machine.
    resolver = Resolver({"app": app, "billing": billing}, deadline_seconds=1.5)

    started = time.monotonic()
    try:
        profile = await resolver.resolve(lookup("owner@acme.example"))
    finally:
        await resolver.aclose()
    elapsed = time.monotonic() - started

    assert elapsed < 10  # did not wait for the 20 s Stripe, however busy the machine
    assert profile.results["app"].records == [{"company": "Acme HR", "plan": "Pro"}]
    assert profile.unavailable == ["Billing"]
    expected = "timed out" if outage == "hangs" else "Stripe failed (HTTP 503"
    assert (profile.results["billing"].error or "").startswith(expected)


# -- configuration --------------------------------------------------------------------------


def test_config_takes_the_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "rk_live_restricted")
    settings = Settings.model_validate(
        {"sources": {"billing": {"kind": "stripe", "api_key": "env:STRIPE_API_KEY"}}}
    )
    billing = settings.sources["billing"]
    assert isinstance(billing, StripeSourceConfig)
    assert billing.api_key.get_secret_value() == "rk_live_restricted"
    assert "rk_live_restricted" not in repr(billing)
    assert (billing.api_base, billing.dashboard_url) == (
        "https://api.stripe.com",
        "https://dashboard.stripe.com",
    )
    assert (billing.max_network_retries, billing.include_canceled) == (2, False)
    assert isinstance(build_source("billing", billing), StripeSource)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"api_key": "pk_live_123"}, "publishable key"),
        ({"api_key": "  "}, "the API key is empty"),
        ({"api_key": "sk_test_1", "api_base": "api.stripe.com"}, "must start with https://"),
        ({"api_key": "sk_test_1", "max_network_retries": 9}, "less than or equal to 5"),
    ],
)
def test_config_mistakes_are_explained(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StripeSourceConfig.model_validate({"kind": "stripe", **table})


@asynccontextmanager
async def contract_case(tmp_path: Path, silent: SilentServer) -> AsyncIterator[ContractCase]:
    """For ``test_source_contract``: the fake Stripe with one subscriber; a Stripe that cannot
    be reached; a Stripe that never answers."""
    with FakeStripe() as fake:
        customer = fake.add_customer("ada@example.com", name="Ada")
        fake.add_subscription(customer, fake.price(4900, nickname="Pro"))
        table = {"kind": "stripe", "api_key": fake.api_key, "api_base": fake.url}
        down = f"http://127.0.0.1:{unused_port()}"  # nothing listens: connection refused
        failing = {**table, "api_base": down, "max_network_retries": 0}
        yield ContractCase(
            answering=table,
            known="ada@example.com",
            failing=failing,
            hanging={**table, "api_base": silent.url("http"), "max_network_retries": 0},
        )
