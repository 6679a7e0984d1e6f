"""The HMAC signature schemes helpdesks use, and their constant-time verification.

Every scheme signs bytes exactly as they travel (a raw body or a raw query string); nothing
here ever re-serialises a message. Refusals carry a reason for the logs, never the secret or
the signature itself.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import string
from collections.abc import Sequence
from enum import StrEnum

from deskside.errors import Unauthorized

__all__ = ["Scheme", "bearer_token", "sign", "token_matches", "verify"]


class Scheme(StrEnum):
    """How the digest is computed and written down."""

    SHA1_BASE64 = "sha1-base64"
    """Help Scout: standard base64 (``+/=``) of HMAC-SHA1."""
    SHA256_HEX = "sha256-hex"
    """There There, Plain, the generic endpoint, Helper's widget: lower-case hex HMAC-SHA256."""
    SHA256_BASE64 = "sha256-base64"
    """Helper's customer-info request: standard base64 of HMAC-SHA256."""

    @property
    def _hash(self) -> str:
        return "sha1" if self is Scheme.SHA1_BASE64 else "sha256"

    @property
    def _is_hex(self) -> bool:
        return self is Scheme.SHA256_HEX

    def digest(self, secret: str, message: bytes) -> bytes:
        return hmac.new(secret.encode(), message, self._hash).digest()


def sign(scheme: Scheme, secret: str, message: bytes) -> str:
    """The signature a helpdesk would send for ``message``."""
    digest = scheme.digest(secret, message)
    return digest.hex() if scheme._is_hex else base64.b64encode(digest).decode("ascii")


def verify(scheme: Scheme, secrets: Sequence[str], message: bytes, signature: str | None) -> None:
    """Return if ``signature`` matches ``message`` under any of ``secrets``; else raise.

    Raises :class:`Unauthorized` whose ``reason`` says what was wrong (missing, malformed,
    which encoding it looked like, or no secret matched) so operators can fix a set-up, and
    whose ``code`` says the same in one word for the metrics.
    """
    if not signature or not signature.strip():
        raise Unauthorized("signature header missing or empty", code="missing")
    provided = _decode(scheme, signature.strip())
    expected_size = hashlib.new(scheme._hash).digest_size
    if len(provided) != expected_size:
        raise Unauthorized(
            f"signature decodes to {len(provided)} bytes, expected {expected_size} "
            f"({scheme.value}); is this the right helpdesk?",
            code="malformed",
        )
    matched = False
    for secret in secrets:
        # Compare against every secret so timing does not reveal which one matched.
        matched |= hmac.compare_digest(scheme.digest(secret, message), provided)
    if not matched:
        raise Unauthorized(
            "signature does not match any configured secret "
            "(wrong secret, or the body was changed on the way)",
            code="mismatch",
        )


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def token_matches(token: str | None, tokens: Sequence[str]) -> bool:
    """Whether ``token`` is one of ``tokens``, compared in constant time against each."""
    if not token:
        return False
    matched = False
    for known in tokens:
        matched |= hmac.compare_digest(token.encode(), known.encode())
    return matched


def _decode(scheme: Scheme, signature: str) -> bytes:
    if scheme._is_hex:
        # An odd number of digits (a signature cut short) is no byte string: fromhex raises.
        if not _is_hex(signature) or len(signature) % 2:
            raise Unauthorized("signature is not hexadecimal", code="malformed")
        return bytes.fromhex(signature)
    if len(signature) == 2 * hashlib.new(scheme._hash).digest_size and _is_hex(signature):
        raise Unauthorized("signature is hexadecimal; base64 is expected", code="wrong_encoding")
    try:
        return base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        pass
    if "-" in signature or "_" in signature:
        raise Unauthorized(
            "signature is URL-safe base64; standard base64 (+ and /) is expected",
            code="wrong_encoding",
        )
    raise Unauthorized("signature is not valid base64", code="malformed")


def _is_hex(value: str) -> bool:
    return bool(value) and all(c in string.hexdigits for c in value)
