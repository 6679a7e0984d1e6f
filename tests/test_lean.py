"""A sidebar-only deskside stays lean: without ``[insights]`` the serving process never loads
the insights stack (scikit-learn, SciPy, NumPy, lxml, alembic), and the command line answers
``--help`` and ``sign`` without loading the server at all.

Start-up times and memory are measured by ``benchmarks/startup.py``, not asserted here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx

from deskside.helpdesks import kinds
from deskside.protocols import PROTOCOLS
from helpers import deskside_serving

INSIGHTS_STACK = ("sklearn", "scipy", "numpy", "lxml", "alembic")
UNUSED_HERE = ("aiomysql", "pymysql", "cryptography", "markdown_it", "httpx", "pygments")
"""What a server whose config neither shows markdown nor calls an API never needs: the MySQL
driver (and the cryptography it loads), the markdown parser, an HTTP client (with the
highlighter its own command line loads)."""
CARD_SECRET = "lean-card-secret"
PROBE = """
import json
import os
import sys


def loaded(lookup):
    \"\"\"Write the names of the modules this process has loaded to $LEAN_MODULES_REPORT.\"\"\"
    with open(os.environ["LEAN_MODULES_REPORT"], "w", encoding="utf-8") as file:
        json.dump(sorted(sys.modules), file)
    return {"reported": True}
"""
SIDEBAR_ONLY = """
[sources.app]
kind = "sql"
url = "env:LEAN_DATABASE_URL"
query = "select name, email from customers where lower(email) in :emails"

[sources.probe]  # reports the serving process's sys.modules
kind = "python"
function = "lean_probe:loaded"

[card]
title = "{{ app.name }}"

[helpdesks.helpscout]
secret = "lean-helpscout-secret"

[helpdesks.therethere]
secret = "lean-therethere-secret"

[helpdesks.helper]
secret = "lean-helper-secret"

[helpdesks.plain]
secret = "lean-plain-secret"

[helpdesks.card]
secret = "lean-card-secret"
"""
"""A SQL source, a Python hook, the five helpdesks, and no ``[insights]`` table."""


def _sidebar_only(tmp_path: Path, report: Path) -> tuple[Path, dict[str, str]]:
    """The sidebar-only config in ``tmp_path``, with its SQLite database and hook, and the
    environment to serve it in (the hook writes ``report``)."""
    database = tmp_path / "app.db"
    with sqlite3.connect(database) as connection:
        connection.execute("create table customers (email text, name text)")
        connection.execute("insert into customers values ('ada@example.com', 'Ada')")
    (tmp_path / "lean_probe.py").write_text(PROBE, encoding="utf-8")
    config = tmp_path / "deskside.toml"
    config.write_text(SIDEBAR_ONLY, encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
        "LEAN_DATABASE_URL": f"sqlite:///{database}",
        "LEAN_MODULES_REPORT": str(report),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return config, env


def test_a_sidebar_only_server_never_loads_the_insights_stack(tmp_path: Path) -> None:
    report = tmp_path / "modules.json"
    config, env = _sidebar_only(tmp_path, report)
    log = tmp_path / "serve.log"
    with deskside_serving(config, env, log) as base:
        body = json.dumps({"email": "ada@example.com"}).encode()
        signature = hmac.new(CARD_SECRET.encode(), body, hashlib.sha256).hexdigest()
        answer = httpx.post(
            f"{base}/card", content=body, headers={"X-Deskside-Signature": signature}, timeout=30
        )

    assert answer.status_code == 200, log.read_text()
    assert [card["title"] for card in answer.json()["cards"]] == ["Ada"]
    modules = set(json.loads(report.read_text(encoding="utf-8")))
    assert "deskside.server" in modules  # the report comes from the serving process
    tops = {name.split(".")[0] for name in modules}
    assert sorted(tops & set(INSIGHTS_STACK)) == []
    # Nor what this config does not use (its source is on SQLite, its card shows no markdown),
    # nor SQLAlchemy's ORM (deskside runs SQLite, PostgreSQL and MySQL on their own drivers).
    assert sorted(tops & set(UNUSED_HERE)) == []
    assert "sqlalchemy.orm" not in modules


def _modules_after(
    argv: list[str], stdin: bytes = b""
) -> tuple[subprocess.CompletedProcess[bytes], set[str]]:
    """Run the ``deskside`` command ``argv`` in a fresh interpreter; its result and the
    top-level names of every module it loaded."""
    script = textwrap.dedent(
        f"""\
        import atexit, json, sys
        atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
        sys.argv = ["deskside", *{argv!r}]
        from deskside.cli import main
        main()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], input=stdin, capture_output=True, timeout=120
    )
    names = json.loads(done.stderr.decode().strip().splitlines()[-1])
    return done, {name.split(".")[0] for name in names}


def test_help_loads_neither_the_insights_stack_nor_the_server() -> None:
    done, modules = _modules_after(["--help"])
    assert done.returncode == 0
    listed = done.stdout.decode()
    for command in ("serve", "sign", "conversations", "connect", "classify", "reports"):
        assert command in listed, listed
    # Loading the web framework or the database layer is what makes a CLI slow to answer.
    assert sorted(modules & {*INSIGHTS_STACK, "fastapi", "sqlalchemy", "stripe"}) == []


def test_sign_loads_neither_the_insights_stack_nor_the_server() -> None:
    body = b'{"customer":{"email":"ada@example.com"}}'
    done, modules = _modules_after(["sign", "--desk", "plain", "--secret", "s3cret"], body)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert done.stdout.decode().strip() == expected
    assert sorted(modules & {*INSIGHTS_STACK, "fastapi", "sqlalchemy", "stripe"}) == []


def test_the_command_line_knows_every_helpdesk_and_how_it_signs() -> None:
    """``deskside sign`` and the kinds listed in help come from a table kept apart from the
    protocols (so the CLI need not load them); it must say what the protocols do."""
    protocols = [(p.kind, p.scheme, p.signature_header) for p in PROTOCOLS.values()]
    table = [(h.kind, h.scheme, h.signature_header) for h in kinds().values()]
    assert table == protocols
