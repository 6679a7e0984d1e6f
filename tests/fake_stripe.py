"""A small fake of Stripe's API for tests: 127.0.0.1, an ephemeral port, a background thread.

It answers the list endpoints the ``stripe`` source uses, in Stripe's JSON shapes, so the real
SDK makes real HTTP requests to it::

    with FakeStripe(page_size=2) as fake:
        customer = fake.add_customer("owner@acme.example", name="Olivia")
        fake.add_subscription(customer, fake.price(4900, nickname="Pro"), quantity=3)
        fake.fail(500, times=2)          # the next two requests fail, then it answers again
        ... StripeClient(fake.api_key, base_addresses={"api": fake.url}) ...
        assert fake.received("/v1/subscriptions")[0].params["customer"] == customer["id"]

Served: ``GET /v1/customers`` (``email``), ``/v1/subscriptions`` (``customer``, ``status``),
``/v1/products`` (``ids``) and ``/v1/products/ID``; every list takes ``limit`` (capped at
``page_size``) and ``starting_after``, answers newest first with ``has_more``, and takes
``expand`` (refused beyond four levels, as Stripe does). A wrong ``Authorization`` gets 401,
whose message echoes the key it got, so a test can prove the key never reaches a log.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["API_KEY", "FakeStripe", "Received"]

API_KEY = "sk_test_fake_4eC39HqLyjWDarjtT1zdp7dc"
_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z
_INDEXED = re.compile(r"^(?P<name>[a-z_]+)\[(?P<index>\d*)\]$")


@dataclass(frozen=True)
class Received:
    """One request as it arrived; ``params`` decoded, with ``name[0]``/``name[]`` as lists."""

    method: str
    path: str
    params: Mapping[str, Any]
    headers: Mapping[str, str]
    at: float
    """``time.monotonic()`` on arrival."""


@dataclass
class _Failure:
    status: int
    remaining: int
    code: str | None
    should_retry: bool | None


class FakeStripe:
    """The fake server and its data; use as a context manager (it starts and stops it)."""

    def __init__(self, api_key: str = API_KEY, *, page_size: int = 100) -> None:
        self.api_key = api_key
        self.page_size = page_size
        self.delay = 0.0
        """Seconds every answer waits (ended early when the server closes): an outage."""
        self.customers: list[dict[str, Any]] = []
        self.subscriptions: list[dict[str, Any]] = []
        self.products: dict[str, dict[str, Any]] = {}
        self.requests: list[Received] = []
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """The ``api_base`` to give the SDK."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeStripe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- data -----------------------------------------------------------------------------

    def add_customer(
        self,
        email: str | None,
        *,
        name: str | None = None,
        livemode: bool = False,
        currency: str | None = "usd",
    ) -> dict[str, Any]:
        """A customer; the newest is listed first, like Stripe does."""
        number = next(self._ids)
        customer = {
            "id": f"cus_fake{number:04d}",
            "object": "customer",
            "email": email,
            "name": name,
            "livemode": livemode,
            "currency": currency,
            "delinquent": False,
            "created": _EPOCH + number,
        }
        self.customers.append(customer)
        return customer

    def add_product(self, name: str) -> dict[str, Any]:
        product = {"id": f"prod_fake{next(self._ids):04d}", "object": "product", "name": name}
        self.products[product["id"]] = product
        return product

    def price(
        self,
        unit_amount: int | None,
        interval: str | None = "month",
        *,
        interval_count: int = 1,
        nickname: str | None = None,
        product: dict[str, Any] | str | None = None,
        currency: str = "usd",
        usage_type: str = "licensed",
    ) -> dict[str, Any]:
        """A price object (not stored: Stripe embeds it in subscription items)."""
        if product is None:
            product = self.add_product(nickname or "Product")
        recurring = None
        if interval is not None:
            recurring = {
                "interval": interval,
                "interval_count": interval_count,
                "usage_type": usage_type,
            }
        return {
            "id": f"price_fake{next(self._ids):04d}",
            "object": "price",
            "nickname": nickname,
            "product": product if isinstance(product, str) else product["id"],
            "currency": currency,
            "unit_amount": unit_amount,
            "unit_amount_decimal": None if unit_amount is None else str(unit_amount),
            "recurring": recurring,
            "type": "recurring" if recurring else "one_time",
        }

    def add_subscription(
        self,
        customer: Mapping[str, Any],
        *prices: Mapping[str, Any],
        quantity: int | None = 1,
        status: str = "active",
        trial_end: int | None = None,
        current_period_end: int = _EPOCH + 30 * 86400,
        period_on_items: bool = True,
        cancel_at_period_end: bool = False,
    ) -> dict[str, Any]:
        """A subscription with one item per price, each of ``quantity``.

        ``period_on_items`` puts ``current_period_end`` on the items (API versions since
        2025-03-31), else on the subscription (older versions).
        """
        number = next(self._ids)
        subscription_id = f"sub_fake{number:04d}"
        items = [
            {
                "id": f"si_fake{next(self._ids):04d}",
                "object": "subscription_item",
                "price": dict(price),
                "quantity": quantity,
                **({"current_period_end": current_period_end} if period_on_items else {}),
            }
            for price in prices
        ]
        subscription = {
            "id": subscription_id,
            "object": "subscription",
            "customer": customer["id"],
            "status": status,
            "currency": prices[0]["currency"] if prices else "usd",
            "livemode": customer["livemode"],
            "created": _EPOCH + number,
            "start_date": _EPOCH + number,
            "trial_end": trial_end,
            "cancel_at_period_end": cancel_at_period_end,
            "cancel_at": None,
            "canceled_at": _EPOCH + number + 1 if status == "canceled" else None,
            "items": {
                "object": "list",
                "url": f"/v1/subscription_items?subscription={subscription_id}",
                "has_more": False,
                "data": items,
            },
        }
        if not period_on_items:
            subscription["current_period_end"] = current_period_end
        self.subscriptions.append(subscription)
        return subscription

    # -- behaviour ------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        code: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        """Answer the next ``times`` requests with ``status`` and Stripe's error JSON.

        ``should_retry`` sends ``Stripe-Should-Retry``, which the SDK obeys: Stripe sets it to
        true on retryable 429s (``code="lock_timeout"``), and on none for plain rate limits.
        """
        with self._lock:
            self._failures.append(_Failure(status, times, code, should_retry))

    def received(self, path: str | None = None) -> list[Received]:
        """Requests so far, optionally only those for ``path``."""
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    # -- answering ------------------------------------------------------------------------

    def _answer(self, request: Received) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.requests.append(request)
            failure = next((f for f in self._failures if f.remaining > 0), None)
            if failure is not None:
                failure.remaining -= 1
        if self.delay:
            self._closing.wait(self.delay)
        if failure is not None:
            return self._failure(failure)
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            message = f"Invalid API Key provided: {given}"
            return _error(401, "invalid_request_error", message)
        if request.method != "GET":
            return _error(405, "invalid_request_error", "only GET is faked")
        try:
            return 200, self._route(request), {}
        except _Refusal as refusal:
            return _error(refusal.status, "invalid_request_error", str(refusal), refusal.code)

    def _failure(self, failure: _Failure) -> tuple[int, dict[str, Any], dict[str, str]]:
        kind = "invalid_request_error" if failure.status in (401, 429) else "api_error"
        code = failure.code or ("rate_limit" if failure.status == 429 else None)
        status, body, headers = _error(failure.status, kind, "Fake failure", code)
        if failure.should_retry is not None:
            headers["Stripe-Should-Retry"] = "true" if failure.should_retry else "false"
        return status, body, headers

    def _route(self, request: Received) -> dict[str, Any]:
        params = request.params
        path = request.path
        if path == "/v1/customers":  # the email filter is exact and case-sensitive
            email = params.get("email")
            found = [c for c in self.customers if email in (None, c["email"])]
            return self._list(path, found, params)
        if path == "/v1/subscriptions":
            found = [
                s
                for s in self.subscriptions
                if params.get("customer") in (None, s["customer"])
                and _status_matches(s["status"], params.get("status"))
            ]
            return self._list(path, found, params)
        if path == "/v1/products":
            ids = params.get("ids")
            found = [p for p in self.products.values() if ids is None or p["id"] in ids]
            return self._list(path, found, params)
        if path.startswith("/v1/products/"):
            product = self.products.get(path.removeprefix("/v1/products/"))
            if product is None:
                raise _Refusal(404, "No such product", "resource_missing")
            return self._expand(dict(product), params)
        raise _Refusal(404, f"Unrecognized request URL (GET: {path})")

    def _list(
        self, path: str, objects: list[dict[str, Any]], params: Mapping[str, Any]
    ) -> dict[str, Any]:
        ordered = sorted(objects, key=lambda o: o.get("created", 0), reverse=True)
        try:
            limit = int(params.get("limit", 10))
        except ValueError:
            raise _Refusal(400, "Invalid integer: limit") from None
        if not 1 <= limit <= 100:
            raise _Refusal(400, "Invalid integer: limit must be between 1 and 100")
        start = 0
        if "starting_after" in params:
            ids = [o["id"] for o in ordered]
            if params["starting_after"] not in ids:
                raise _Refusal(400, "No such object: starting_after", "resource_missing")
            start = ids.index(params["starting_after"]) + 1
        end = start + min(limit, self.page_size)
        page = {
            "object": "list",
            "url": path,
            "has_more": end < len(ordered),
            "data": [json.loads(json.dumps(o)) for o in ordered[start:end]],
        }
        return self._expand(page, params)

    def _expand(self, document: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        for path in params.get("expand", []):
            segments = path.split(".")
            if len(segments) > 4:
                message = f"You cannot expand more than 4 levels of a property. Property: {path}"
                raise _Refusal(400, message, "property_expansion_max_depth")
            self._expand_path(document, segments)
        return document

    def _expand_path(self, node: Any, segments: list[str]) -> None:
        if isinstance(node, list):
            for element in node:
                self._expand_path(element, segments)
            return
        if not isinstance(node, dict) or segments[0] not in node:
            return
        key, rest = segments[0], segments[1:]
        if rest:
            self._expand_path(node[key], rest)
        elif isinstance(node[key], str):
            by_id = {c["id"]: c for c in self.customers} | self.products
            node[key] = dict(by_id.get(node[key], {"id": node[key], "deleted": True}))


class _Refusal(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


_request_ids = itertools.count(1)


def _error(
    status: int, kind: str, message: str, code: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
    return status, {"error": error}, {"Request-Id": f"req_fake{next(_request_ids):04d}"}


def _status_matches(status: str, wanted: str | None) -> bool:
    if wanted is None:
        return status != "canceled"  # Stripe's default: everything not canceled
    if wanted == "all":
        return True
    if wanted == "ended":
        return status in ("canceled", "incomplete_expired")
    return status == wanted


def _decode(query: str) -> dict[str, Any]:
    """Stripe's form encoding: ``ids[0]=a&ids[1]=b`` (and ``ids[]=``) become lists."""
    params: dict[str, Any] = {}
    indexed: dict[str, list[tuple[int, str]]] = {}
    for key, values in parse_qs(query, keep_blank_values=True).items():
        match = _INDEXED.match(key)
        if match:
            position = int(match["index"] or len(indexed.get(match["name"], [])))
            indexed.setdefault(match["name"], []).extend((position, v) for v in values)
        else:
            params[key] = values[-1]
    for name, pairs in indexed.items():
        params[name] = [value for _, value in sorted(pairs)]
    return params


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake: FakeStripe = self.server.fake  # type: ignore[attr-defined]
        target = urlsplit(self.path)
        request = Received(
            method=self.command,
            path=target.path,
            params=_decode(target.query),
            headers={k.lower(): v for k, v in self.headers.items()},
            at=time.monotonic(),
        )
        status, body, headers = fake._answer(request)
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the client gave up (a deadline passed): nothing to answer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests look at :attr:`FakeStripe.requests` instead."""
