"""Stopping and starting the machine's own PostgreSQL and Redis, for the outage tests.

Only as root and where the commands exist; elsewhere the test is skipped with the reason (or
fails, with ``DESKSIDE_REQUIRE_SERVICES=1``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

__all__ = ["can_restart", "start_postgres", "start_redis", "stop_postgres", "stop_redis"]


def can_restart(command: str) -> None:
    if shutil.which(command) is None or os.geteuid() != 0:
        reason = f"stopping services needs root and {command} (this machine has neither)"
        if os.environ.get("DESKSIDE_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def _run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=60)


def _wait_until(check: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("the service did not come back")
        time.sleep(0.2)


def _succeeds(*command: str) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def _postgres_cluster() -> str:
    return sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]


def stop_postgres() -> None:
    _run(
        "pg_ctlcluster",
        "--skip-systemctl-redirect",
        _postgres_cluster(),
        "main",
        "stop",
        "-m",
        "fast",
    )


def start_postgres() -> None:
    _run("pg_ctlcluster", "--skip-systemctl-redirect", _postgres_cluster(), "main", "start")
    _wait_until(lambda: _succeeds("pg_isready", "-h", "127.0.0.1", "-q"))


def stop_redis() -> None:
    _run("redis-cli", "-h", "127.0.0.1", "shutdown", "nosave")


def start_redis() -> None:
    _run(
        "redis-server",
        "--daemonize",
        "yes",
        "--bind",
        "127.0.0.1",
        "-::1",
        "--port",
        "6379",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        "/var/lib/redis",
        "--logfile",
        "/var/log/redis/ci.log",
    )
    _wait_until(lambda: _succeeds("redis-cli", "-h", "127.0.0.1", "ping"))
