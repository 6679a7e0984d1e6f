"""The baseline: the Help Scout endpoint people write by hand today.

As Help Scout's guides show it: check the signature (base64 HMAC-SHA1 of the raw body, in
``X-HelpScout-Signature``), look the customer up, answer ``{"html": ...}``. A WSGI app served by
gunicorn sync workers; gunicorn imports it in each worker, so each worker keeps one psycopg
connection. The query is the demo's (same join, same ``lower(email)`` lookup) for one address.

With ``$BILLING_URL`` set (the realistic scenario), it then asks the billing API for the
customer, as such endpoints do: after the query, with a blocking HTTP call, and adds a "Stripe"
section; an API that fails or takes over 5 s leaves the section out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import urllib.request
from collections.abc import Callable
from html import escape
from typing import Any
from urllib.parse import quote

import psycopg

SECRET = os.environ["HELPSCOUT_SECRET"].encode()
DB = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
QUERY = """select c.name, u.name, u.role, c.plan, c.employees, c.employee_limit, c.renews_on
from users u join companies c on c.id = u.company_id where lower(u.email) = %s order by c.name"""
BILLING_URL = os.environ.get("BILLING_URL")  # e.g. http://127.0.0.1:8150/v1/customers?email=


def billing(email: str) -> str:
    """The billing API's section for ``email``, or "" when there is no API or no answer."""
    if not BILLING_URL:
        return ""
    try:
        url = BILLING_URL + quote(email, safe="")
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 - http(s) from $BILLING_URL
            found = json.loads(answer.read())
    except (OSError, ValueError):
        return ""
    return (
        f"<h4>Stripe</h4><ul class='c-sb-list'><li>Plan {escape(found['plan'])} "
        f"({escape(found['status'])})</li><li>MRR ${found['customer_mrr_cents'] / 100:,.2f}</li>"
        f"<li>Period ends {escape(found['current_period_end'])}</li></ul>"
    )


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    expected = base64.b64encode(hmac.new(SECRET, body, hashlib.sha1).digest())
    given = environ.get("HTTP_X_HELPSCOUT_SIGNATURE", "").encode("latin-1")
    if not hmac.compare_digest(expected, given):
        start_response("401 Unauthorized", [("Content-Type", "application/json")])
        return [b'{"error": "invalid signature"}']
    email = json.loads(body)["customer"]["email"].strip().lower()
    html = "".join(
        f"<h4>{escape(company)}</h4><p class='muted'>{escape(name)} · {escape(role)}</p>"
        f"<ul class='c-sb-list c-sb-list--two-line'><li>Plan {escape(plan)}</li>"
        f"<li>Employees {used} / {limit}</li><li>Renews {renews or '-'}</li></ul>"
        for company, name, role, plan, used, limit, renews in DB.execute(QUERY, (email,))
    )
    html += billing(email) if html else ""
    answer = json.dumps({"html": html or "<p>No customer found.</p>"}).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
    )
    return [answer]
