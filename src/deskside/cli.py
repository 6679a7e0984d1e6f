"""The ``deskside`` command: serve, demo, check, preview, sign.

Only light modules are imported at the top: each command imports what it needs (the config,
the protocols, the server) when it runs. So ``deskside --help`` and ``deskside sign`` start
at once, and so does every worker of ``deskside serve --workers N``, which imports this
module again before it starts serving.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.config
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.markup import escape

from deskside import __version__, demo_cli, logs, signing
from deskside.console import (
    CONFIG_ENV,
    CommandGroup,
    ConfigOption,
    err,
    fail,
    out,
    report_config_error,
)
from deskside.errors import ConfigError
from deskside.helpdesks import kinds
from deskside.insights import cli as insights_cli
from deskside.insights import people_cli, workspaces_cli
from deskside.insights.analysis import cli as classify_cli
from deskside.insights.analysis import models_cli
from deskside.insights.helpscout import cli as helpscout_cli
from deskside.insights.privacy import cli as erasure_cli
from deskside.insights.reports import cli as reports_cli
from deskside.lookup import Lookup, normalise_emails
from deskside.metrics import MULTIPROC_ENV

if TYPE_CHECKING:
    from deskside.config import Settings
    from deskside.protocols import Protocol
    from deskside.resolve import Profile
    from deskside.service import Answer, SidebarService

__all__ = ["app", "main"]

app = typer.Typer(
    name="deskside",
    help="The customer-context endpoint for helpdesk sidebars.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=CommandGroup,
)
_KINDS = kinds()  # kind → how it signs, without loading the protocols
WORKER_HEALTHCHECK_SECONDS = 30
"""How long ``serve --workers N`` waits for a worker to answer its supervisor's ping."""
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormatOption = Annotated[
    Literal["json", "text"],
    typer.Option(envvar=logs.FORMAT_ENV, help="json (one object a line) or text."),
]
LogLevelOption = Annotated[LogLevel, typer.Option(envvar=logs.LEVEL_ENV, help="The least level.")]


def main() -> None:
    """Console-script entry point."""
    app()


