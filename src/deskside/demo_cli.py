"""``deskside demo``: every helpdesk served on the demo customer database, with a signed
request for each printed as a ``curl`` command, and the web UI.

Add it to an app with :func:`register`. Like the other commands it imports the server, the
protocols and the demo data only when it runs.
"""

from __future__ import annotations

import logging.config
import os
import secrets
import shlex
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from deskside import logs
from deskside.console import fail, report_config_error
from deskside.errors import ConfigError

if TYPE_CHECKING:
    from deskside.protocols import RawRequest

__all__ = ["curl_command", "invoked_as", "register"]

ADMIN_PASSWORD_ENV = "DESKSIDE_ADMIN_PASSWORD"  # noqa: S105 - the variable, not a password


def demo(
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
    public_url: Annotated[
        str | None,
        typer.Option(help="The address the demo is reached at (e.g. a tunnel's), if not this."),
    ] = None,
    log_format: Annotated[
        Literal["json", "text"],
        typer.Option(envvar=logs.FORMAT_ENV, help="json (one object a line) or text."),
    ] = "text",
) -> None:
    """Serve every helpdesk on a demo customer database, printing signed example requests,
    and the web UI at /ui/ (admin password: $DESKSIDE_ADMIN_PASSWORD, generated when unset)."""
    import uvicorn
    from pydantic import SecretStr

    from deskside import demo as data
    from deskside.config import load_settings
    from deskside.helpdesks import in_list_order
    from deskside.insights import HELPSCOUT_WEBHOOK_PATH
    from deskside.protocols import RawRequest
    from deskside.proxy import normalise_public_url
    from deskside.server import create_app
    from deskside.signing import Scheme, sign

    password = os.environ.get(ADMIN_PASSWORD_ENV) or secrets.token_urlsafe(18)
    if len(password) < 8:
        fail(f"${ADMIN_PASSWORD_ENV} is shorter than 8 characters")
    if public_url is not None:
        try:
            public_url = normalise_public_url(public_url)
        except ValueError as exc:
            fail(f"--public-url {public_url}: {exc}")
    busy = _why_unusable(host, port)
    if busy is not None:  # before the database is made again under a running demo
        fail(f"cannot serve on {host}:{port}: {busy}; is a demo running? Use another --port")
    database, demo_secrets = data.prepare_demo()
    try:
        settings = load_settings(
            data.demo_config_path(),
            extra_sources=data.demo_extra_sources(),
            extra_helpdesks=data.demo_helpdesks(),
        )
    except ConfigError as exc:
        report_config_error(exc)
    server = {"host": host, "port": port, "public_url": public_url}
    settings = settings.model_copy(
        update={
            "server": settings.server.model_copy(update=server),
            "admin": settings.admin.model_copy(update={"password": SecretStr(password)}),
        }
    )
    application = create_app(settings)
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
    base = public_url or f"http://{shown_host}:{port}"
    command = invoked_as()
    print(f"deskside demo: customer database {database}")
    if "billing" in settings.sources:
        print("Stripe: the billing source uses $STRIPE_API_KEY")
    print()
    for protocol in in_list_order(application.state.service.protocols):
        secret = demo_secrets[protocol.kind]
        request = protocol.example_request(secret.value, [protocol.demo_email])
        print(f"# {protocol.title}: secret {secret.value} ({secret.origin})")
        print(curl_command(base + protocol.path, request) + "\n")
        for extra in protocol.demo_requests(base):
            origin = f" ({demo_secrets[extra.demo_key].origin})" if extra.demo_key else ""
            print(f"# {extra.title}{origin}:")
            print(curl_command(base + extra.path, extra.request) + "\n")
    webhook_secret = demo_secrets["helpscout_webhook"]
    webhook = data.example_webhook()
    delivery = RawRequest(
        method="POST",
        body=webhook,
        query=b"",
        headers={
            "content-type": "application/json",
            "x-helpscout-event": "convo.created",
            "x-helpscout-signature": sign(Scheme.SHA1_BASE64, webhook_secret.value, webhook),
        },
    )
    print(
        f"# Help Scout webhook: secret {webhook_secret.value} ({webhook_secret.origin}); "
        f"then: {command} conversations"
    )
    print(curl_command(base + HELPSCOUT_WEBHOOK_PATH, delivery) + "\n")
    print("Other demo customers: pat@initech.example (two companies), mallory@evil.example")
    print("(injection payloads, shown escaped), nobody@example.com (not found).")
    print(f"Preview without a helpdesk: {command} preview owner@acme.example --demo\n")
    if os.environ.get(ADMIN_PASSWORD_ENV):
        shown = f"from ${ADMIN_PASSWORD_ENV}"
    else:
        shown = f"{password}, random; set ${ADMIN_PASSWORD_ENV} to keep it"
    print(f"Web UI: {base}/ui/ (admin password: {shown})\n")
    sys.stdout.flush()
    log_config = logs.logging_config(log_format, "info")
    logging.config.dictConfig(log_config)
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_config=log_config,
        log_level=None,
        access_log=False,  # it logs query strings; the app logs its own access lines
        proxy_headers=False,  # [server] trusted_proxies decides, in the app
    )


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command(name="demo")(demo)


def curl_command(url: str, request: RawRequest) -> str:
    """A shell command sending ``request`` to ``url`` exactly as the helpdesk would."""
    parts = ["curl", "-sS", "-X", request.method]
    parts.append(f"{url}?{request.query.decode()}" if request.query else url)
    for name, value in request.headers.items():
        parts += ["-H", f"{name}: {value}"]
    if request.body:
        parts += ["--data-binary", request.body.decode()]
    return " ".join(shlex.quote(part) for part in parts)


def invoked_as() -> str:
    """How to run deskside again as this process was started: ``deskside`` when the program
    on ``PATH`` is the one running, else the path it was started by (``.venv/bin/deskside``),
    or ``python -m deskside`` with this interpreter."""
    program = sys.argv[0]
    name = Path(program).name
    if name == "__main__.py":
        return f"{shlex.quote(sys.executable)} -m deskside"
    if not name.startswith("deskside"):  # run some other way (a test, an embedding program)
        return "deskside"
    found = shutil.which(name)
    try:
        on_path = found is not None and os.path.samefile(found, program)
    except OSError:  # the program's path no longer leads to it
        on_path = False
    return name if on_path else shlex.quote(program)


def _why_unusable(host: str, port: int) -> str | None:
    """Why the server could not listen on ``host:port`` (taken, or no address of this
    machine), or None when it can, tried by binding it as uvicorn will."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or type(exc).__name__
    return None
