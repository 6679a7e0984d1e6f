"""The demo: an HR SaaS's customer database, and the config that serves it to every helpdesk.

The data is built with SQLAlchemy Core, so the same rows can be loaded into SQLite (the demo),
PostgreSQL or MySQL (the tests and benchmarks). Dates are relative to today, so a trial that
"ended ten days ago" always has.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    insert,
    text,
)
from sqlalchemy.ext.asyncio import create_async_engine

from deskside.helpdesks import protocol_classes
from deskside.paths import data_dir
from deskside.sources.sql import async_url

__all__ = [
    "DEMO_DATABASE_ENV",
    "DemoSecret",
    "create_demo_database",
    "data_dir",
    "demo_config_path",
    "demo_helpdesks",
    "demo_rows",
    "demo_secret_envs",
    "demo_secrets",
    "example_webhook",
    "prepare_demo",
]

DEMO_DATABASE_ENV = "DESKSIDE_DEMO_DATABASE_URL"
_INSIGHTS_SECRET_ENVS = {"helpscout_webhook": "HELPSCOUT_WEBHOOK_SECRET"}


def demo_secret_envs() -> dict[str, str]:
    """Every demo secret's environment variable: each helpdesk's by its kind (and its further
    ones by their names), then the insights webhook's."""
    envs: dict[str, str] = {}
    for kind, protocol in protocol_classes().items():
        envs[kind] = protocol.demo_env
        envs.update(protocol.demo_extra_env)
    return envs | _INSIGHTS_SECRET_ENVS


def demo_helpdesks() -> dict[str, dict[str, Any]]:
    """A ``[helpdesks.<kind>]`` table for every registered helpdesk, as the demo serves it
    when its config has none for the kind (the secret read from the helpdesk's variable)."""
    return {
        kind: {"secret": f"env:{protocol.demo_env}", **protocol.demo_config}
        for kind, protocol in protocol_classes().items()
    }


metadata = MetaData()

companies = Table(
    "companies",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("plan", String(40), nullable=False),
    Column("status", String(20), nullable=False),  # trialing, active, past_due, canceled
    Column("mrr_cents", Integer, nullable=False),
    Column("employees", Integer, nullable=False),
    Column("employee_limit", Integer, nullable=False),
    Column("trial_ends_at", DateTime(timezone=True)),
    Column("renews_on", Date),
    Column("stripe_customer_id", String(40)),
    Column("modules", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),  # owner, admin, member
    Column("is_owner", Boolean, nullable=False),
    Column("company_id", ForeignKey("companies.id"), nullable=False),
    Column("last_seen_at", DateTime(timezone=True)),
)

_INJECTION_NAME = "<img src=x onerror=alert(1)> [click](javascript:alert(1)) **Mallory**"
_INJECTION_COMPANY = '"><script>alert("xss")</script> [Evil Corp](https://evil.example) _Ltd_'

# (company, plan, status, mrr $, employees, limit, trial ends (days), renews (days), modules)
_COMPANIES: list[tuple[str, str, str, int, int, int, int | None, int | None, str]] = [
    ("Acme HR", "Pro", "active", 249, 42, 50, None, 23, "payroll,time-off,reviews"),
    ("Globex", "Starter", "trialing", 0, 7, 10, -10, None, "time-off"),
    ("Initech", "Business", "active", 599, 118, 150, None, 140, "payroll,time-off,onboarding"),
    ("Initrode", "Starter", "active", 49, 9, 10, None, 5, "time-off"),
    (_INJECTION_COMPANY, "Pro", "past_due", 249, 51, 50, None, -3, "payroll"),
    (
        "Umbrella Staffing",
        "Enterprise",
        "active",
        2400,
        1240,
        1500,
        None,
        300,
        "payroll,reviews,sso",
    ),
    ("Hooli", "Pro", "trialing", 0, 33, 50, 9, None, "payroll,time-off"),
    ("Vandelay Industries", "Starter", "canceled", 0, 4, 10, None, None, "time-off"),
]

# (email, name, role, company index)
_USERS: list[tuple[str, str, str, int]] = [
    ("owner@acme.example", "Olivia Owner", "owner", 0),
    ("hr@acme.example", "Harper Reyes", "admin", 0),
    ("lapsed@globex.example", "Lars Lapsed", "owner", 1),
    ("pat@initech.example", "Pat Patel", "admin", 2),
    ("pat@initrode.example", "Pat Patel", "owner", 3),
    ("mallory@evil.example", _INJECTION_NAME, "owner", 4),
    ("ceo@umbrella.example", "Alex Wesker", "owner", 5),
    ("trial@hooli.example", "Gavin Trial", "owner", 6),
    ("art@vandelay.example", "Art Vandelay", "owner", 7),
]


