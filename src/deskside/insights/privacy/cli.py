"""``deskside forget`` (erase people on request) and ``deskside erasures`` (the audit of
erasures and purges). Add them with :func:`register`.

The store, the cache and the erasure are imported when a command runs, not with the CLI (see
:mod:`deskside.insights.cli`). Addresses are shown only to whoever typed them: they are never
logged, and the audit holds none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from deskside.console import ConfigOption, err, fail, out
from deskside.errors import ConfigError
from deskside.insights import DEFAULT_WORKSPACE
from deskside.insights.cli import (
    DatabaseOption,
    EveryWorkspaceOption,
    WorkspaceOption,
    insights_context,
    run_with_store,
    workspace_stores,
)
from deskside.lookup import normalise_emails

if TYPE_CHECKING:
    from deskside.cache import Cache
    from deskside.insights.models import ErasureAudit
    from deskside.insights.privacy.erasure import Removed
    from deskside.insights.store import Store

__all__ = ["REMOVED_NAMES", "erasures", "forget", "register"]

_DEFAULT_CONFIG = Path("deskside.toml")

REMOVED_NAMES = {
    "conversations": "conversations",
    "threads": "messages (threads)",
    "classifications": "labels",
    "topic_members": "topic memberships",
    "labelled_examples": "agents' corrections",
    "customers": "customers",
    "events": "webhook deliveries",
    "redacted": "other texts quoting the address (now [erased])",
    "topics_renamed": "topics named after their conversation (renamed)",
    "exports_to_rewrite": "exported reports (rewritten on the next export)",
    "cached_answers": "cached sidebar answers",
}
"""How the commands name what :class:`~deskside.insights.privacy.erasure.Removed` counts."""


@dataclass
class _Outcome:
    removed: dict[str, Removed]
    """What was removed, by workspace."""
    cache_problem: str | None


def forget(
    emails: Annotated[
        list[str],
        typer.Argument(
            metavar="EMAIL", help="The addresses of the people to erase.", show_default=False
        ),
    ],
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: EveryWorkspaceOption = None,
) -> None:
    """Erase people for good (GDPR art. 17): their customers, conversations, messages, labels,
    topic memberships, corrections, webhook deliveries and cached sidebar answers.

    In every workspace (a request covers all the company holds), unless --workspace names one.

    Exported GitHub issues are rewritten on the next export.

    A tombstone (a keyed hash, never the address) keeps webhooks and imports out.

    deskside erasures lists when, who and how many rows; never the address.
    """
    addresses = []
    for email in emails:
        normalised = normalise_emails([email], fold_plus=False)
        if not normalised:
            fail(f"{email!r} is not an email address")
        addresses.append(normalised[0])
    _, control = insights_context(config, database)
    cache_url = _cache_url(config)

    async def work(control: Store) -> _Outcome:
        from deskside.insights.privacy.erasure import forget as erase

        removed = {}
        cache, problem = await _reachable_cache(cache_url)
        try:
            async with workspace_stores(control, workspace) as stores:
                for index, store in enumerate(stores):  # one sidebar cache: dropped once
                    dropping = cache if index == 0 else None
                    removed[store.workspace] = await erase(
                        store, addresses, by="cli", cache=dropping
                    )
        finally:
            if cache is not None:
                await cache.aclose()
        return _Outcome(removed, problem)

    outcome = run_with_store(control, work)
    who = ", ".join(addresses)
    for name, removed in outcome.removed.items():
        where = "" if list(outcome.removed) == [DEFAULT_WORKSPACE] else f" in workspace {name}"
        if removed.total:
            out.print(Text(f"✓ erased {who}{where}:", style="green"))
            out.print(_counts_table(removed))
        else:
            out.print(Text(f"✓ nothing was stored about {who}{where}", style="green"))
    out.print("Their tombstones keep webhooks and imports from storing them again.")
    if cache_url == "memory" and config.is_file():
        err.print(
            "The sidebar caches inside the server's processes: its answers about them expire "
            "on their own, or drop them now with POST /api/insights/forget on the server."
        )
    if outcome.cache_problem is not None:
        err.print(Text(f"! cached sidebar answers not dropped: {outcome.cache_problem}"))
        raise typer.Exit(1)


def _cache_url(config: Path) -> str | None:
    """The sidebar's ``cache`` of the config; None when the whole config does not load."""
    if not config.is_file():
        return "memory"
    from deskside.config import load_settings

    try:
        return load_settings(config).cache.get_secret_value()
    except ConfigError:
        return None


async def _reachable_cache(url: str | None) -> tuple[Cache | None, str | None]:
    """The Redis cache at ``url``, or why there is none to clear (None: nothing to clear)."""
    if url is None:
        return None, "the config does not load (deskside check says why)"
    if url == "memory":
        return None, None
    from deskside.cache import build_cache

    cache = build_cache(url)
    if not await cache.reachable():
        await cache.aclose()
        return None, "the Redis cache is not reachable"
    return cache, None


def _counts_table(removed: Removed) -> Table:
    table = Table("what", "rows", show_edge=False, pad_edge=False)
    for key, rows in removed.counts.items():
        table.add_row(REMOVED_NAMES.get(key, key), str(rows))
    return table


def erasures(
    config: ConfigOption = _DEFAULT_CONFIG,
    database: DatabaseOption = None,
    workspace: WorkspaceOption = DEFAULT_WORKSPACE,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON array.")] = False,
) -> None:
    """The audit of erasures and purges in a workspace: when, who (cli, api:token-…, ui:admin,
    retention), what and how many rows; never the erased data."""
    from sqlalchemy import select

    from deskside.insights.models import ErasureAudit

    _, store = insights_context(config, database, workspace)

    async def read(store: Store) -> list[ErasureAudit]:
        async with store.read() as session:
            newest = (
                select(ErasureAudit)
                .where(ErasureAudit.action.in_(("forget", "retention", "disconnect")))
                .order_by(ErasureAudit.id.desc())
                .limit(limit)
            )
            return list(await session.scalars(newest))

    found = run_with_store(store, read)
    if as_json:
        rows = [
            {
                "at": row.at.isoformat(),
                "actor": row.actor,
                "action": row.action,
                "detail": row.detail,
                "rows": row.rows,
                "counts": row.counts,
            }
            for row in found
        ]
        out.print_json(json.dumps(rows))
        return
    if not found:
        err.print("Nothing was erased or purged yet.")
        return
    table = Table("when (UTC)", "who", "what", "rows", "by kind")
    for row in found:
        kinds = ", ".join(f"{REMOVED_NAMES.get(k, k)}: {n}" for k, n in row.counts.items())
        table.add_row(
            f"{row.at:%Y-%m-%d %H:%M:%S}",
            Text(row.actor),
            Text(f"{row.action}: {row.detail}"),
            str(row.rows),
            Text(kinds),
        )
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``forget`` and ``erasures`` to ``app``."""
    app.command()(forget)
    app.command()(erasures)
