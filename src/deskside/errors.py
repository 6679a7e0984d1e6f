"""Errors that cross a boundary: each HTTP-facing error carries its status on the class."""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "ConfigError",
    "HTTPError",
    "PayloadTooLarge",
    "SourceError",
    "Unauthorized",
]


class HTTPError(Exception):
    """An error answered to the caller as ``{"error": detail}`` with ``status``.

    ``detail`` is shown to the caller, so it never holds a secret or echoes a signature.
    """

    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BadRequest(HTTPError):
    status = 400


class Unauthorized(HTTPError):
    """A request whose signature is missing, malformed or wrong.

    The caller only ever sees ``detail`` (a fixed refusal); ``reason`` is for the logs.
    """

    status = 401

    def __init__(self, reason: str) -> None:
        super().__init__("invalid signature")
        self.reason = reason


class PayloadTooLarge(HTTPError):
    status = 413


class SourceError(Exception):
    """A source could not answer; the message is safe to log (no secrets, no customer data)."""


class ConfigError(Exception):
    """An invalid configuration: ``problems`` lists one readable line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
