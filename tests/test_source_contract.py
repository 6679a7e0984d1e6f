"""What every registered source kind owes, checked for each kind the registry lists.

A kind's own test file, ``tests/test_sources_<kind>.py``, says how to stand up a backend for
it: ``contract_case(tmp_path, silent)``, an async context manager yielding a
:class:`ContractCase` (``silent`` is a server that accepts connections and never answers,
for the hanging table). Everything else here holds for every kind alike: a lookup through
the config's ``[sources.NAME]`` table, a failure reported as a ``SourceError`` that names no
customer, the deadline (a cancelled lookup leaves no task or connection behind), and a
section in the configuration reference. Then the registry itself: no built-in ``Source`` class
left out, unknown kinds told the known ones, a kind added by an installed package (and broken
ones left out), and no heavy SDK loaded for a kind that is not configured.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
import os
import pkgutil
import re
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deskside.config import Settings, load_settings
from deskside.errors import ConfigError, SourceError
from deskside.lookup import Lookup
from deskside.resolve import Resolver
from deskside.sources import Source, build_source, source_kinds

ROOT = Path(__file__).resolve().parents[1]
KINDS = sorted(source_kinds())
PRIVATE = "contract-customer.private@example.org"
"""The address looked up where a lookup fails or hangs: it must show up in no message."""


@dataclass(frozen=True)
class ContractCase:
    """A kind's backend, as ``[sources.NAME]`` tables (each with its ``kind``)."""

    answering: dict[str, Any]
    """Finds at least one record for ``known``, none for other addresses."""
    known: str
    failing: dict[str, Any]
    """Its lookups fail (the backend refuses, errs or is down)."""
    hanging: dict[str, Any]
    """Its lookups never answer: e.g. it points at the ``silent`` server."""


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte; counts those still open."""

    def __init__(self) -> None:
        self.open_connections = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, scheme: str) -> str:
        """``scheme://127.0.0.1:PORT``."""
        return f"{scheme}://127.0.0.1:{self.port}"

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        self.accepted += 1
        try:
            while await reader.read(4096):  # until the client closes its end
                pass
        except ConnectionError:
            pass
        finally:
            self.open_connections -= 1
            writer.close()

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()


ContractFactory = Callable[[Path, SilentServer], AbstractAsyncContextManager[ContractCase]]


def _factory(kind: str) -> ContractFactory:
    """``contract_case`` of the kind's own test file; fails saying what a new kind must add."""
    try:
        module = importlib.import_module(f"test_sources_{kind}")
    except ModuleNotFoundError:
        pytest.fail(f"source kind {kind!r}: add tests/test_sources_{kind}.py with contract_case")
    factory: ContractFactory | None = getattr(module, "contract_case", None)
    assert factory is not None, f"tests/test_sources_{kind}.py: define contract_case"
    return factory


@pytest.fixture
async def silent() -> AsyncIterator[SilentServer]:
    server = SilentServer()
    await server.start()
    try:
        yield server
    finally:
        await server.aclose()


@asynccontextmanager
async def source_of(table: dict[str, Any], name: str = "contract") -> AsyncIterator[Source]:
    """The source a config file's ``[sources.NAME]`` table sets up (through the registry)."""
    settings = Settings.model_validate({"sources": {name: table}})
    source = build_source(name, settings.sources[name])
    try:
        yield source
    finally:
        await source.aclose()


pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", KINDS)
async def test_every_kind_answers_a_lookup(kind: str, tmp_path: Path, silent: SilentServer) -> None:
    async with _factory(kind)(tmp_path, silent) as case, source_of(case.answering) as source:
        assert source.kind == kind == case.answering["kind"]
        found = await source.fetch(Lookup(emails=(case.known,)))
        missing = await source.fetch(Lookup(emails=("nobody-here@example.net",)))
    assert found, f"{kind}: nothing found for {case.known}"
    assert all(isinstance(record, dict) for record in found)
    assert missing == []


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failure_is_a_source_error_that_names_no_customer(
    kind: str, tmp_path: Path, silent: SilentServer, caplog: pytest.LogCaptureFixture
) -> None:
    lookup = Lookup(emails=(PRIVATE,))
    caplog.set_level(logging.DEBUG)
    async with _factory(kind)(tmp_path, silent) as case:
        async with source_of(case.failing) as source:
            with pytest.raises(SourceError) as raised:
                await source.fetch(lookup)
        async with source_of(case.failing) as source:
            resolver = Resolver({"contract": source}, deadline_seconds=30)
            profile = await resolver.resolve(lookup)
    reported = profile.results["contract"].error
    assert reported, f"{kind}: the resolver reported no error"
    formatter = logging.Formatter()  # with the traceback, if a record has one
    logged = [formatter.format(r) for r in caplog.records if r.name.startswith("deskside")]
    local_part = PRIVATE.split("@")[0]
    for text in (str(raised.value), reported, *logged):
        assert local_part not in text.lower(), text


@pytest.mark.parametrize("kind", KINDS)
async def test_a_hanging_lookup_ends_at_the_deadline_and_leaves_nothing_behind(
    kind: str, tmp_path: Path, silent: SilentServer
) -> None:
    deadline = 0.5
    async with _factory(kind)(tmp_path, silent) as case:
        before = asyncio.all_tasks()
        async with source_of(case.hanging) as source:
            resolver = Resolver({"contract": source}, deadline_seconds=deadline)
            started = time.perf_counter()
            profile = await resolver.resolve(Lookup(emails=(PRIVATE,)))
            elapsed = time.perf_counter() - started
            assert profile.results["contract"].error == "timed out"
            assert elapsed < deadline + 2  # the deadline, plus room for a busy machine
            left = await _settled(lambda: asyncio.all_tasks() - before - {asyncio.current_task()})
            assert not left, f"{kind}: tasks still running after the deadline: {left}"
            assert await _settled(lambda: silent.open_connections) == 0, (
                f"{kind}: a connection of the abandoned lookup is still open"
            )


async def _settled(read: Callable[[], Any], seconds: float = 10) -> Any:
    """``read()`` once it is falsy, or its last value after ``seconds`` (polled)."""
    give_up = time.monotonic() + seconds
    while True:
        value = read()
        if not value or time.monotonic() > give_up:
            return value
        await asyncio.sleep(0.02)


def test_every_source_class_of_the_package_is_registered() -> None:
    """A built-in module whose ``SOURCE`` is forgotten would be no kind at all, silently."""
    import deskside.sources

    registered = {kind.source for kind in source_kinds().values()}
    for info in pkgutil.iter_modules(deskside.sources.__path__):
        module = importlib.import_module(f"deskside.sources.{info.name}")
        for value in vars(module).values():
            defined_here = getattr(value, "__module__", None) == module.__name__
            if defined_here and isinstance(value, type) and issubclass(value, Source):
                assert inspect.isabstract(value) or value in registered, (
                    f"{module.__name__}: set SOURCE = {value.__name__}"
                )


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_documented(kind: str) -> None:
    page = ROOT / "docs" / "configuration.md"
    text = (page if page.is_file() else ROOT / "README.md").read_text(encoding="utf-8")
    assert re.search(rf"Source kind `{kind}`|`kind = \"{kind}\"`", text), (
        f"{page.name}: document the source kind {kind!r} (a 'Source kind `{kind}`' section)"
    )


