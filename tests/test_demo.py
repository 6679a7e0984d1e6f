"""``deskside demo`` as a person runs it: a real process, started as the README says, whose
printed requests are sent as printed (with httpx, from the curl lines), and a second demo on
the same port that stops before printing anything."""

from __future__ import annotations

import os
import queue
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from deskside.cli import app
from deskside.demo import demo_secret_envs
from deskside.helpdesks import protocol_classes

SCRIPT = Path(sys.executable).parent / "deskside"
"""The installed command, as ``.venv/bin/deskside demo`` in the README runs it."""
HELPSCOUT_SECRET = "hs-secret-from-the-environment"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_environment(home: Path) -> dict[str, str]:
    """A new user's environment: a home of their own, deskside not on PATH, only the Help
    Scout secret set."""
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share")}
    env |= {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    for name in [*demo_secret_envs().values(), "DESKSIDE_DATA_DIR", "DESKSIDE_ADMIN_PASSWORD"]:
        env.pop(name, None)
    env.pop("STRIPE_API_KEY", None)
    env["HELPSCOUT_SECRET"] = HELPSCOUT_SECRET
    return env


@dataclass
class Demo:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None]

    def read_until(self, marker: str, seconds: float = 90) -> list[str]:
        """Lines printed until one containing ``marker`` (included)."""
        read: list[str] = []
        deadline = time.monotonic() + seconds
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            assert line is not None, f"the demo stopped: {''.join(read)}"
            read.append(line)
            if marker in line:
                return read


@contextmanager
def running(command: list[str], env: dict[str, str]) -> Iterator[Demo]:
    """``command`` started, its output read line by line as it comes; stopped afterwards."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield Demo(process, lines)
    finally:
        process.terminate()
        process.wait(timeout=30)


def send_as_printed(curl: str) -> httpx.Response:
    """The request a printed curl command describes, sent with httpx once the demo listens."""
    words = shlex.split(curl)
    method = words[words.index("-X") + 1]
    url = next(word for word in words if word.startswith("http"))
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = words[words.index("--data-binary") + 1].encode() if "--data-binary" in words else b""
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.request(method, url, headers=headers, content=body, timeout=10)
        except httpx.ConnectError:
            assert time.monotonic() < deadline, f"the demo never answered at {url}"
            time.sleep(0.1)


def curl_after(lines: list[str], comment: str) -> str:
    """The curl command printed under the ``# comment…`` line."""
    index = next(i for i, line in enumerate(lines) if line.startswith(f"# {comment}"))
    return lines[index + 1].strip()


def test_the_demo_says_where_its_secrets_come_from_and_serves_what_it_prints(
    tmp_path: Path,
) -> None:
    assert SCRIPT.is_file(), SCRIPT
    port = free_port()
    env = demo_environment(tmp_path)
    with running([str(SCRIPT), "demo", "--port", str(port)], env) as demo:
        lines = demo.read_until("Web UI:")
        printed = "".join(lines)
        helpscout = send_as_printed(curl_after(lines, "Help Scout:"))
        helper = curl_after(lines, "Helper:")
        answered, replayed = send_as_printed(helper), send_as_printed(helper)
        home = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)

        # A second demo on the same port stops at once, printing nothing, and the first one
        # keeps serving the same database.
        second = subprocess.run(
            [str(SCRIPT), "demo", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        still = send_as_printed(curl_after(lines, "Help Scout:"))

    assert f"# Help Scout: secret {HELPSCOUT_SECRET} (from $HELPSCOUT_SECRET)" in printed
    for title, env_name in [("There There", "THERETHERE_SECRET"), ("Plain", "PLAIN_SECRET")]:
        assert re.search(rf"# {title}: secret \S+ \(random; set \${env_name} to keep it\)", printed)
    assert "(random; set $HELPSCOUT_WEBHOOK_SECRET to keep it)" in printed
    assert "(random; set $HELPER_IDENTITY_TOKEN to keep it)" in printed
    assert "random; set $DESKSIDE_ADMIN_PASSWORD to keep it" in printed
    assert printed.count("(from $") == 1
    # deskside is not on PATH: the hints name the command as it was run
    assert f"then: {SCRIPT} conversations" in printed
    assert f"Preview without a helpdesk: {SCRIPT} preview owner@acme.example --demo" in printed
    database = tmp_path / ".local" / "share" / "deskside" / "demo.sqlite3"
    assert f"customer database {database}" in printed
    assert f"Web UI: http://127.0.0.1:{port}/ui/" in printed

    assert helpscout.status_code == 200 and "Acme HR" in helpscout.json()["html"]
    assert answered.status_code == 200 and answered.json()["customer"]["value"] == 24900
    assert replayed.status_code == 401  # the same signed request again is a replay
    assert (home.status_code, home.headers["location"]) == (302, "/ui/")

    assert second.returncode == 2, second
    assert second.stdout == ""
    assert f"127.0.0.1:{port}" in second.stderr and "--port" in second.stderr
    assert still.status_code == 200


def test_the_demo_run_as_a_module_behind_a_public_url(tmp_path: Path) -> None:
    env = demo_environment(tmp_path)
    env["DESKSIDE_ADMIN_PASSWORD"] = "demo-admin-password"
    command = [sys.executable, "-m", "deskside", "demo", "--port", str(free_port())]
    command += ["--public-url", "https://demo.example.org/deskside/"]
    with running(command, env) as demo:
        printed = "".join(demo.read_until("Web UI:"))
    curls = [line for line in printed.splitlines() if line.startswith("curl ")]
    urls = [next(w for w in shlex.split(c) if w.startswith("http")) for c in curls]
    assert all(url.startswith("https://demo.example.org/deskside/") for url in urls), urls
    paths = {url.removeprefix("https://demo.example.org/deskside").split("?")[0] for url in urls}
    served = {desk.default_path(kind) for kind, desk in protocol_classes().items()}
    assert served <= paths  # every registered helpdesk
    assert urls[0] == "https://demo.example.org/deskside/helpscout"
    assert f"then: {sys.executable} -m deskside conversations" in printed
    assert "Web UI: https://demo.example.org/deskside/ui/ (admin password: from $DESKSIDE_AD" in (
        printed
    )
    assert "demo-admin-password" not in printed


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--public-url", "demo.example.org"], "http(s) URL"),
        (["--public-url", "https://demo.example.org/?x=1"], "without a query"),
    ],
)
def test_the_demo_refuses_a_public_url_that_is_no_base_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: list[str], said: str
) -> None:
    monkeypatch.setenv("DESKSIDE_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["demo", "--port", str(free_port()), *option])
    assert result.exit_code == 2, result.output
    assert said in result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "demo.sqlite3").exists()
