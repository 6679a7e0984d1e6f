"""``deskside check``: every source answers its check in time (an SQL source runs its query),
and, given an address, a real lookup works. The config itself was validated when loaded.

Everything printed is plain text: names, paths and messages are the user's own and are never
read as Rich markup.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table
from rich.text import Text

from deskside.config import Settings, config_location
from deskside.console import out
from deskside.errors import SourceError
from deskside.layout import LeftOut
from deskside.lookup import Lookup
from deskside.service import Answer, SidebarService
from deskside.sources.base import SourceQueryError

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "SourceCheck", "check_sources", "print_answer", "run"]

DEFAULT_TIMEOUT_SECONDS = 5.0
"""How long each source's check may take. Longer than ``[server] deadline_ms`` (2.5 s by
default): a check opens fresh connections, where a lookup mostly reuses pooled ones."""


@dataclass(frozen=True)
class SourceCheck:
    """How one source's check went."""

    name: str
    kind: str
    ok: bool
    message: str
    elapsed_ms: float
    key: str | None = None
    """The config key at fault (``query``) when the source refused what the config asks."""


async def check_sources(
    service: SidebarService, seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> list[SourceCheck]:
    """Every source's check, concurrently, each within ``seconds``."""

    async def one(name: str) -> SourceCheck:
        source = service.resolver.sources[name]
        started = time.perf_counter()
        key = None
        try:
            async with asyncio.timeout(seconds):
                await source.check()
            ok, message = True, "ok"
        except TimeoutError:
            ok, message = False, f"timed out after {seconds * 1000:.0f} ms"
        except SourceQueryError as exc:
            ok, message, key = False, str(exc), exc.key
        except SourceError as exc:
            ok, message = False, str(exc) or type(exc).__name__
        except Exception as exc:
            ok, message = False, f"the check raised {type(exc).__name__}: {exc}"
        elapsed_ms = (time.perf_counter() - started) * 1000
        return SourceCheck(name, source.kind, ok, message, elapsed_ms, key)

    return list(await asyncio.gather(*(one(name) for name in service.resolver.sources)))


async def run(
    settings: Settings,
    config: Path,
    lookup: Lookup | None = None,
    seconds: float = DEFAULT_TIMEOUT_SECONDS,
) -> int:
    """Print the checks of the sources and helpdesks of ``settings`` (loaded from ``config``),
    and the lookup of ``lookup`` when given. The exit status: 0 all went well, 2 a source
    refused what the config asks of it (an SQL query the database rejects: a config mistake),
    1 anything else failed (a source down or silent, the lookup)."""
    out.print(Text.assemble(("✓ ", "green"), f"{config}: valid"))
    service = SidebarService(settings)
    try:
        checks = await check_sources(service, seconds)
        _print_source_checks(checks, config)
        _print_helpdesks(service)
        ok = all(check.ok for check in checks)
        if lookup is not None:
            answer = await service.answer(lookup)
            print_answer(answer)
            failed = [p for p in answer.problems if not isinstance(p, LeftOut)]  # not errors
            ok = ok and not failed and all(r.ok for r in answer.profile.results.values())
    finally:
        await service.aclose()
    if any(check.key for check in checks):
        return 2
    return 0 if ok else 1


def print_answer(answer: Answer) -> None:
    """What each source found for a lookup, and what failed while laying out the card."""
    table = Table(
        "source",
        "result",
        "time",
        "cache",
        title=Text(f"Lookup: {', '.join(answer.profile.lookup.emails)}"),
    )
    for name, result in answer.profile.results.items():
        found = (
            Text(f"{len(result.records)} record(s)")
            if result.ok
            else Text(str(result.error), style="red")
        )
        table.add_row(name, found, f"{result.elapsed_ms:.0f} ms", "hit" if result.cached else "")
    out.print(table)
    for problem in answer.problems:
        style = "dim" if isinstance(problem, LeftOut) else "yellow"
        out.print(Text.assemble(("card: ", style), str(problem)))


def _print_source_checks(checks: list[SourceCheck], config: Path) -> None:
    table = Table("source", "kind", "check", "time", title="Sources")
    for check in checks:
        status = Text("ok", style="green") if check.ok else Text("failed", style="red")
        table.add_row(check.name, check.kind, status, f"{check.elapsed_ms:.0f} ms")
    out.print(table)
    for check in checks:
        if not check.ok:
            key = ("sources", check.name, *([check.key] if check.key else []))
            out.print(
                Text.assemble(("✗ ", "red"), f"{config_location(config, key)}: {check.message}")
            )


def _print_helpdesks(service: SidebarService) -> None:
    if not service.protocols:
        out.print(Text("No [helpdesks] configured.", style="yellow"))
        return
    table = Table("helpdesk", "kind", "path", "secrets", title="Helpdesks")
    for protocol in service.protocols:
        table.add_row(protocol.name, protocol.kind, protocol.path, str(len(protocol.config.secret)))
    out.print(table)
