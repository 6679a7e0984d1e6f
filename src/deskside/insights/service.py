"""Insights inside the server: each workspace's store, webhook inbox, worker and analysis,
started and stopped with the app, and ``POST /webhooks/helpscout[/<workspace>]``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from deskside.errors import BadRequest, ConfigError, NotFound, ServiceUnavailable
from deskside.http import read_body
from deskside.insights import HELPSCOUT_WEBHOOK_PATH
from deskside.insights.analysis.engine import ANALYSIS_LEASE, Analysis
from deskside.insights.helpscout.client import HelpScoutAPI
from deskside.insights.helpscout.connection import HelpScoutError, webhook_secrets
from deskside.insights.helpscout.inbox import Inbox
from deskside.insights.ingest.backfill import import_conversations
from deskside.insights.ingest.worker import Worker, unprocessable
from deskside.insights.settings import InsightsSettings
from deskside.insights.store import Store, database_url, describe_error, release_lease
from deskside.signing import Scheme, verify

__all__ = [
    "HELPSCOUT_WEBHOOK_PATH",
    "ImportState",
    "InsightsService",
    "WorkspaceService",
    "live_workspace",
]

log = logging.getLogger("deskside.insights")

_SECRETS_REUSE_SECONDS = 30.0
_ANALYSIS_SECONDS = 5.0
_WORKSPACES_SECONDS = 5.0
_STOP_SECONDS = 30
_CHECK_IN_THREAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class ImportState:
    """The import this process started last (its progress is in the store's cursors)."""

    running: bool
    since: datetime | None = None
    problem: str | None = None
    """Why it stopped early, safe to show; None while it runs or when it finished."""
    already_done: bool = False
    """It fetched nothing: the same pass had finished before (``again`` repeats it)."""


class WorkspaceService:
    """Owns one workspace's store for the server's lifetime.

    The store opens in the background (retrying while the database is down), so the sidebar
    never waits for it; until it is open, webhooks get 503 and Help Scout retries them later.
    Every server process works through the webhook inbox; one at a time keeps the analysis
    current (``analysing``), and takes over within 30 s when that one stops.
    """

    def __init__(self, settings: InsightsSettings, store: Store) -> None:
        self.name = store.workspace
        self.settings = settings
        self.store = store
        self.analysis = Analysis(self.store, settings)
        self.inbox = Inbox(self.store)
        self.worker = Worker(
            self.store, attempts=settings.worker_attempts, under_pressure=self.inbox.busy
        )
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._import: asyncio.Task[None] | None = None
        self._holder = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"
        self.last_import = ImportState(running=False)
        self._secrets: tuple[float, list[str]] = (-_SECRETS_REUSE_SECONDS, [])

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def analysing(self) -> bool:
        """Whether this process holds the analysis lease: from the moment it takes it, not
        only once its first pass is done."""
        return self.analysis.leading

    async def start(self, *, wait_seconds: float = 5.0) -> None:
        """Open the store (waiting up to ``wait_seconds`` for it) and start the worker; a
        database that is not there yet is retried in the background. Again after
        :meth:`aclose` too (a test client may run the app's lifespan more than once)."""
        self._stopping.clear()
        self._task = asyncio.create_task(self._open_then_work(), name="deskside-insights")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), wait_seconds)

    async def aclose(self) -> None:
        """Stop the worker and the analysis after the work in hand (a transaction cut off
        halfway would hold its connection, and on SQLite the write lock), then close."""
        self._stopping.set()
        self.worker.stop()
        if self._import is not None:  # stops after the page in hand; it resumes next time
            self._import.cancel()
            await asyncio.gather(self._import, return_exceptions=True)
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), _STOP_SECONDS)
            except TimeoutError:
                log.warning("insights work did not stop within %d s; cancelled", _STOP_SECONDS)
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.analysing:  # for another process to take over at once
            with contextlib.suppress(Exception):
                await release_lease(self.store, ANALYSIS_LEASE, self._holder)
            self.analysis.leading = False
        await self.inbox.aclose()
        await self.store.aclose()

    async def _open_then_work(self) -> None:
        failures = 0
        while not self.ready:
            if self._stopping.is_set():
                return
            try:
                await self.store.open()
            except Exception as exc:
                failures += 1
                log.warning("insights database not available (retrying): %s", describe_error(exc))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), min(0.5 * 2**failures, 30))
            else:
                self._ready.set()
        if self.settings.worker:
            await asyncio.gather(self._analyse_forever(), self.worker.run())
        else:
            await self._analyse_forever()

    async def _analyse_forever(self) -> None:
        """Classify what is new and regroup the topics every few seconds, unless another
        process does."""
        while not self._stopping.is_set():
            try:
                await self.analysis.update_unless_elsewhere(self._holder)
            except Exception:
                log.exception("insights analysis failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _ANALYSIS_SECONDS)

    def start_import(self, since: datetime, *, again: bool = False) -> bool:
        """Import the selected mailboxes' conversations changed since ``since`` in the
        background, as ``deskside import`` does (resuming an unfinished pass); False, and
        nothing started, while this process runs one or the store is not open."""
        if not self.ready or self.last_import.running:
            return False
        self.last_import = ImportState(running=True, since=since)
        self._import = asyncio.create_task(self._run_import(since, again), name="deskside-import")
        return True

    async def _run_import(self, since: datetime, again: bool) -> None:
        problem, already_done = None, False
        try:
            async with HelpScoutAPI(self.settings, self.store) as api:
                result = await import_conversations(self.store, api, since, again=again)
            already_done = result.already_done
        except HelpScoutError as exc:
            problem = str(exc)
        except ConfigError as exc:
            problem = "; ".join(exc.problems)
        except Exception:
            log.exception("the import failed")
            problem = "the import failed: see the server log"
        finally:
            self.last_import = ImportState(False, since, problem, already_done)
        if problem:
            log.warning("import stopped: %s", problem)

    async def trends(self) -> dict[int, str]:
        """The trending topics' notes by topic id."""
        return await self.analysis.trends()

    async def receive_helpscout(self, request: Request) -> JSONResponse:
        """Verify, store, acknowledge. A bad signature is refused (401) and not stored; an
        answer of 2xx means the delivery is on disk. Never 410: it disables the webhook.

        A signed delivery that can never be applied (not a JSON object, nested too deep, an id
        Help Scout never gives) is stored parked with the reason and acknowledged: refused, it
        would be retried, and repeated failures deactivate the webhook."""
        body = await read_body(request, self.settings.helpscout.webhook_max_bytes)
        secrets = await self._webhook_secrets()
        verify(Scheme.SHA1_BASE64, secrets, body, request.headers.get("x-helpscout-signature"))
        event = (request.headers.get("x-helpscout-event") or "").strip()
        if not event or len(event) > 80 or not event.isascii():
            raise BadRequest("the X-HelpScout-Event header is missing or malformed")
        if event == "helpscout.test":
            return JSONResponse({"status": "ok"})
        if not self.ready:
            raise ServiceUnavailable("the insights database is not available yet; retry later")
        if len(body) > _CHECK_IN_THREAD_BYTES:  # reading a large body would hold up the others
            problem = await asyncio.to_thread(unprocessable, event, body)
        else:
            problem = unprocessable(event, body)
        try:
            await self.inbox.accept(event, body, problem=problem)
        except Exception as exc:
            raise ServiceUnavailable("could not store the event; retry later") from exc
        if problem is not None:
            log.warning("Help Scout %s delivery parked: %s", event, problem)
            return JSONResponse({"status": "parked"})
        self.worker.wake()
        return JSONResponse({"status": "stored"})

    async def _webhook_secrets(self) -> list[str]:
        """The configured secrets plus the one ``deskside connect`` registered (decrypted),
        re-read every 30 s; none at all refuses every delivery."""
        read_at, secrets = self._secrets
        if time.monotonic() - read_at < _SECRETS_REUSE_SECONDS:
            return secrets
        secrets = [s.get_secret_value() for s in self.settings.helpscout.webhook_secret]
        if self.ready:
            try:
                async with self.store.read() as session:
                    secrets = await webhook_secrets(session, self.settings)
            except (ConfigError, SQLAlchemyError, OSError) as exc:
                log.warning("cannot read the registered webhook secret: %s", exc)
        if not secrets:
            log.warning("no Help Scout webhook secret: set [insights.helpscout] webhook_secret")
        self._secrets = (time.monotonic(), secrets)
        return secrets


class InsightsService:
    """The workspaces of the server: the default one (whose database lists the others and
    holds the people) and every other, each a :class:`WorkspaceService` started with the app.
    A workspace added or removed by ``deskside workspaces`` while the server runs is taken up
    or let go within seconds (at once when a request names it)."""

    def __init__(self, settings: InsightsSettings) -> None:
        from deskside.insights.workspaces import Workspaces

        self.settings = settings
        store = Store(database_url(None, settings))
        self.default = WorkspaceService(settings.of_workspace(store.workspace), store)
        self.workspaces = Workspaces(self.default.store)
        self._others: dict[str, WorkspaceService] = {}
        self._watch: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # The default workspace's parts, for what is not about one workspace (people, readiness)
    @property
    def store(self) -> Store:
        return self.default.store

    @property
    def analysis(self) -> Analysis:
        return self.default.analysis

    @property
    def ready(self) -> bool:
        return self.default.ready

    @property
    def analysing(self) -> bool:
        return self.default.analysing

    async def trends(self) -> dict[int, str]:
        return await self.default.trends()

    async def start(self, *, wait_seconds: float = 5.0) -> None:
        """Start the default workspace (see :meth:`WorkspaceService.start`), then the others
        once its database, which lists them, is open."""
        self._stopping.clear()
        await self.default.start(wait_seconds=wait_seconds)
        self._watch = asyncio.create_task(self._follow_workspaces(), name="deskside-workspaces")

    async def aclose(self) -> None:
        self._stopping.set()
        if self._watch is not None:
            self._watch.cancel()
            await asyncio.gather(self._watch, return_exceptions=True)
        others, self._others = list(self._others.values()), {}
        await asyncio.gather(*(other.aclose() for other in others), self.default.aclose())

    async def workspace(self, name: str) -> WorkspaceService:
        """The running service of workspace ``name``, started now if it was added since the
        last look; :class:`~deskside.insights.workspaces.UnknownWorkspace` otherwise (also
        while the default workspace's database is not open: nothing can be known)."""
        from deskside.insights.workspaces import UnknownWorkspace

        if name == self.default.name:
            return self.default
        if (running := self._others.get(name)) is not None:
            return running
        if not self.ready or not await self.workspaces.exists(name):
            raise UnknownWorkspace(name)
        return await self._start(name)

    async def _start(self, name: str) -> WorkspaceService:
        if (running := self._others.get(name)) is not None:  # started meanwhile
            return running
        store = self.workspaces.store(name, pool_size=2)
        settings = self.settings.of_workspace(name)
        started = self._others[name] = WorkspaceService(settings, store)
        await started.start()
        return started

    async def _follow_workspaces(self) -> None:
        """Start the workspaces added and stop those removed, every few seconds."""
        while not self._stopping.is_set():
            if self.ready:
                try:
                    names = set(await self.workspaces.names()) - {self.default.name}
                    for name in sorted(names - self._others.keys()):
                        await self._start(name)
                    for name in sorted(self._others.keys() - names):
                        await self._others.pop(name).aclose()
                except Exception as exc:
                    log.warning("cannot read the workspaces (retrying): %s", describe_error(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _WORKSPACES_SECONDS)

    async def receive_helpscout(self, request: Request, workspace: str | None = None) -> Response:
        """A Help Scout webhook for ``workspace`` (the default one without): 404 for a
        workspace that does not exist, else :meth:`WorkspaceService.receive_helpscout`."""
        from deskside.insights.workspaces import UnknownWorkspace

        try:
            target = await self.workspace(workspace or self.default.name)
        except UnknownWorkspace as exc:
            if not self.ready:
                raise ServiceUnavailable("the insights database is not available yet") from exc
            raise NotFound("no such workspace") from None
        return await target.receive_helpscout(request)


async def live_workspace(
    insights: InsightsService, name: str
) -> WorkspaceService | tuple[int, str]:
    """Workspace ``name``'s service when its database is open, else the status and the
    sentence that say why not (404: no such workspace; 503: not open yet)."""
    from deskside.insights.workspaces import UnknownWorkspace

    if not insights.ready:
        return 503, "The insights database is not available yet; reload in a moment."
    try:
        found = await insights.workspace(name)
    except UnknownWorkspace:
        return 404, f"There is no workspace {name!r} (any more)."
    if not found.ready:
        return 503, f"The workspace {name!r} is not available yet; reload in a moment."
    return found
