"""Signatures: the vendors' vectors, an independent signer, rotation, why a request is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from deskside.errors import Unauthorized
from deskside.signing import Scheme, sign, verify
from helpers import helpscout_signature, therethere_signature

HS_VECTOR = ("asdfasdf", b'{"id":123}', "7S2+kN8bZsrdAEADJ+yYfWWsf/4=")
TT_VECTOR = (
    "thereTest",
    b'{"email":"customer@example.com"}',
    "16f15bd1298b47b79a491008b2f971e879cb36dfc2303b26e871ca94938766ae",
)

BODIES = [
    b"",
    b"{}",
    b'{"id":123}',
    b'{ "customer" : { "email" : "a\\/b@x.example" } }\n',
    '{"name": "Zoë 🚀"}'.encode(),
    b'{"name": "Zo\\u00eb"}',
    bytes(range(256)),
    b"x" * 70_000,
]


def helper_signature(secret: str, message: bytes) -> str:
    """Helper's customer-info scheme: standard base64 of HMAC-SHA256."""
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def reason(scheme: Scheme, secrets: list[str], body: bytes, signature: str | None) -> str:
    with pytest.raises(Unauthorized) as caught:
        verify(scheme, secrets, body, signature)
    assert caught.value.detail == "invalid signature"
    assert caught.value.status == 401
    return caught.value.reason


def test_help_scout_vector() -> None:
    secret, body, expected = HS_VECTOR
    assert helpscout_signature(secret, body) == expected
    assert sign(Scheme.SHA1_BASE64, secret, body) == expected
    verify(Scheme.SHA1_BASE64, [secret], body, expected)


def test_there_there_vector() -> None:
    secret, body, expected = TT_VECTOR
    assert therethere_signature(secret, body) == expected
    assert sign(Scheme.SHA256_HEX, secret, body) == expected
    verify(Scheme.SHA256_HEX, [secret], body, expected)


@pytest.mark.parametrize("body", BODIES, ids=range(len(BODIES)))
@pytest.mark.parametrize("secret", ["s", "a-much-longer-secret-with-ümlaut"])
def test_independent_signer_agrees_for_every_scheme(body: bytes, secret: str) -> None:
    independent = {
        Scheme.SHA1_BASE64: helpscout_signature(secret, body),
        Scheme.SHA256_HEX: therethere_signature(secret, body),
        Scheme.SHA256_BASE64: helper_signature(secret, body),
    }
    for scheme, expected in independent.items():
        assert sign(scheme, secret, body) == expected
        verify(scheme, [secret], body, expected)


def test_help_scout_signature_is_28_characters_of_standard_base64() -> None:
    signature = sign(Scheme.SHA1_BASE64, "secret", b'{"ticket":false}')
    assert len(signature) == 28
    assert base64.b64decode(signature, validate=True)


@pytest.mark.parametrize("scheme", list(Scheme))
def test_any_configured_secret_verifies_during_a_rotation(scheme: Scheme) -> None:
    body = b'{"email":"owner@acme.example"}'
    secrets = ["old-secret", "new-secret", "newest-secret"]
    for secret in secrets:
        verify(scheme, secrets, body, sign(scheme, secret, body))
    assert "does not match" in reason(scheme, secrets, body, sign(scheme, "retired", body))


def test_a_changed_body_is_refused() -> None:
    body = b'{"customer":{"email":"owner@acme.example"}}'
    signature = helpscout_signature("s", body)
    tampered = body.replace(b"owner", b"admin")
    assert "does not match" in reason(Scheme.SHA1_BASE64, ["s"], tampered, signature)
    # Re-serialising the same document changes its bytes, so it must not verify either.
    reserialised = json.dumps(json.loads(body)).encode()
    assert reserialised != body
    assert "does not match" in reason(Scheme.SHA1_BASE64, ["s"], reserialised, signature)


def _hs(body: bytes, secret: str = HS_VECTOR[0]) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha1).digest()


_, HS_BODY, HS_SIGNATURE = HS_VECTOR


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("not base64 at all!", "not valid base64"),
        ("7S2+kN8bZsrdAEADJ+yYfWWsf/4", "not valid base64"),  # padding lost on the way
        (base64.urlsafe_b64encode(_hs(HS_BODY)).decode(), "URL-safe"),
        (_hs(HS_BODY).hex(), "hexadecimal"),
        (_hs(HS_BODY).hex().upper(), "hexadecimal"),
        (base64.b64encode(hashlib.sha256(HS_BODY).digest()).decode(), "32 bytes, expected 20"),
        (base64.b64encode(_hs(HS_BODY)[:10]).decode(), "10 bytes, expected 20"),
        (base64.b64encode(_hs(HS_BODY, "wrong")).decode(), "does not match"),
    ],
    ids=[
        "none",
        "empty",
        "blank",
        "garbage",
        "unpadded",
        "url-safe",
        "hex",
        "hex-upper",
        "sha256-length",
        "short",
        "wrong-secret",
    ],
)
def test_help_scout_refusals_say_what_was_wrong(signature: str | None, expected: str) -> None:
    # The vector's signature holds both "+" and "/": its URL-safe form really differs.
    assert "+" in HS_SIGNATURE and "/" in HS_SIGNATURE
    why = reason(Scheme.SHA1_BASE64, ["asdfasdf"], HS_BODY, signature)
    assert expected in why
    assert "asdfasdf" not in why
    if signature and signature.strip():
        assert signature not in why


_, TT_BODY, TT_SIGNATURE = TT_VECTOR


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        (None, "missing"),
        ("", "missing"),
        ("zz" * 32, "not hexadecimal"),
        (base64.b64encode(bytes.fromhex(TT_SIGNATURE)).decode(), "not hexadecimal"),
        (_hs(TT_BODY).hex(), "20 bytes, expected 32"),
        (therethere_signature("thereTest!", TT_BODY), "does not match"),
    ],
    ids=["none", "empty", "not-hex", "base64", "sha1-length", "wrong-secret"],
)
def test_there_there_refusals_say_what_was_wrong(signature: str | None, expected: str) -> None:
    why = reason(Scheme.SHA256_HEX, ["thereTest"], TT_BODY, signature)
    assert expected in why
    assert "thereTest" not in why
    if signature:
        assert signature not in why


def test_near_and_far_misses_are_refused_alike() -> None:
    """Nothing tells a caller how much of a guessed signature was right."""
    good = bytes.fromhex(TT_SIGNATURE)
    near = (good[:-1] + bytes([good[-1] ^ 1])).hex()
    far = bytes(b ^ 0xFF for b in good).hex()
    first_byte_off = (bytes([good[0] ^ 1]) + good[1:]).hex()
    reasons = {reason(Scheme.SHA256_HEX, ["thereTest"], TT_BODY, s) for s in (near, far)}
    reasons.add(reason(Scheme.SHA256_HEX, ["thereTest"], TT_BODY, first_byte_off))
    assert len(reasons) == 1


def test_every_secret_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Comparisons go through hmac.compare_digest, against every secret, even after a match, so
    neither the digest nor which secret matched leaks through timing."""
    real = hmac.compare_digest
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    secret, body, signature = HS_VECTOR
    verify(Scheme.SHA1_BASE64, [secret, "second", "third"], body, signature)
    assert len(calls) == 3
    assert all(provided == base64.b64decode(signature) for _, provided in calls)
    calls.clear()
    reason(Scheme.SHA1_BASE64, ["first", "second"], body, signature)
    assert len(calls) == 2
