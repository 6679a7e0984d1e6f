"""Servers under test and what is measured of them: start and stop, check an answer, peak
memory per worker, CPU time used."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .common import ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(
    name: str, command: Callable[[int], list[str]], env: dict[str, str], logs: Path
) -> Iterator[tuple[int, int]]:
    """Start ``command(port)`` in its own process group; yield its pid and port once it
    accepts connections; stop the whole group on the way out (also on Ctrl-C or an error)."""
    port = free_port()
    log = logs / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            command(port), cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{name} did not start:\n{tail}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port)):
                    break
                time.sleep(0.2)
            yield process.pid, port
        finally:
            stop_group(process, grace_seconds=15)


def stop_group(process: subprocess.Popen[bytes], grace_seconds: float) -> None:
    """Stop ``process``'s whole process group (it was started with ``start_new_session``):
    SIGTERM, then SIGKILL if it is still there after ``grace_seconds``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_seconds)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def check_answer(port: int, line: str, expect: list[str], attempts: int = 1) -> None:
    """Send one request and fail loudly unless the answer is 200 and contains ``expect``;
    ``attempts`` > 1 asks again (a second later) while it does not, e.g. while a first
    database connection is opened against a short deadline on a busy machine."""
    signature, body = line.rstrip("\n").split("\t", 1)
    for attempt in range(attempts):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            headers = {"Content-Type": "application/json", "X-HelpScout-Signature": signature}
            connection.request("POST", "/helpscout", body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read().decode()
        finally:
            connection.close()
        html = json.loads(answer).get("html", "") if response.status == 200 else ""
        if not (missing := [text for text in expect if text not in html]):
            return
        if attempt + 1 < attempts:
            time.sleep(1)
    raise RuntimeError(f"unexpected answer (HTTP {response.status}, lacks {missing}): {answer}")


class Blackhole:
    """A local HTTP "API" that accepts connections, reads what is sent and never answers."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.port: int = self.socket.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError), selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self.socket:
                        connection, _ = self.socket.accept()
                        selector.register(connection, selectors.EVENT_READ)
                        continue
                    peer: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        received = peer.recv(65536)
                    except OSError:
                        received = b""
                    if not received:  # the caller gave up
                        selector.unregister(peer)
                        peer.close()

    def close(self) -> None:
        self.socket.close()


class RssSampler:
    """Samples the resident memory of a server's worker processes every 100 ms."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.master = psutil.Process(pid)
        self.peak: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.1):
            for child in self.master.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "resource_tracker" not in " ".join(child.cmdline()):
                        rss = child.memory_info().rss
                        self.peak[child.pid] = max(self.peak.get(child.pid, 0), rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return max(self.peak.values(), default=0) / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` and all its descendants so far, including
    the children it has already waited for (wrk, once it has finished)."""
    import psutil

    used = 0.0
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        times = root.cpu_times()
        used += times.user + times.system + times.children_user + times.children_system
        for process in root.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                used += times.user + times.system
    return used


def settle(pid: int, timeout: float = 30.0) -> None:
    """Wait until process ``pid`` and its children use under 5 % of a core (every worker has
    started), for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    used = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        used, before = cpu_seconds(pid), used
        if used - before < 0.025:
            return


def own_cpu_seconds() -> float:
    """CPU time of this process and of the children it has waited for (the load generators
    once finished), not of the servers it is still running (measured on their own)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def database_cpu_seconds() -> dict[int, float]:
    """CPU time of every PostgreSQL process so far, by pid."""
    import psutil

    used = {}
    for process in psutil.process_iter(["name", "cpu_times"]):
        if (process.info["name"] or "").startswith("postgres") and process.info["cpu_times"]:
            used[process.pid] = process.info["cpu_times"].user + process.info["cpu_times"].system
    return used


class CpuMeter:
    """CPU time used while it is entered: by the server's processes, by PostgreSQL, by each
    helper process in ``helpers`` (the slow network), and by programs that are neither the
    benchmark (this process and its children: wrk, the load generators) nor its server, its
    helpers or PostgreSQL."""

    def __init__(self, server: int, helpers: dict[str, int] | None = None) -> None:
        self.server = server
        self.helpers = helpers or {}
        self.server_seconds = 0.0
        self.database_seconds = 0.0
        self.helper_seconds: dict[str, float] = {}
        self.other_percent = 0.0
        self.wall_seconds = 0.0

    def _read(self) -> list[float]:
        import psutil

        t = psutil.cpu_times()
        busy = t.user + t.nice + t.system + t.irq + t.softirq + t.steal
        helpers = [cpu_seconds(pid) for pid in self.helpers.values()]
        ours = own_cpu_seconds()
        total = busy + t.idle + t.iowait
        # A backend that exits takes its CPU time along: count the ones alive at the end,
        # from zero when they started meanwhile.
        database = database_cpu_seconds()
        before = getattr(self, "_database", database)
        self._database = database
        used = sum(seconds - before.get(pid, 0.0) for pid, seconds in database.items())
        return [total, busy, cpu_seconds(self.server), used, ours, *helpers]

    def __enter__(self) -> CpuMeter:
        self._start = self._read()
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall_seconds = time.perf_counter() - self._started
        used = [b - a for a, b in zip(self._start, self._read(), strict=True)]
        total, busy, server, database, ours, *helpers = used
        self.server_seconds = server
        self.database_seconds = database
        self.helper_seconds = dict(zip(self.helpers, helpers, strict=True))
        known = server + database + ours + sum(helpers)
        self.other_percent = max(0.0, busy - known) / max(total, 1e-9) * 100