def demo_rows(
    today: date | None = None, extra_customers: int = 0
) -> dict[str, list[dict[str, Any]]]:
    """The demo's rows, table by table. ``extra_customers`` adds generated companies with one
    owner each (``customer<N>@bulk.example``), for load tests."""
    now = datetime.combine(today or date.today(), datetime.min.time(), UTC) + timedelta(hours=12)
    company_rows = []
    for index, (name, plan, status, mrr, used, limit, trial, renews, modules) in enumerate(
        _COMPANIES, start=1
    ):
        company_rows.append(
            {
                "id": index,
                "name": name,
                "plan": plan,
                "status": status,
                "mrr_cents": mrr * 100,
                "employees": used,
                "employee_limit": limit,
                "trial_ends_at": now + timedelta(days=trial) if trial is not None else None,
                "renews_on": (now + timedelta(days=renews)).date() if renews is not None else None,
                "stripe_customer_id": f"cus_demo{index:04d}" if mrr else None,
                "modules": modules,
                "created_at": now - timedelta(days=400 - 37 * index),
            }
        )
    user_rows = [
        {
            "id": index,
            "email": email,
            "name": name,
            "role": role,
            "is_owner": role == "owner",
            "company_id": company + 1,
            "last_seen_at": now - timedelta(hours=3 * index),
        }
        for index, (email, name, role, company) in enumerate(_USERS, start=1)
    ]
    plans = [("Starter", 49, 10), ("Pro", 249, 50), ("Business", 599, 150)]
    for n in range(extra_customers):
        company_id = len(_COMPANIES) + n + 1
        plan, price, limit = plans[n % 3]
        company_rows.append(
            {
                "id": company_id,
                "name": f"Company {n}",
                "plan": plan,
                "status": "active",
                "mrr_cents": price * 100,
                "employees": n % limit,
                "employee_limit": limit,
                "trial_ends_at": None,
                "renews_on": (now + timedelta(days=n % 365)).date(),
                "stripe_customer_id": f"cus_bulk{n:07d}",
                "modules": "time-off",
                "created_at": now - timedelta(days=n % 700),
            }
        )
        user_rows.append(
            {
                "id": len(_USERS) + n + 1,
                "email": f"customer{n}@bulk.example",
                "name": f"Customer {n}",
                "role": "owner",
                "is_owner": True,
                "company_id": company_id,
                "last_seen_at": now - timedelta(minutes=n % 10_000),
            }
        )
    return {"companies": company_rows, "users": user_rows}


async def create_demo_database(url: str, *, extra_customers: int = 0) -> None:
    """(Re)create the demo tables at ``url`` (any SQLAlchemy URL) and load the demo rows."""
    engine = create_async_engine(async_url(url))
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.drop_all)
            await connection.run_sync(metadata.create_all)
            if connection.dialect.name in ("postgresql", "sqlite"):
                # The demo query matches lower(email); MariaDB has no expression indexes.
                await connection.execute(
                    text("create index ix_users_email_lower on users (lower(email))")
                )
            rows = demo_rows(extra_customers=extra_customers)
            for table in (companies, users):
                batch = rows[table.name]
                for start in range(0, len(batch), 5000):
                    await connection.execute(insert(table), batch[start : start + 5000])
    finally:
        await engine.dispose()


def demo_config_path() -> Path:
    """The demo config: shipped inside the package, or ``examples/demo`` in a source checkout."""
    packaged = Path(__file__).parent / "_demo" / "deskside.toml"
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "examples" / "demo" / "deskside.toml"


def demo_extra_sources() -> dict[str, Any]:
    """A ``billing`` Stripe source when ``STRIPE_API_KEY`` is set (``STRIPE_API_BASE`` may point
    it elsewhere, e.g. at a test server); the demo card shows it, and Helper's value uses it."""
    if not os.environ.get("STRIPE_API_KEY"):
        return {}
    billing: dict[str, Any] = {
        "kind": "stripe",
        "label": "Billing",
        "api_key": "env:STRIPE_API_KEY",
    }
    if os.environ.get("STRIPE_API_BASE"):
        billing["api_base"] = os.environ["STRIPE_API_BASE"]
    return {"billing": billing}


@dataclass(frozen=True)
class DemoSecret:
    """A demo helpdesk's secret and where it came from."""

    value: str
    env: str
    """The environment variable the demo config reads it from."""
    given: bool
    """Whether the variable was set before (else the value is new and random)."""

    @property
    def origin(self) -> str:
        """Where the value came from, as the demo prints it."""
        return f"from ${self.env}" if self.given else f"random; set ${self.env} to keep it"


def demo_secrets() -> dict[str, DemoSecret]:
    """Each demo helpdesk's secret: from its environment variable, else a new random one
    (also put into the environment, where the demo config reads it)."""
    values = {}
    for desk, env in demo_secret_envs().items():
        given = bool(os.environ.get(env))
        if not given:
            os.environ[env] = secrets.token_urlsafe(18)
        values[desk] = DemoSecret(os.environ[env], env, given)
    return values


def prepare_demo() -> tuple[Path, dict[str, DemoSecret]]:
    """(Re)create the demo database in :func:`data_dir` and set the environment the demo
    config reads: the database's URL and every secret. The database's path, and the secrets."""
    database = data_dir() / "demo.sqlite3"
    url = f"sqlite:///{database}"
    asyncio.run(create_demo_database(url))
    os.environ[DEMO_DATABASE_ENV] = url
    return database, demo_secrets()


def example_webhook() -> bytes:
    """A ``convo.created`` body as Help Scout sends it (payload V2), from a demo customer."""
    document = {
        "id": 2001,
        "number": 301,
        "subject": "Export to CSV fails",
        "status": "active",
        "state": "published",
        "type": "email",
        "mailboxId": 1,
        "createdAt": "2026-11-20T09:30:00Z",
        "userUpdatedAt": "2026-11-20T09:30:00Z",
        "primaryCustomer": {"id": 501, "email": "owner@acme.example", "first": "Olivia"},
        "tags": [{"id": 1, "tag": "export"}],
        "_embedded": {
            "threads": [
                {
                    "id": 9001,
                    "type": "customer",
                    "body": "<p>Hi,</p><p>the CSV export stops at 500 rows since Monday.</p>",
                    "createdBy": {"id": 501, "type": "customer", "email": "owner@acme.example"},
                    "createdAt": "2026-11-20T09:30:00Z",
                }
            ]
        },
    }
    return json.dumps(document, separators=(",", ":")).encode()
