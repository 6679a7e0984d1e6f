"""HTTP helpers every route shares: reading a body within a limit, and JSON bodies read
strictly (a refusal says what is wrong, never a stack trace)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from deskside.errors import BadRequest, PayloadTooLarge

__all__ = ["optional_string", "parse_json_object", "read_body"]


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing (413) anything over ``limit`` bytes before reading it all."""
    declared = request.headers.get("content-length", "")
    # ASCII digits only ("²" is a digit int() refuses), and no int() of a 5000-digit header.
    if declared.isascii() and declared.isdigit() and int(declared[:20]) > limit:
        raise PayloadTooLarge(f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """``body`` as a JSON object, or a BadRequest saying what is wrong with it."""
    if not body.strip():
        raise BadRequest("empty body: a JSON object is expected")
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    return document


def optional_string(document: Mapping[str, Any], key: str, where: str = "") -> str | None:
    """``document[key]`` when it is a string, None when absent or null, else a BadRequest."""
    value = document.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"`{where}{key}` must be a string")
    return value