@app.callback(invoke_without_command=True)
def _version(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        out.print(__version__)
        raise typer.Exit()


@app.command()
def serve(
    config: ConfigOption = Path("deskside.toml"),
    host: Annotated[str | None, typer.Option(help="Default: \\[server] host.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: \\[server] port.")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    log_level: LogLevelOption = "info",
    log_format: LogFormatOption = "json",
) -> None:
    """Serve every configured helpdesk. Refuses to start on a config with mistakes.

    On SIGTERM or Ctrl-C, requests in flight get up to 10 s to finish.
    """
    import uvicorn

    settings = _load(config)
    os.environ[CONFIG_ENV] = str(config.resolve())
    log_config = logs.logging_config(log_format, log_level)
    logging.config.dictConfig(log_config)
    with _worker_metrics(workers):
        uvicorn.run(
            "deskside.server:create_app_from_env",
            factory=True,
            host=host or settings.server.host,
            port=port or settings.server.port,
            workers=workers,
            log_config=log_config,  # applied again in every worker process
            log_level=None,
            access_log=False,  # it logs query strings; the app logs its own access lines
            timeout_graceful_shutdown=10,
            proxy_headers=False,  # [server] trusted_proxies decides, in the app
            # A worker is replaced when it has not answered the supervisor's ping for this
            # long; uvicorn's default (5 s) kills healthy workers starting on a busy host.
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_SECONDS,
        )


@contextmanager
def _worker_metrics(workers: int) -> Iterator[None]:
    """With several workers, a fresh ``$PROMETHEUS_MULTIPROC_DIR`` for the server's lifetime,
    so that ``/metrics`` adds up every worker. Set before the workers start (and so before they
    import prometheus_client); removed when the server stops. One you set yourself is used
    as it is and left in place."""
    if workers == 1 or os.environ.get(MULTIPROC_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="deskside-metrics-") as directory:
        os.environ[MULTIPROC_ENV] = directory
        logging.getLogger("deskside.cli").info(
            "metrics of the %d workers are added up in %s", workers, directory
        )
        try:
            yield
        finally:
            del os.environ[MULTIPROC_ENV]


@app.command()
def check(
    config: ConfigOption = Path("deskside.toml"),
    email: Annotated[
        str | None, typer.Option(help="Also look this customer up through every source.")
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds each source's check may take.")
    ] = 5.0,
) -> None:
    """Validate the config, check every source (SQL: run its query) and, with --email, look up.

    Exit status 0: all good; 1: a source or the lookup failed; 2: the config has mistakes
    (a query the database refuses is one).
    """
    from deskside import checks

    settings = _load(config)
    lookup = _lookup(email, settings) if email else None
    raise typer.Exit(asyncio.run(checks.run(settings, config, lookup, timeout)))


@app.command()
def preview(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The customer's address.")],
    config: ConfigOption = Path("deskside.toml"),
    desk: Annotated[
        str, typer.Option(help=f"A helpdesk name or kind ({', '.join(_KINDS)}), or all.")
    ] = "all",
    raw: Annotated[
        bool, typer.Option("--raw", help="Print exactly the JSON each helpdesk gets.")
    ] = False,
    use_demo: Annotated[
        bool, typer.Option("--demo", help="Use the demo database and config.")
    ] = False,
) -> None:
    """Show what each helpdesk would receive for EMAIL, without a helpdesk."""
    extra_sources = extra_helpdesks = None
    if use_demo:
        from deskside import demo

        demo.prepare_demo()
        config, extra_sources = demo.demo_config_path(), demo.demo_extra_sources()
        extra_helpdesks = demo.demo_helpdesks()
    settings = _load(config, extra_sources=extra_sources, extra_helpdesks=extra_helpdesks)
    answer, protocols = asyncio.run(_preview(settings, email, desk))
    bodies = {
        protocol.name: protocol.respond(answer.sidebar, answer.profile) for protocol in protocols
    }
    if raw:
        document: Any = next(iter(bodies.values())) if len(bodies) == 1 else bodies
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
        return
    from deskside.checks import print_answer

    print_answer(answer)
    for protocol in protocols:
        out.rule(f"{protocol.title} · {protocol.method} {protocol.path}")
        body = bodies[protocol.name]
        if isinstance(body, dict) and set(body) == {"html"}:
            out.print(body["html"], markup=False)
        else:
            out.print_json(json.dumps(body, default=str))


async def _preview(settings: Settings, email: str, desk: str) -> tuple[Answer, list[Protocol]]:
    from deskside.service import SidebarService

    service = SidebarService(settings)
    try:
        protocols = _choose_desks(service, desk)
        return await service.answer(_lookup(email, settings)), protocols
    finally:
        await service.aclose()


@asynccontextmanager
async def sidebar_answer(
    settings: Settings,
) -> AsyncIterator[Callable[[Lookup], Awaitable[Profile]]]:
    """The sidebar's answer function for ``settings`` (its sources, cache and deadline), for
    the insights commands that look customers up; closed afterwards."""
    from deskside.service import SidebarService

    service = SidebarService(settings)
    try:
        yield service.resolver.resolve
    finally:
        await service.aclose()


def _choose_desks(service: SidebarService, desk: str) -> list[Protocol]:
    configured = service.protocols
    if desk == "all":
        chosen = list(configured)
        kinds = {protocol.kind for protocol in configured}
        chosen += [_unconfigured(kind) for kind in _KINDS if kind not in kinds]
        return chosen
    matching = [p for p in configured if desk in (p.name, p.kind)]
    if matching:
        return matching
    if desk in _KINDS:
        return [_unconfigured(desk)]
    fail(f"--desk {desk}: no such helpdesk; use all, {', '.join(_KINDS)} or a configured name")


def _unconfigured(kind: str) -> Protocol:
    """A protocol of ``kind`` for rendering only: it has no secret and serves nothing."""
    from deskside.helpdesks import protocol_class

    protocol = protocol_class(kind)
    return protocol(kind, protocol.config_model.model_construct(kind=kind, path="", secret=[]))


@app.command()
def sign(
    desk: Annotated[str, typer.Option(help=f"The helpdesk kind: {', '.join(_KINDS)}.")],
    secret: Annotated[str, typer.Option(envvar="DESKSIDE_SIGN_SECRET", help="The shared secret.")],
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE", help="The body to sign (for helper: the query string); - for stdin."
        ),
    ] = "-",
) -> None:
    """Print the signature header value for a request, to test an endpoint with curl."""
    protocol = _KINDS.get(desk)
    if protocol is None:
        fail(f"--desk {desk}: use one of {', '.join(_KINDS)}")
    if protocol.scheme is None:
        fail(f"--desk {desk} signs nothing: it sends the secret itself, as Bearer <secret>")
    body = sys.stdin.buffer.read() if file == "-" else _read_bytes(Path(file))
    signature = signing.sign(protocol.scheme, secret, body)
    if protocol.signature_header == "authorization":
        signature = f"Bearer {signature}"
    err.print(f"{protocol.signature_header}:", style="dim")
    sys.stdout.write(signature + "\n")


