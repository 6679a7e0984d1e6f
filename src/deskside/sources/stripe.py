"""``kind = "stripe"``: the customer's Stripe customers and subscriptions, through the official SDK.

Every address is looked up with the customers list's ``email`` filter, all at once; then every
customer's subscriptions, all at once; then, in one call, the names of products whose prices
have no nickname. Lists are paginated to the end. One record per subscription.

The Stripe SDK is imported where a source uses it, not with this module: the config model is
here too, and a config without a Stripe source should not load the SDK.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Awaitable, Iterable, Mapping
from datetime import UTC, datetime
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from cachetools import TTLCache
from pydantic import Field, SecretStr, field_validator

from deskside.configtypes import Secret
from deskside.errors import SourceError
from deskside.lookup import Lookup
from deskside.sources.base import Record, Source, SourceConfig

if TYPE_CHECKING:
    import stripe

__all__ = ["SOURCE", "StripeSource", "StripeSourceConfig", "describe_stripe_error", "monthly_cents"]

_T = TypeVar("_T")

_Object = dict[str, Any]
"""A Stripe object as plain data (``StripeObject.to_dict()``): the same code reads any API
version, with ``.get`` for fields a version lacks."""

_PAGE_SIZE = 100
"""Stripe's largest page: fewest round trips."""

_STATUS_ORDER = (
    "active",
    "trialing",
    "past_due",
    "unpaid",
    "paused",
    "incomplete",
    "canceled",
    "incomplete_expired",
)
_PAYING = frozenset({"active", "past_due"})
"""Statuses whose subscriptions count towards ``customer_mrr_cents``."""

_MONTHS_PER_INTERVAL = {
    "day": Fraction(12, 365),
    "week": Fraction(12, 52),
    "month": Fraction(1),
    "year": Fraction(12),
}

_SUBSCRIPTION_KEYS = (
    "subscription_id",
    "status",
    "plan",
    "price_id",
    "amount_cents",
    "interval",
    "interval_count",
    "quantity",
    "mrr_cents",
    "trial_end",
    "current_period_end",
    "cancel_at_period_end",
    "cancel_at",
    "canceled_at",
    "started_at",
    "subscription_url",
)


class StripeSourceConfig(SourceConfig):
    """A secret (or read-only restricted) API key, and how to reach Stripe."""

    kind: Literal["stripe"]
    api_key: Secret
    """``sk_live_…``/``rk_live_…``; a restricted key needs read access to customers,
    subscriptions and products."""
    api_base: str = "https://api.stripe.com"
    """Where the API is; tests point it at a local fake."""
    dashboard_url: str = "https://dashboard.stripe.com"
    """Base of the ``customer_url``/``subscription_url`` links."""
    include_canceled: bool = False
    """Also list canceled subscriptions (Stripe leaves them out by default)."""
    max_network_retries: int = Field(default=2, ge=0, le=5)
    """Retries of what Stripe marks retryable (5xx, 409, lock timeouts, network errors)."""
    timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    """Per HTTP request; the server's ``deadline_ms`` still bounds the whole lookup."""

    @field_validator("api_key")
    @classmethod
    def _secret_key(cls, key: SecretStr) -> SecretStr:
        value = key.get_secret_value().strip()
        if not value:
            raise ValueError("the API key is empty: set it to a secret key (sk_…) or rk_…")
        if value.startswith("pk_"):
            raise ValueError(
                "a publishable key (pk_…) cannot read customers: use a secret key (sk_…) "
                "or a restricted key (rk_…) with read access"
            )
        return SecretStr(value)

    @field_validator("api_base", "dashboard_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the URL must start with https:// (or http:// for a local fake)")
        return url.rstrip("/")


