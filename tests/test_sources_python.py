"""The ``python`` source: hook modules written into a temporary folder and imported for real."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from deskside.config import Settings, load_settings
from deskside.errors import ConfigError, SourceError
from deskside.lookup import Lookup
from deskside.resolve import Resolver
from deskside.sources import build_source
from deskside.sources.python import PythonSource, PythonSourceConfig
from test_source_contract import ContractCase, SilentServer

LOOKUP = Lookup(emails=("owner@acme.example", "owner@acme.test"), name="Olivia")

HookWriter = Callable[[str], str]


@pytest.fixture
def hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HookWriter:
    """Writes a module with the given source into a folder on ``sys.path``; returns its name.

    Every module gets a new name, so no test sees another's (or a cached) module.
    """
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"deskside_hook_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        return name

    return write


def source_for(function: str, name: str = "crm", **table: Any) -> PythonSource:
    config = PythonSourceConfig.model_validate({"kind": "python", "function": function, **table})
    return PythonSource(name, config)


@pytest.mark.anyio
async def test_sync_function_returning_a_mapping(hook: HookWriter) -> None:
    module = hook(
        """
        def find(lookup):
            return {"email": lookup.email, "emails": list(lookup.emails), "name": lookup.name}
        """
    )
    records = await source_for(f"{module}:find").fetch(LOOKUP)
    assert records == [
        {"email": "owner@acme.example", "emails": list(LOOKUP.emails), "name": "Olivia"}
    ]


@pytest.mark.anyio
async def test_async_function_is_awaited_on_the_loop(hook: HookWriter) -> None:
    module = hook(
        """
        import asyncio
        import threading

        async def find(lookup, *, tier="gold"):
            await asyncio.sleep(0)
            return {"tier": tier, "main_thread": threading.current_thread().name}
        """
    )
    source = source_for(f"{module}:find", options={"tier": "platinum"})
    assert await source.fetch(LOOKUP) == [{"tier": "platinum", "main_thread": "MainThread"}]


@pytest.mark.anyio
async def test_list_of_mappings_is_several_records(hook: HookWriter) -> None:
    module = hook(
        """
        def find(lookup):
            return [{"company": "Initech"}, {"company": "Initrode"}]
        """
    )
    records = await source_for(f"{module}:find").fetch(LOOKUP)
    assert records == [{"company": "Initech"}, {"company": "Initrode"}]


@pytest.mark.anyio
@pytest.mark.parametrize("nothing", ["None", "[]", "()"])
async def test_nothing_returned_is_not_found(hook: HookWriter, nothing: str) -> None:
    module = hook(
        f"""
        def find(lookup):
            return {nothing}
        """
    )
    assert await source_for(f"{module}:find").fetch(LOOKUP) == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("returned", "message"),
    [
        ('"Acme"', r"returned a str: expected a mapping, a list of mappings, or None"),
        ("42", r"returned a int: expected"),
        ('[{"ok": 1}, "Acme"]', r"returned a list whose item 1 is a str, not a mapping"),
    ],
)
async def test_anything_else_returned_is_a_source_error(
    hook: HookWriter, returned: str, message: str
) -> None:
    module = hook(
        f"""
        def find(lookup):
            return {returned}
        """
    )
    with pytest.raises(SourceError, match=f"^{module}:find {message}"):
        await source_for(f"{module}:find").fetch(LOOKUP)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["def", "async def"])
async def test_an_exception_is_a_source_error_without_its_message(
    hook: HookWriter, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    module = hook(
        f"""
        {kind} find(lookup):
            raise KeyError("secret-token-123 for " + lookup.email)
        """
    )
    with pytest.raises(SourceError, match=f"^{module}:find raised KeyError$") as raised:
        await source_for(f"{module}:find").fetch(LOOKUP)
    assert isinstance(raised.value.__cause__, KeyError)
    assert "secret-token-123" not in str(raised.value)
    assert f"{module}:find raised KeyError" in caplog.text  # where, logged for its author
    assert 'raise KeyError("secret-token-123 for " + lookup.email)' in caplog.text
    assert "owner@acme.example" not in caplog.text  # its message is not: it holds the address


@pytest.mark.anyio
async def test_a_sleeping_sync_hook_does_not_block_the_loop(hook: HookWriter) -> None:
    module = hook(
        """
        import time

        def find(lookup):
            time.sleep(2)
            return {"slow": True}
        """
    )
    source = source_for(f"{module}:find")
    ticks: list[float] = []

    async def tick() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.02)

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    try:
        records = await source.fetch(LOOKUP)
    finally:
        ticker.cancel()
    elapsed = time.monotonic() - started

    assert records == [{"slow": True}]
    assert elapsed >= 2
    during = [t for t in ticks if started < t < started + 2]
    # ~100 expected, and a tenth of that on a busy machine; a blocked loop manages one at most
    assert len(during) >= 10


@pytest.mark.anyio
async def test_the_resolver_reports_a_failing_hook_and_keeps_the_others(
    hook: HookWriter,
) -> None:
    module = hook(
        """
        def works(lookup):
            return {"plan": "Pro"}

        def breaks(lookup):
            raise RuntimeError("down")
        """
    )
    resolver = Resolver(
        {
            "app": source_for(f"{module}:works", name="app"),
            "crm": PythonSource(
                "crm", PythonSourceConfig(kind="python", function=f"{module}:breaks", label="CRM")
            ),
        },
        deadline_seconds=1,
    )
    profile = await resolver.resolve(LOOKUP)
    assert profile.results["app"].records == [{"plan": "Pro"}]
    assert profile.results["crm"].error == f"{module}:breaks raised RuntimeError"
    assert profile.unavailable == ["CRM"]


def test_registered_as_a_source_kind(hook: HookWriter) -> None:
    module = hook(
        """
        class Directory:
            @staticmethod
            def find(lookup, *, region):
                return None
        """
    )
    settings = Settings.model_validate(
        {
            "sources": {
                "crm": {
                    "kind": "python",
                    "function": f"{module}:Directory.find",
                    "options": {"region": "eu"},
                }
            }
        }
    )
    config = settings.sources["crm"]
    assert isinstance(config, PythonSourceConfig)
    assert isinstance(build_source("crm", config), PythonSource)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("no_colon_here", r"is not a function reference: write package.module:name"),
        (
            "deskside_absent_xyz:find",
            r"cannot import deskside_absent_xyz: No module",
        ),
        ("{module}:missing", r"{module} has no attribute missing"),
        ("{module}:NOT_CALLABLE", r"{module}:NOT_CALLABLE is not callable \(it is a int\)"),
        ("{module}:find", r"cannot be called as {module}:find\(lookup, colour=…\)"),
    ],
)
def test_bad_references_are_config_errors(hook: HookWriter, reference: str, message: str) -> None:
    module = hook(
        """
        NOT_CALLABLE = 3

        def find(lookup, *, region="eu"):
            return None
        """
    )
    table = {"kind": "python", "function": reference.format(module=module)}
    table["options"] = {"colour": "red"}
    with pytest.raises(ValidationError, match=message.format(module=module)):
        PythonSourceConfig.model_validate(table)


def test_a_module_that_fails_to_import_is_a_config_error(hook: HookWriter) -> None:
    module = hook("raise RuntimeError('no database configured')\n")
    with pytest.raises(ValidationError, match=f"cannot import {module}: it raised RuntimeError"):
        PythonSourceConfig.model_validate({"kind": "python", "function": f"{module}:find"})


def test_config_error_names_the_line_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "deskside.toml"
    path.write_text(
        '[sources.crm]\nkind = "python"\nfunction = "deskside_nowhere_xyz:find"\n',
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    (problem,) = raised.value.problems
    assert problem.startswith(f"{path}:3: sources.crm.function: cannot import deskside_nowhere_xyz")


CONTRACT_HOOK = """
import asyncio


def found(lookup):
    return {"plan": "Pro"} if "ada@example.com" in lookup.emails else None


def fails(lookup):
    raise RuntimeError(f"no account for {lookup.email}")


async def hangs(lookup):
    await asyncio.Event().wait()
"""


@asynccontextmanager
async def contract_case(tmp_path: Path, silent: SilentServer) -> AsyncIterator[ContractCase]:
    """For ``test_source_contract``: a hook that finds one customer; one that raises (its
    message holds the address); an async one that never returns."""
    module = f"deskside_contract_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{module}.py").write_text(CONTRACT_HOOK, encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        yield ContractCase(
            answering={"kind": "python", "function": f"{module}:found"},
            known="ada@example.com",
            failing={"kind": "python", "function": f"{module}:fails"},
            hanging={"kind": "python", "function": f"{module}:hangs"},
        )
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(module, None)