@app.command(name="probe")
def probe_command(
    url: Annotated[
        str,
        typer.Argument(metavar="URL", help="The endpoint, e.g. https://deskside.example/plain."),
    ],
    desk: Annotated[str, typer.Option(help=f"Act as this helpdesk: {', '.join(_KINDS)}.")],
    secret: Annotated[str, typer.Option(envvar="DESKSIDE_PROBE_SECRET", help="The shared secret.")],
    email: Annotated[str, typer.Option(help="The customer to ask about.")] = "test@example.com",
    bad_signature: Annotated[
        bool, typer.Option("--bad-signature", help="Sign wrongly; pass only if refused.")
    ] = False,
    card_key: Annotated[
        list[str] | None, typer.Option(help="Plain card keys to request (repeatable).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds to wait; default: the helpdesk's own limit.")
    ] = None,
) -> None:
    """Call URL exactly as DESK would, check the answer against its protocol, print a verdict."""
    from deskside.probe import probe as run_probe

    if desk not in _KINDS:
        fail(f"--desk {desk}: use one of {', '.join(_KINDS)}")
    report = asyncio.run(
        run_probe(
            url,
            desk,
            secret,
            email=email,
            bad_signature=bad_signature,
            timeout_seconds=timeout,
            card_keys=card_key,
        )
    )
    out.print(f"[bold]{report.title}[/] → {escape(report.request_line)}", markup=True)
    for finding in report.findings:
        mark = "[green]✓[/]" if finding.ok else "[red]✗[/]"
        out.print(f"  {mark} ", end="", markup=True)
        out.print(finding.message, markup=False)
    if bad_signature:
        verdict = "forged requests are refused" if report.ok else "forged requests get through"
    else:
        verdict = f"{report.title} {'would' if report.ok else 'would not'} show this answer"
    out.print(f"{'[green]PASS[/]' if report.ok else '[red]FAIL[/]'}: {verdict}", markup=True)
    raise typer.Exit(0 if report.ok else 1)


cache_app = typer.Typer(help="The cache of source answers.", no_args_is_help=True, cls=CommandGroup)
app.add_typer(cache_app, name="cache")


@cache_app.command("clear")
def cache_clear(
    email: Annotated[
        str, typer.Argument(metavar="EMAIL", help="The customer whose cached answers to drop.")
    ],
    config: ConfigOption = Path("deskside.toml"),
    url: Annotated[
        str | None,
        typer.Option(help="A running server's base URL: clear through its admin endpoint."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="DESKSIDE_ADMIN_TOKEN", help="Admin token (default: the config's)."),
    ] = None,
) -> None:
    """Forget every cached answer about EMAIL, e.g. after a plan change.

    With a Redis cache this clears it for every worker and replica directly; the in-process
    cache lives inside the server, so it is cleared through --url (its admin endpoint).
    """
    import httpx

    emails = normalise_emails([email], fold_plus=False)
    if not emails:
        fail(f"{email!r} is not an email address")
    settings = _load(config)
    if url is not None:
        tokens = [t.get_secret_value() for t in settings.admin.token]
        secret = token or (tokens[0] if tokens else None)
        if secret is None:
            fail("no admin token: set [admin] token in the config, or pass --token")
        try:
            response = httpx.post(
                f"{url.rstrip('/')}/admin/cache/clear",
                json={"email": emails[0]},
                headers={"authorization": f"Bearer {secret}"},
                timeout=10,
            )
        except httpx.HTTPError as exc:
            fail(f"cannot reach {url}: {type(exc).__name__}")
        if response.status_code != 200:
            fail(f"{url} answered {response.status_code}: {response.text[:200]}")
        dropped = int(response.json()["dropped"])
    else:
        cache_url = settings.cache.get_secret_value()
        if cache_url == "memory":
            fail(
                "this config caches inside the server's processes: clear it with "
                "--url https://your-deskside (its admin endpoint; needs [admin] token)"
            )
        dropped = asyncio.run(_forget(cache_url, emails[0]))
    out.print(f"[green]✓[/] dropped {dropped} cached answer(s) about {escape(emails[0])}")


async def _forget(cache_url: str, email: str) -> int:
    from deskside.cache import build_cache

    cache = build_cache(cache_url)
    try:
        if not await cache.reachable():
            fail("the Redis cache is not reachable")
        return await cache.forget(email)
    finally:
        await cache.aclose()


demo_cli.register(app)
insights_cli.register(app)
helpscout_cli.register(app)
classify_cli.register(app)
models_cli.register(app)
reports_cli.register(app, sidebar_answer)
erasure_cli.register(app)
people_cli.register(app)
workspaces_cli.register(app)


def _lookup(email: str, settings: Settings) -> Lookup:
    emails = normalise_emails(email.split(","), fold_plus=settings.lookup.fold_plus_addressing)
    if not emails:
        fail(f"{email!r} is not an email address")
    return Lookup(emails=emails, context={"desk": "cli"})


def _load(
    path: Path,
    *,
    extra_sources: dict[str, Any] | None = None,
    extra_helpdesks: dict[str, Any] | None = None,
) -> Settings:
    from deskside.config import load_settings

    try:
        return load_settings(path, extra_sources=extra_sources, extra_helpdesks=extra_helpdesks)
    except ConfigError as exc:
        report_config_error(exc)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
