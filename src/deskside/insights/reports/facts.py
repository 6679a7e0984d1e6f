"""Plans and monthly revenue of the customers behind a report, looked up as the sidebar looks
them up: through the sidebar's own answer function (an address in, a
:class:`~deskside.resolve.Profile` out), which whoever builds :class:`CustomerFacts` hands in.
The insights side never builds the sidebar itself.

``[insights.reports] plan`` / ``revenue_cents`` are evaluated in the context card expressions
see (``app.plan``). A lookup that fails, overruns or finds nothing leaves the customer unknown.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any

from deskside.config import Settings
from deskside.expressions import Expression, Scope
from deskside.insights.settings import ReportsSettings
from deskside.layout import expression_context
from deskside.lookup import Lookup, normalise_emails
from deskside.resolve import Profile

__all__ = [
    "CustomerFacts",
    "Facts",
    "OpenSidebar",
    "ProfileOf",
    "fact_expressions",
]

log = logging.getLogger("deskside.insights.reports")


@dataclass(frozen=True)
class Facts:
    """What the sources know about one customer."""

    plan: str | None = None
    revenue_cents: int | None = None


ProfileOf = Callable[[Lookup], Awaitable[Profile]]
"""The sidebar's answer function: a lookup (the customer's addresses) in, what the sources
returned out, with the sidebar's sources, cache and deadline."""


OpenSidebar = Callable[[Settings], AbstractAsyncContextManager[ProfileOf]]
"""Opens the sidebar a config describes and gives its answer function for as long as the
context lasts (the command line hands one to ``deskside reports``)."""


class CustomerFacts:
    """Plans and monthly revenue of customers, looked up as the sidebar looks them up.

    Each address goes through ``answer``, the sidebar's answer function (the same sources,
    cache and deadline as the sidebar; its owner closes it), and ``[insights.reports] plan`` /
    ``revenue_cents`` from ``settings`` are evaluated in the context card expressions see
    (``app.plan``). At most ``concurrency`` lookups run at once. A lookup that fails or
    overruns the deadline, or finds nothing, leaves that customer unknown. Invalid expressions
    raise :class:`ValueError` here. ``async with`` it, or :meth:`aclose` (which closes nothing
    the caller owns).
    """

    def __init__(
        self,
        settings: Settings,
        answer: ProfileOf,
        *,
        concurrency: int = 8,
    ) -> None:
        self.settings = settings
        self.plan, self.revenue_cents = fact_expressions(settings.insights.reports)
        self.currency = settings.card.currency
        self.concurrency = max(1, concurrency)
        self._answer = answer
        self._failing: set[str] = set()
        """Expressions that failed (and were logged) once; a config mistake logs once."""
        # The resolver answers by its deadline; this only guards against a source that hangs.
        self._timeout = settings.server.deadline_ms / 1000 + 1.0

    @property
    def configured(self) -> bool:
        """Whether there is anything to look up (``plan`` or ``revenue_cents`` is set)."""
        return self.plan is not None or self.revenue_cents is not None

    async def lookup(self, emails: Iterable[str]) -> dict[str, Facts]:
        """Facts by lower-cased address, for the addresses the sources knew something about."""
        wanted = sorted({email.strip().lower() for email in emails if email and email.strip()})
        if not self.configured or not wanted:
            return {}
        gate = asyncio.Semaphore(self.concurrency)

        async def one(email: str) -> tuple[str, Facts | None]:
            async with gate:
                return email, await self._facts_of(email)

        found = await asyncio.gather(*(one(email) for email in wanted))
        return {email: facts for email, facts in found if facts is not None}

    async def aclose(self) -> None:
        """Nothing to close: the answer function belongs to whoever handed it in."""

    async def __aenter__(self) -> CustomerFacts:
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _facts_of(self, email: str) -> Facts | None:
        fold = self.settings.lookup.fold_plus_addressing
        emails = normalise_emails([email], fold_plus=fold)
        if not emails:
            return None
        lookup = Lookup(emails=emails, context={"desk": "reports"})
        try:
            profile = await asyncio.wait_for(self._answer(lookup), self._timeout)
        except Exception as exc:  # any failure: this customer stays unknown
            log.info("customer facts: lookup failed (%s)", type(exc).__name__)
            return None
        if not profile.found:
            return None
        scope = Scope(expression_context(profile))
        plan = _as_plan(self._evaluate(self.plan, scope))
        revenue = _as_cents(self._evaluate(self.revenue_cents, scope))
        if plan is None and revenue is None:
            return None
        return Facts(plan=plan, revenue_cents=revenue)

    def _evaluate(self, expression: Expression | None, scope: Scope) -> Any:
        if expression is None:
            return None
        try:
            return expression.evaluate(scope)
        except Exception as exc:  # a config expression that fails for this customer
            if expression.source not in self._failing:
                self._failing.add(expression.source)
                log.warning("[insights.reports] %s failed: %s", expression.source, exc)
            return None


def fact_expressions(reports: ReportsSettings) -> tuple[Expression | None, Expression | None]:
    """``plan`` and ``revenue_cents`` compiled (None where unset); :class:`ValueError` naming
    the setting when one is not a valid expression."""
    return _expression("plan", reports.plan), _expression("revenue_cents", reports.revenue_cents)


def _expression(name: str, source: str | None) -> Expression | None:
    if source is None or not source.strip():
        return None
    try:
        return Expression(source)
    except ValueError as exc:
        raise ValueError(f"[insights.reports] {name}: {exc}") from None


def _as_plan(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _as_cents(value: Any) -> int | None:
    """Whole cents from a number (or numeric text); anything else is unknown."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite():
        return None
    return int(amount.to_integral_value())