class StripeSource(Source):
    """Finds customers by every address, and lists their subscriptions, with ``StripeClient``.

    Any SDK error (after the SDK's own retries) becomes a :class:`SourceError` whose message
    names the kind of failure, HTTP status and request id, never the key or Stripe's text.
    """

    kind = "stripe"
    config_model = StripeSourceConfig

    def __init__(self, name: str, config: StripeSourceConfig) -> None:
        import stripe

        super().__init__(name, config)
        self._config = config
        self._http_client = stripe.HTTPXClient(timeout=config.timeout_seconds)
        self._client = stripe.StripeClient(
            config.api_key.get_secret_value(),
            base_addresses={"api": config.api_base},
            http_client=self._http_client,
            max_network_retries=config.max_network_retries,
        )
        self._product_names: TTLCache[str, str | None] = TTLCache(maxsize=1024, ttl=3600)

    async def fetch(self, lookup: Lookup) -> list[Record]:
        """Every subscription of every customer with one of the addresses.

        The SDK retries what Stripe marks retryable; a plain rate limit (429 without
        ``Stripe-Should-Retry``) is retried here, up to ``max_network_retries`` times with
        exponential backoff (or Stripe's ``Retry-After``, capped), inside the deadline.
        """
        import stripe

        for attempt in itertools.count():
            try:
                return await self._fetch(lookup)
            except stripe.RateLimitError as exc:
                already_retried = (exc.headers or {}).get("stripe-should-retry") == "true"
                if already_retried or attempt >= self._config.max_network_retries:
                    raise SourceError(describe_stripe_error(exc)) from None
                await asyncio.sleep(_backoff_seconds(attempt, exc))
            except stripe.StripeError as exc:
                raise SourceError(describe_stripe_error(exc)) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _fetch(self, lookup: Lookup) -> list[Record]:
        found = await _gather(self._customers(email) for email in lookup.emails)
        customers = list({c["id"]: c for batch in found for c in batch}.values())
        subscriptions = await _gather(self._subscriptions(c["id"]) for c in customers)
        await self._learn_product_names(s for batch in subscriptions for s in batch)
        records: list[Record] = []
        for customer, customer_subscriptions in zip(customers, subscriptions, strict=True):
            records += self._records(customer, customer_subscriptions)
        return records

    async def check(self) -> None:
        import stripe

        try:
            await self._client.v1.customers.list_async(params={"limit": 1})
        except stripe.StripeError as exc:
            raise SourceError(describe_stripe_error(exc)) from None

    async def aclose(self) -> None:
        await self._http_client.close_async()  # type: ignore[no-untyped-call]

    async def _customers(self, email: str) -> list[_Object]:
        page = await self._client.v1.customers.list_async(
            params={"email": email, "limit": _PAGE_SIZE}
        )
        return [customer.to_dict() async for customer in page.auto_paging_iter()]

    async def _subscriptions(self, customer_id: str) -> list[_Object]:
        params: stripe.params.SubscriptionListParams = {
            "customer": customer_id,
            "limit": _PAGE_SIZE,
        }
        if self._config.include_canceled:
            params["status"] = "all"
        page = await self._client.v1.subscriptions.list_async(params=params)
        return [subscription.to_dict() async for subscription in page.auto_paging_iter()]

    async def _learn_product_names(self, subscriptions: Iterable[_Object]) -> None:
        """Fetch the names of products whose prices have no nickname (and are not cached).

        Expanding them instead (``data.items.data.price.product``) is five levels deep, and
        Stripe refuses more than four.
        """
        wanted = {
            product
            for subscription in subscriptions
            for item in _items(subscription)
            if not (price := item.get("price") or {}).get("nickname")
            and isinstance(product := price.get("product"), str)
            and product not in self._product_names
        }
        ids = sorted(wanted)
        chunks = [ids[start : start + _PAGE_SIZE] for start in range(0, len(ids), _PAGE_SIZE)]
        pages = await _gather(
            self._client.v1.products.list_async(params={"ids": chunk, "limit": _PAGE_SIZE})
            for chunk in chunks
        )
        names = {product.id: product.to_dict().get("name") for page in pages for product in page}
        for product_id in ids:  # a deleted product is not listed: its plan is the price id
            self._product_names[product_id] = names.get(product_id)

    def _records(self, customer: _Object, subscriptions: list[_Object]) -> list[Record]:
        livemode = bool(customer.get("livemode"))
        facts: Record = {
            "customer_id": customer["id"],
            "email": customer.get("email"),
            "name": customer.get("name"),
            "delinquent": customer.get("delinquent"),
            "livemode": livemode,
            "currency": _upper(customer.get("currency")),
            "customer_url": self._dashboard_link(livemode, "customers", customer["id"]),
        }
        rows = [self._subscription_facts(s, livemode) for s in _most_relevant_first(subscriptions)]
        facts["customer_mrr_cents"] = sum(
            row["mrr_cents"] or 0 for row in rows if row["status"] in _PAYING
        )
        if not rows:
            return [{**facts, **dict.fromkeys(_SUBSCRIPTION_KEYS), "items": []}]
        return [{**facts, **row} for row in rows]

    def _subscription_facts(self, subscription: _Object, livemode: bool) -> Record:
        currency = _upper(subscription.get("currency"))
        items = [self._item_facts(item) for item in _items(subscription)]
        first = items[0] if items else dict.fromkeys(("price_id", "amount_cents", "quantity"))
        monthly = [item["mrr_cents"] for item in items if item["mrr_cents"] is not None]
        period_ends = [e for item in _items(subscription) if (e := item.get("current_period_end"))]
        period_end = subscription.get("current_period_end") or min(period_ends, default=None)
        facts: Record = {
            "subscription_id": subscription["id"],
            "status": subscription.get("status"),
            "plan": " + ".join(str(item["plan"]) for item in items if item["plan"]) or None,
            "price_id": first["price_id"],
            "amount_cents": first["amount_cents"],
            "currency": currency,
            "interval": first.get("interval"),
            "interval_count": first.get("interval_count"),
            "quantity": first["quantity"],
            "mrr_cents": sum(monthly) if monthly else None,
            "trial_end": _datetime(subscription.get("trial_end")),
            "current_period_end": _datetime(period_end),
            "cancel_at_period_end": bool(subscription.get("cancel_at_period_end")),
            "cancel_at": _datetime(subscription.get("cancel_at")),
            "canceled_at": _datetime(subscription.get("canceled_at")),
            "started_at": _datetime(subscription.get("start_date")),
            "subscription_url": self._dashboard_link(livemode, "subscriptions", subscription["id"]),
            "items": items,
        }
        if currency is None:
            del facts["currency"]  # keep the customer's
        return facts

    def _item_facts(self, item: _Object) -> Record:
        price: _Object = item.get("price") or {}
        recurring: _Object = price.get("recurring") or {}
        product = price.get("product")
        if isinstance(product, Mapping):  # expanded
            product_name = product.get("name")
        else:
            product_name = self._product_names.get(product) if isinstance(product, str) else None
        quantity = item.get("quantity")
        return {
            "plan": price.get("nickname") or product_name or price.get("id"),
            "price_id": price.get("id"),
            "amount_cents": price.get("unit_amount"),
            "interval": recurring.get("interval"),
            "interval_count": recurring.get("interval_count") or 1,
            "quantity": quantity,
            "mrr_cents": monthly_cents(price, quantity),
        }

    def _dashboard_link(self, livemode: bool, collection: str, object_id: str) -> str:
        mode = "" if livemode else "/test"
        return f"{self._config.dashboard_url}{mode}/{collection}/{object_id}"


