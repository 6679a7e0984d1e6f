"""The ASGI app: one route per configured helpdesk, plus ``/healthz``, ``/readyz`` and
``/metrics``; every request gets an id, an access line and (for helpdesks) request metrics."""

from __future__ import annotations

import copy
import gc
import logging
import os
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from cachetools import TTLCache
from fastapi import FastAPI, Request
from fastapi.datastructures import DefaultPlaceholder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from deskside import __version__, logs, metrics
from deskside.card import Sidebar
from deskside.config import Settings, load_settings
from deskside.console import CONFIG_ENV
from deskside.errors import BadRequest, HTTPError, Unauthorized
from deskside.http import optional_string, parse_json_object, read_body
from deskside.insights import HELPSCOUT_WEBHOOK_PATH
from deskside.lookup import normalise_emails
from deskside.metrics import MULTIPROC_ENV
from deskside.middleware import Endpoint, HelpdeskRoutes, Observe, arrived, route_path
from deskside.openapi import SECURITY_SCHEMES
from deskside.protocols import Decline, Protocol, RawRequest
from deskside.proxy import ForwardedHeaders
from deskside.readiness import Readiness
from deskside.service import Answer, SidebarService
from deskside.signing import bearer_token, token_matches
from deskside.web.routes import UI_PREFIX, web_routes

if TYPE_CHECKING:
    from deskside.insights.service import InsightsService

__all__ = ["MULTIPROC_ENV", "Readiness", "create_app", "create_app_from_env"]

log = logging.getLogger("deskside.server")

ANSWER_REUSE_SECONDS = 60
"""How long an answer encoded from cached data is sent again for the same cached data; it
bounds how late a condition on ``now`` (a trial that just expired) can show."""
ANSWER_REUSE_ENTRIES = 1024
"""How many encoded answers a worker keeps for reuse: what bounds the memory reuse costs
(about 3 MB), whatever the number of customers."""


