"""How a helpdesk's route is published in ``/openapi.json``: its request, signature and
answers (:func:`openapi_route`), and how an answer is checked against its model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPBearer
from pydantic import BaseModel, ValidationError

__all__ = [
    "SECURITY_SCHEMES",
    "ErrorAnswer",
    "Security",
    "inline_schema",
    "openapi_route",
    "schema_problems",
]


class ErrorAnswer(BaseModel):
    """Every refusal: ``{"error": "…"}`` (never a secret, a signature or a stack trace)."""

    error: str


Security = APIKeyHeader | APIKeyQuery | HTTPBearer
"""How a helpdesk's request is signed, for the OpenAPI schema (a header, a query parameter or
a bearer token)."""

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {}
"""OpenAPI security schemes by name, as :func:`openapi_route` declares them."""


def openapi_route(
    *,
    summary: str,
    answer: type[BaseModel] | str,
    security: Security | Sequence[Security],
    body: type[BaseModel] | None = None,
    parameters: Sequence[Mapping[str, Any]] = (),
    description: str | None = None,
) -> dict[str, Any]:
    """``add_api_route`` keyword arguments that publish a route in the OpenAPI schema.

    ``answer`` is the JSON answer's model, or the media type of a page answered as text
    (``text/html``). ``body`` documents the JSON request body (the route still reads raw
    bytes: signatures are over them); ``security`` declares how the request is signed
    (several: alternatives), for documentation only: listed in :data:`SECURITY_SCHEMES` for
    the schema, never run as a per-request dependency.
    """
    schemes = [security] if isinstance(security, Security) else list(security)
    for scheme in schemes:
        SECURITY_SCHEMES[scheme.scheme_name] = scheme.model.model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
    extra: dict[str, Any] = {"security": [{scheme.scheme_name: []} for scheme in schemes]}
    if body is not None:
        content = {"application/json": {"schema": inline_schema(body)}}
        extra["requestBody"] = {"required": True, "content": content}
    if parameters:
        extra["parameters"] = [dict(parameter) for parameter in parameters]
    refused = {"model": ErrorAnswer}
    shown = "The answer, as the helpdesk expects it"
    page: dict[str, Any]
    if isinstance(answer, str):
        page = {"content": {answer: {"schema": {"type": "string"}}}, "description": shown}
    else:
        page = {"model": answer, "description": shown}
    return {
        "summary": summary,
        "description": description,
        "openapi_extra": extra,
        "responses": {
            200: page,
            400: {**refused, "description": "Malformed JSON, wrong types or a malformed query"},
            401: {**refused, "description": "Missing or wrong signature"},
            413: {**refused, "description": "Body too large"},
        },
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` written in place, so it can sit anywhere in
    an OpenAPI document (where ``#/$defs/…`` would point at the document's root)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def schema_problems(model: type[BaseModel], document: Any) -> list[str]:
    """``document`` checked against ``model``: one readable line per mismatch."""
    try:
        model.model_validate(document)
    except ValidationError as exc:
        return [
            f"{'.'.join(str(p) for p in error['loc']) or 'answer'}: {error['msg']}"
            for error in exc.errors()[:10]
        ]
    return []