def test_an_unknown_kind_is_a_config_error_listing_the_kinds(tmp_path: Path) -> None:
    path = tmp_path / "deskside.toml"
    path.write_text('[sources.app]\nkind = "mongo"\nurl = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    (problem,) = raised.value.problems
    assert problem.startswith(f"{path}:1: sources.app: unknown kind 'mongo': use one of ")
    assert all(f"'{kind}'" in problem for kind in KINDS), problem


def test_a_table_without_a_kind_is_told_the_kinds(tmp_path: Path) -> None:
    path = tmp_path / "deskside.toml"
    path.write_text('[sources.app]\nurl = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    (problem,) = raised.value.problems
    assert problem.startswith(f"{path}:1: sources.app: required: add `kind = …`, one of ")
    assert all(f"'{kind}'" in problem for kind in KINDS), problem


CRM_PLUGIN = '''
"""A source kind from another package: the addresses it is asked about, as records."""
from typing import Literal

from deskside.sources import Source, SourceConfig


class CrmConfig(SourceConfig):
    kind: Literal["crm"]
    region: str


class CrmSource(Source):
    kind = "crm"
    config_model = CrmConfig

    def __init__(self, name, config):
        super().__init__(name, config)
        self.region = config.region

    async def fetch(self, lookup):
        return [{"email": email, "region": self.region} for email in lookup.emails]


SOURCE = CrmSource


class Mismatched(CrmSource):
    kind = "other"  # yet its config model says "crm"
'''


def _installed_plugin(tmp_path: Path) -> dict[str, str]:
    """A package ``acme_crm`` installed in ``tmp_path`` (module and dist-info, as pip lays them
    out) that registers the source kind ``crm``, and two broken ones: ``ghost`` from a module
    that is missing, ``other`` a class whose config model is another kind's; the environment
    that puts it on the path."""
    (tmp_path / "acme_crm.py").write_text(CRM_PLUGIN, encoding="utf-8")
    dist_info = tmp_path / "acme_crm-1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-crm\nVersion: 1.0\n")
    entry_points = "[deskside.sources]\ncrm = acme_crm\nghost = acme_ghost_not_installed\n"
    entry_points += "other = acme_crm:Mismatched\n"
    (dist_info / "entry_points.txt").write_text(entry_points)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "NO_COLOR": "1", "COLUMNS": "200"}


def test_an_installed_package_adds_a_source_kind_and_a_broken_one_is_left_out(
    tmp_path: Path,
) -> None:
    env = _installed_plugin(tmp_path)
    config = tmp_path / "deskside.toml"
    config.write_text(
        '[sources.crm]\nkind = "crm"\nregion = "eu"\n\n[card]\ntitle = "{{ crm.region }}"\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "deskside", "check", "-c", str(config), "--email", "a@b.example"],
        capture_output=True,
        env=env,
        timeout=120,
    )
    output = done.stdout.decode()
    assert done.returncode == 0, output + done.stderr.decode()
    assert re.search(r"crm\s+│\s+crm\s+│\s+ok", output), output
    assert re.search(r"crm\s+│\s+1 record", output), output
    warning = "source kind left out: acme_ghost_not_installed (entry point 'ghost' of"
    assert warning in done.stderr.decode()  # the broken plugins are left out, nothing else
    mismatched = "acme_crm:Mismatched (entry point 'other' of deskside.sources): "
    assert mismatched + "CrmConfig needs `kind: Literal['other']`" in done.stderr.decode()


def test_an_installed_kind_with_a_wrong_table_is_a_config_error(tmp_path: Path) -> None:
    env = _installed_plugin(tmp_path)
    config = tmp_path / "deskside.toml"
    config.write_text('[sources.crm]\nkind = "crm"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "deskside", "check", "-c", str(config)],
        capture_output=True,
        env=env,
        timeout=120,
    )
    errors = done.stdout.decode() + done.stderr.decode()
    assert done.returncode != 0
    assert f"{config}:1: sources.crm.region: required: add `region = …`" in errors, errors


def test_a_config_without_stripe_or_redis_loads_neither(tmp_path: Path) -> None:
    """Sources build lazily: the Stripe SDK and the Redis client load only when configured."""
    config = tmp_path / "deskside.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            [sources.app]
            kind = "sql"
            url = "sqlite:///{tmp_path / "app.db"}"
            query = "select 1 as one where :email is not null"

            [sources.billing]
            kind = "http"
            url = "http://127.0.0.1:9/customers/{{email}}"
            """
        ),
        encoding="utf-8",
    )
    script = (
        "import json, sys\n"
        "from deskside.config import load_settings\n"
        "from deskside.service import SidebarService\n"
        f"SidebarService(load_settings({str(config)!r}))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    loaded = {name.split(".")[0] for name in json.loads(done.stdout)}
    assert "sqlalchemy" in loaded  # the report is of a process that built the sources
    assert sorted(loaded & {"stripe", "redis"}) == []
