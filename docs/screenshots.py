"""Take the docs' screenshots of the web UI (docs/web-ui.md): ``python docs/screenshots.py``.

Serves the demo (with a few weeks of made-up Help Scout conversations) the way the end-to-end
tests do, and photographs the login, Preview, Setup and Insights pages in headless Chromium
(Debian's ``chromium`` package, driven by Playwright) into ``docs/screenshots/``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_web_e2e import (  # noqa: E402 - after the path is set
    chromium_browser,
    deliver_conversations,
    live_server,
)

OUT = ROOT / "docs" / "screenshots"
WORDS = [
    ("Upload crashes", "The app crashes every time I upload a photo. Error 500."),
    ("Export broken", "The CSV export is broken since Monday, it stops after 500 rows."),
    ("Dark mode", "It would be great if you could add a dark mode to the dashboard."),
    ("Slack", "Feature request: please add a Slack integration for time-off requests."),
    ("Password", "How do I change my password?"),
    ("Invoices", "Where can I find my invoices for last year?"),
    ("Payroll error", "Payroll fails with an error when an employee has no bank account."),
    ("API docs", "The API documentation for webhooks is missing the payload fields."),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC)
    with (
        chromium_browser() as browser,
        tempfile.TemporaryDirectory() as directory,
        live_server(Path(directory), conversations=False) as server,
    ):
        number = 1
        for week in range(8):
            for offset in range(week % 3 + 2):
                subject, text = WORDS[(week * 3 + offset) % len(WORDS)]
                created = (now - timedelta(weeks=week, days=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")
                deliver_conversations(server.url, {number: (subject, text)}, created=created)
                number += 1
        time.sleep(8)  # the server classifies new conversations every few seconds
        for name, width, height in (("", 1280, 900), ("-phone", 390, 844)):
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.goto(f"{server.url}/ui/login")
            if not name:
                page.screenshot(path=OUT / "login.png")
            page.get_by_label("Password").fill(server.password)
            page.get_by_role("button", name="Log in").click()
            page.wait_for_url("**/ui/insights")
            page.screenshot(path=OUT / f"insights{name}.png", full_page=True)
            page.goto(f"{server.url}/ui/preview?email=mallory%40evil.example")
            page.wait_for_timeout(300)  # the Help Scout frame sizes itself
            page.screenshot(path=OUT / f"preview{name}.png", full_page=True)
            if not name:
                page.goto(f"{server.url}/ui/setup")
                page.screenshot(path=OUT / "setup.png", full_page=True)
            context.close()
    for path in sorted(OUT.glob("*.png")):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
