"""Errors that cross a boundary: each HTTP-facing error carries its status on the class."""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "UNAUTHORIZED_CODES",
    "BadRequest",
    "ConfigError",
    "HTTPError",
    "NotFound",
    "PayloadTooLarge",
    "ServiceUnavailable",
    "SourceError",
    "Unauthorized",
    "UnauthorizedCode",
]

UnauthorizedCode = Literal[
    "missing", "malformed", "wrong_encoding", "mismatch", "expired", "replayed", "token"
]
"""Why a request was refused, as counted in ``deskside_signature_failures_total{reason}``:

- ``missing``: no signature (or no credentials at all);
- ``malformed``: a signature, timestamp or header that cannot be what the helpdesk sends;
- ``wrong_encoding``: a well-formed digest in the wrong encoding (hex for base64, URL-safe
  base64): usually the wrong helpdesk kind;
- ``mismatch``: a well-formed signature that no configured secret produces;
- ``expired``: a signed timestamp outside the replay window;
- ``replayed``: a signed request answered before, sent again within its window;
- ``token``: a bearer token (admin, widget identity, generic endpoint) that matches none.
"""
UNAUTHORIZED_CODES: tuple[UnauthorizedCode, ...] = get_args(UnauthorizedCode)


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

    The caller only ever sees ``detail`` (a fixed refusal); ``reason`` is for the logs, and
    ``code`` (one of :data:`UNAUTHORIZED_CODES`) for the metrics.
    """

    status = 401

    def __init__(self, reason: str, *, code: UnauthorizedCode) -> None:
        super().__init__("invalid signature")
        self.reason = reason
        self.code = code


class NotFound(HTTPError):
    """Nothing by that name or id, for this caller (also what another workspace's row is)."""

    status = 404


class PayloadTooLarge(HTTPError):
    status = 413


class ServiceUnavailable(HTTPError):
    """Not now, try again: e.g. a webhook that could not be stored (the sender retries)."""

    status = 503


class SourceError(Exception):
    """A source could not answer; the message is safe to log (no secrets, no customer data)."""


class ConfigError(Exception):
    """An invalid configuration: ``problems`` lists one readable line per mistake."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
