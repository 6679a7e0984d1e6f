"""Reading the web UI's forms (and the insights API's form bodies): URL-encoded, at most
:data:`FORM_LIMIT` bytes, read once and kept by the request."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

__all__ = ["FORM_LIMIT", "read_form", "read_form_pairs"]

FORM_LIMIT = 64 * 1024
"""The largest body the UI's forms and the insights API read (a larger API body is a 413)."""


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last value of a repeated
    name wins); anything else, or over 64 KiB, is an empty form."""
    return dict(await read_form_pairs(request))


async def read_form_pairs(request: Request) -> list[tuple[str, str]]:
    """Every ``(name, value)`` of an ``application/x-www-form-urlencoded`` body, in order
    (see :func:`read_form`; the body is read once and kept by the request)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return []
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared[:20]) > FORM_LIMIT:
        return []
    body = await request.body()
    if len(body) > FORM_LIMIT:
        return []
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=1000)
    except (UnicodeDecodeError, ValueError):
        return []
