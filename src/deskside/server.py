"""The ASGI app: one route per configured helpdesk, plus ``/healthz``."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deskside import __version__
from deskside.card import Sidebar
from deskside.config import Settings, load_settings
from deskside.errors import BadRequest, HTTPError, Unauthorized
from deskside.lookup import normalise_emails
from deskside.protocols import Decline, Protocol, RawRequest
from deskside.protocols.base import optional_string, parse_json_object, read_body
from deskside.service import SidebarService
from deskside.signing import bearer_token, token_matches

__all__ = ["create_app", "create_app_from_env"]

log = logging.getLogger("deskside.server")

CONFIG_ENV = "DESKSIDE_CONFIG"


def create_app(settings: Settings) -> FastAPI:
    """The app for ``settings``; sources connect lazily and close when the app stops."""
    service = SidebarService(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await service.aclose()

    app = FastAPI(
        title="deskside",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service

    @app.exception_handler(HTTPError)
    async def _http_error(_request: Request, exc: HTTPError) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _starlette_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, _exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "malformed request"}, status_code=400)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    if settings.admin.token:
        admin_tokens = [token.get_secret_value() for token in settings.admin.token]

        @app.post("/admin/cache/clear", include_in_schema=False)
        async def clear_cache(request: Request) -> dict[str, Any]:
            """Forget every cached answer about ``{"email": …}``, e.g. after a plan change."""
            if not token_matches(bearer_token(request.headers.get("authorization")), admin_tokens):
                raise Unauthorized("admin request without a valid bearer token")
            email = optional_string(parse_json_object(await read_body(request, 4096)), "email")
            emails = normalise_emails([email], fold_plus=False)
            if not emails:
                raise BadRequest("`email` must be an email address")
            return {"email": emails[0], "dropped": await service.resolver.forget(emails[0])}

    for protocol in service.protocols:
        app.add_api_route(
            protocol.path,
            _endpoint(protocol, service),
            methods=[protocol.method],
            name=protocol.name,
            include_in_schema=protocol.openapi is not None,
            **(protocol.openapi or {"summary": f"{protocol.title} sidebar"}),
        )
        for route in protocol.extra_routes(service):
            app.add_api_route(
                route.path, route.endpoint, methods=[route.method], include_in_schema=False
            )
    return app


def _endpoint(protocol: Protocol, service: SidebarService) -> Any:
    limit = service.settings.server.max_body_bytes
    fold_plus = service.settings.lookup.fold_plus_addressing

    async def endpoint(request: Request) -> JSONResponse:
        raw = RawRequest(
            method=request.method,
            body=await read_body(request, limit),
            query=request.scope.get("query_string", b""),
            headers={key.lower(): value for key, value in request.headers.items()},
        )
        try:
            protocol.verify(raw)
        except Unauthorized as exc:
            client = request.client.host if request.client else "-"
            log.warning("%s: rejected request from %s: %s", protocol.name, client, exc.reason)
            raise
        try:
            lookup = protocol.parse(raw, fold_plus=fold_plus)
        except Decline as decline:
            return JSONResponse(protocol.respond(Sidebar(message=decline.message), None, raw))
        try:
            answer = await service.answer(lookup)
            return JSONResponse(protocol.respond(answer.sidebar, answer.profile, raw))
        except Exception:
            # Never a blank sidebar: a bug here still answers the helpdesk in its format.
            log.exception("%s: could not build the sidebar", protocol.name)
            sidebar = Sidebar(message="Customer details are unavailable right now.")
            return JSONResponse(protocol.respond(sidebar, None, raw))

    return endpoint


def create_app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` and worker processes: reads ``$DESKSIDE_CONFIG``."""
    return create_app(load_settings(os.environ.get(CONFIG_ENV, "deskside.toml")))