def create_app(settings: Settings) -> FastAPI:
    """The app for ``settings``; sources connect lazily and close when the app stops."""
    service = SidebarService(settings)
    insights = _insights_service(settings)
    readiness = Readiness(service, insights)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        readiness.shutting_down = False
        # Start-up objects (config, templates, modules) live as long as the process: keep the
        # garbage collector from scanning them again on every full collection.
        gc.collect()
        gc.freeze()
        if insights is not None:
            await insights.start()
        try:
            yield
        finally:  # also when the app's host fails: close connections, stop background work
            readiness.shutting_down = True  # /readyz answers 503 from here on
            if insights is not None:
                await insights.aclose()
            await service.aclose()

    app = FastAPI(
        title="deskside",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,  # helpdesks follow no redirects: a JSON 404 says more
    )
    app.state.service = service

    def openapi() -> dict[str, Any]:
        """FastAPI's schema, with the signature schemes the published routes declare."""
        if app.openapi_schema is None:
            routes = _one_operation_per_method(app.routes)
            schema = get_openapi(title=app.title, version=app.version, routes=routes)
            used = {
                name
                for operations in schema.get("paths", {}).values()
                for operation in operations.values()
                for requirement in operation.get("security", [])
                for name in requirement
            }
            components = schema.setdefault("components", {})
            components["securitySchemes"] = {name: SECURITY_SCHEMES[name] for name in sorted(used)}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.state.readiness = readiness
    labels: dict[str, str] = {}
    """Path → ``helpdesk`` label of the request metrics (helpdesk routes only)."""
    refusers = {
        "/admin/cache/clear": "admin",
        "/metrics": "metrics",
        HELPSCOUT_WEBHOOK_PATH: "helpscout_webhook",
    }
    """Other paths that refuse with 401, and their label in the signature failure counter."""

    def _error_response(request: Request, exc: HTTPError) -> JSONResponse:
        """The answer to a request refused with ``exc``; a refused signature is also logged
        and counted."""
        if isinstance(exc, Unauthorized):
            path = route_path(request.scope)
            desk = labels.get(path) or refusers.get(path, "other")
            metrics.SIGNATURE_FAILURES.labels(desk, exc.code).inc()
            client = request.client.host if request.client else "-"
            log.warning(
                "%s: rejected request from %s: %s",
                desk,
                client,
                exc.reason,
                extra={"helpdesk": desk, "reason": exc.code},
            )
        return JSONResponse({"error": exc.detail}, status_code=exc.status)

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError) -> JSONResponse:
        return _error_response(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # exc.headers: e.g. a 405's Allow, which HTTP requires
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, _exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "malformed request"}, status_code=400)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers. It says nothing about the sources (see /readyz)."""
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        status, document = await readiness.report()
        return JSONResponse(document, status_code=status)

    admin_tokens = [token.get_secret_value() for token in settings.admin.token]
    registry = _metrics_registry()

    @app.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        """Prometheus text format; with ``metrics_public = false`` the admin token is needed."""
        if not settings.server.metrics_public and not token_matches(
            bearer_token(request.headers.get("authorization")), admin_tokens
        ):
            raise Unauthorized("metrics request without a valid admin token", code="token")
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    if admin_tokens:

        @app.post("/admin/cache/clear", include_in_schema=False)
        async def clear_cache(request: Request) -> dict[str, Any]:
            """Forget every cached answer about ``{"email": …}``, e.g. after a plan change."""
            if not token_matches(bearer_token(request.headers.get("authorization")), admin_tokens):
                raise Unauthorized("admin request without a valid bearer token", code="token")
            email = optional_string(parse_json_object(await read_body(request, 4096)), "email")
            emails = normalise_emails([email], fold_plus=False)
            if not emails:
                raise BadRequest("`email` must be an email address")
            return {"email": emails[0], "dropped": await service.resolver.forget(emails[0])}

    if insights is not None:
        app.state.insights = insights
        _add_insights_routes(
            app, settings, insights, api=bool(admin_tokens) or settings.admin.ui_enabled
        )

    if settings.admin.ui_enabled:  # the web UI exists only with an admin password
        app.include_router(web_routes(settings, service, insights))

        @app.get("/", include_in_schema=False)
        async def home(request: Request) -> RedirectResponse:
            """Whoever opens the server's own address finds the web UI."""
            root = request.scope.get("root_path", "")
            return RedirectResponse(f"{root}{UI_PREFIX}/", status_code=302)

    encoded: TTLCache[Hashable, Response] = TTLCache(
        maxsize=ANSWER_REUSE_ENTRIES, ttl=ANSWER_REUSE_SECONDS
    )
    helpdesk_routes: dict[tuple[str, str], Endpoint] = {}
    for protocol in service.protocols:
        labels[protocol.path] = protocol.name
        endpoint = _endpoint(protocol, service, encoded)
        for method in (protocol.method, *protocol.other_methods):
            helpdesk_routes[protocol.path, method] = endpoint
        app.add_api_route(  # published in the schema, and serves what HelpdeskRoutes does not
            protocol.path,
            endpoint,
            methods=[protocol.method, *protocol.other_methods],
            name=protocol.name,
            include_in_schema=protocol.openapi is not None,
            **(protocol.openapi or {"summary": f"{protocol.title} sidebar"}),
        )
        for route in protocol.extra_routes(service):
            # e.g. "helper/identity": counted apart from the helpdesk's own requests
            labels.setdefault(route.path, protocol.name + route.path.removeprefix(protocol.path))
            app.add_api_route(
                route.path,
                route.endpoint,
                methods=[route.method],
                include_in_schema=route.openapi is not None,
                **(route.openapi or {}),
            )
    # Innermost first. The helpdesk routes are answered without FastAPI's request handling;
    # Observe is outermost, so a request's deadline starts as soon as it reaches the app, and
    # reads the client address ForwardedHeaders rewrote (in place) for its access line.
    app.add_middleware(HelpdeskRoutes, routes=helpdesk_routes, refused=_error_response)
    if settings.server.trusted_proxies:
        app.add_middleware(ForwardedHeaders, trusted=settings.server.trusted_proxies)
    app.add_middleware(Observe, labels=labels)
    return app


def _insights_service(settings: Settings) -> InsightsService | None:
    """The insights service of a config with an ``[insights]`` table, else None.

    The insights modules are imported here and in :func:`_add_insights_routes`, not at the top,
    so that a sidebar-only process never loads scikit-learn, SciPy, alembic or lxml.
    """
    if not settings.insights_enabled:
        return None
    from deskside.insights.service import InsightsService

    return InsightsService(settings.insights)


def _add_insights_routes(
    app: FastAPI, settings: Settings, insights: InsightsService, *, api: bool
) -> None:
    """Help Scout's webhook and OAuth callback and, with ``api``, the insights API."""
    from deskside.web.helpscout_oauth import oauth_routes
    from deskside.web.insights_api import insights_api  # see _insights_service

    async def default_webhook(request: Request) -> Response:
        return await insights.receive_helpscout(request)

    async def workspace_webhook(request: Request, workspace: str) -> Response:
        return await insights.receive_helpscout(request, workspace)

    for path, endpoint in (
        (HELPSCOUT_WEBHOOK_PATH, default_webhook),
        (HELPSCOUT_WEBHOOK_PATH + "/{workspace}", workspace_webhook),
    ):
        app.add_api_route(path, endpoint, methods=["POST"], include_in_schema=False)
    app.router.routes.extend(oauth_routes())
    if api:
        app.include_router(insights_api(insights))