def monthly_cents(price: Mapping[str, Any], quantity: int | None) -> int | None:
    """What ``quantity`` of a recurring ``price`` is worth per month, in whole cents.

    ``None`` for metered and tiered prices (their amount depends on usage) and one-off prices.
    """
    recurring: Mapping[str, Any] = price.get("recurring") or {}
    months = _MONTHS_PER_INTERVAL.get(recurring.get("interval") or "")
    if months is None or recurring.get("usage_type") == "metered":
        return None
    unit: Any = price.get("unit_amount")
    if unit is None:
        unit = price.get("unit_amount_decimal")
    if unit is None:
        return None
    per_interval = Fraction(str(unit)) * (1 if quantity is None else quantity)
    return round(per_interval / (months * (recurring.get("interval_count") or 1)))


def _backoff_seconds(attempt: int, exc: stripe.RateLimitError) -> float:
    """0.25 s, 0.5 s, 1 s … with jitter; Stripe's ``Retry-After`` when it says; at most 2 s."""
    retry_after = (exc.headers or {}).get("retry-after", "")
    if retry_after.replace(".", "", 1).isdigit():
        return min(float(retry_after), 2.0)
    return min(0.25 * 2.0**attempt * (0.75 + random.random() / 2), 2.0)


def describe_stripe_error(exc: stripe.StripeError) -> str:
    """A short, loggable description of ``exc``: never Stripe's message (it may echo the key)."""
    import stripe

    status = f"HTTP {exc.http_status}" if exc.http_status else None
    if isinstance(exc, stripe.AuthenticationError):
        what = "Stripe rejected the API key"
    elif isinstance(exc, stripe.PermissionError):
        what = "the API key may not read customers, subscriptions or products"
    elif isinstance(exc, stripe.RateLimitError):
        what = "rate limited by Stripe"
    elif isinstance(exc, stripe.APIConnectionError):
        cause = exc.__cause__
        what = "cannot reach Stripe"
        status = type(cause).__name__ if cause is not None else None
    elif isinstance(exc, stripe.InvalidRequestError):
        what = "Stripe refused the request"
        status = ", ".join(str(part) for part in (status, exc.code) if part) or None
    else:
        what = "Stripe failed"
    details = ", ".join(part for part in (status, exc.request_id) if part)
    return f"{what} ({details})" if details else what


async def _gather(awaitables: Iterable[Awaitable[_T]]) -> list[_T]:
    """All results, concurrently; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        raise


def _items(subscription: _Object) -> list[_Object]:
    items = subscription.get("items") or {}
    return list(items.get("data") or [])


def _most_relevant_first(subscriptions: list[_Object]) -> list[_Object]:
    def rank(subscription: _Object) -> tuple[int, int]:
        status = subscription.get("status")
        order = _STATUS_ORDER.index(status) if status in _STATUS_ORDER else len(_STATUS_ORDER)
        return order, -int(subscription.get("created") or 0)

    return sorted(subscriptions, key=rank)


def _datetime(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


def _upper(code: str | None) -> str | None:
    return code.upper() if code else None


SOURCE = StripeSource
"""This module's source kind (see :mod:`deskside.sources`)."""