def _one_operation_per_method(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """``routes`` as the OpenAPI schema lists them: a route taking several methods (Gorgias's
    GET and POST) becomes one copy per method, each with an operation id of its own.

    FastAPI gives every method of a route the route's single id (and warns "Duplicate
    Operation ID"). Only the schema sees the copies: the route served stays one, so a 405
    still names all its methods in ``Allow``.
    """
    published: list[BaseRoute] = []
    for route in routes:
        methods = sorted(route.methods or ()) if isinstance(route, APIRoute) else []
        if not isinstance(route, APIRoute) or len(methods) < 2:
            published.append(route)
            continue
        make_id = route.generate_unique_id_function
        if isinstance(make_id, DefaultPlaceholder):
            make_id = make_id.value
        for method in methods:
            part = copy.copy(route)
            part.methods = {method}
            if route.operation_id:
                part.operation_id = f"{route.operation_id}_{method.lower()}"
            part.unique_id = part.operation_id or make_id(part)
            published.append(part)
    return published


def _endpoint(
    protocol: Protocol, service: SidebarService, encoded: TTLCache[Hashable, Response]
) -> Endpoint:
    """``protocol``'s route; answers built from the same cached data are encoded once, kept
    in ``encoded`` (shared by every helpdesk, see Answer.reuse_key). A request the worker
    cannot answer in time is answered from the cache at once (see :mod:`deskside.admission`)."""
    limit = service.settings.server.max_body_bytes
    fold_plus = service.settings.lookup.fold_plus_addressing
    admission = service.admission
    shed = {kind: metrics.SHED.labels(protocol.name, kind) for kind in SHED_ANSWERS}

    async def endpoint(request: Request) -> Response:
        raw = RawRequest(
            method=request.method,
            body=await read_body(request, limit),
            query=request.scope.get("query_string", b""),
            headers={key.lower(): value for key, value in request.headers.items()},
        )
        protocol.verify(raw)  # Unauthorized: logged and counted by the app's error handler
        await protocol.refuse_replay(raw, service.resolver.cache)
        try:
            lookup = await protocol.aparse(raw, fold_plus=fold_plus)
        except Decline as decline:
            return protocol.response(protocol.respond(Sidebar(message=decline.message), None, raw))
        try:
            since = arrived(request)
            if admission.admit(since):
                try:
                    refresh = protocol.wants_fresh(raw)
                    answer = await service.answer(lookup, refresh=refresh, since=since)
                finally:
                    admission.done()
            else:
                answer = await service.shed(lookup)
                shed[_shed_answer(answer)].inc()
            if answer.reuse_key is None:
                return protocol.response(protocol.respond(answer.sidebar, answer.profile, raw))
            key = (protocol.name, answer.reuse_key, protocol.answer_variant(raw))
            response = encoded.get(key)
            if response is None:
                document = protocol.respond(answer.sidebar, answer.profile, raw)
                response = encoded[key] = protocol.response(document)
            return response
        except Exception:
            # Never a blank sidebar: a bug here still answers the helpdesk in its format.
            log.exception("%s: could not build the sidebar", protocol.name)
            sidebar = Sidebar(message="Customer details are unavailable right now.")
            try:
                return protocol.response(protocol.respond(sidebar, None, raw))
            except Exception:  # the protocol cannot even answer a message: say so plainly
                log.exception("%s: could not answer at all", protocol.name)
                return JSONResponse(
                    {"error": "temporarily unavailable"},
                    status_code=503,
                    headers={"Retry-After": "5"},
                )

    return endpoint


SHED_ANSWERS = ("cache", "partial", "unavailable")
"""How a shed request was answered: the ``answer`` label of ``deskside_shed_total``."""


def _shed_answer(answer: Answer) -> str:
    """``answer``'s label among :data:`SHED_ANSWERS`."""
    missing = answer.profile.unavailable
    if not missing:
        return "cache"
    return "unavailable" if len(missing) == len(answer.profile.results) else "partial"


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory``, gunicorn and worker processes: reads
    ``$DESKSIDE_CONFIG``, and sets up logging unless the server already did (see
    :func:`deskside.logs.configure_from_env`)."""
    logs.configure_from_env()
    return create_app(load_settings(os.environ.get(CONFIG_ENV, "deskside.toml")))


def _metrics_registry() -> CollectorRegistry:
    """Every worker's metrics when ``$PROMETHEUS_MULTIPROC_DIR`` is set, else this process's."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry
