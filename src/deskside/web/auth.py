"""The credentials of the web UI and the insights API: an admin password (scrypt,
constant-time) that opens a signed session cookie, or an ``[admin] token`` bearer for scripts;
CSRF tokens for every cookie-authenticated POST; a limit on failed logins per client. Which
route admits whom is :mod:`deskside.web.guard`'s.

Sessions are stateless: the cookie carries its expiry, its CSRF token, who logged in (a person's
id and session generation, or nobody for the admin password) and when it was last used, signed
with HMAC-SHA256 under the session secret (``[admin] session_secret``, else derived from
``password_hash``, else random per process). A session unused for :data:`IDLE_SECONDS` ends.
Logging out clears the cookie; changing the secret ends every session; a person's "log out
everywhere" raises their generation, which ends every session of theirs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from deskside.errors import HTTPError
from deskside.insights import DEFAULT_WORKSPACE
from deskside.signing import bearer_token, token_matches

if TYPE_CHECKING:
    from deskside.config import AdminSettings

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "IDLE_SECONDS",
    "SAFE_METHODS",
    "SESSION_COOKIE",
    "AdminAuth",
    "Forbidden",
    "LoginLimiter",
    "PasswordHash",
    "Session",
    "TooManyAttempts",
    "hash_password",
]

SESSION_COOKIE = "deskside_session"
LOGIN_COOKIE = "deskside_login"
"""Holds the login form's CSRF token before there is a session."""
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

IDLE_SECONDS = 2 * 3600
"""A session unused this long ends (the guard renews its last use at most once a minute)."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SCRYPT_N = 2**15
_SCRYPT_R = 8
_SCRYPT_P = 1


class Forbidden(HTTPError):
    """A cookie-authenticated change without the session's CSRF token."""

    status = 403


class TooManyAttempts(HTTPError):
    status = 429


# ── Passwords ────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class PasswordHash:
    """``scrypt$N$r$p$<salt>$<hash>`` (salt and hash in unpadded URL-safe base64)."""

    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    @classmethod
    def new(
        cls, password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P
    ) -> PasswordHash:
        """``password`` hashed under a new random 16-byte salt."""
        salt = secrets.token_bytes(16)
        return cls(n, r, p, salt, _scrypt(password, salt, n, r, p))

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """The hash ``text`` writes down; ``ValueError`` saying what is wrong with it."""
        parts = text.strip().split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError(
                "password_hash must look like scrypt$N$r$p$salt$hash: "
                "make one with `python -m deskside.web.auth`"
            )
        try:
            n, r, p = (int(part) for part in parts[1:4])
            salt, digest = _unb64(parts[4]), _unb64(parts[5])
        except (ValueError, binascii.Error):
            raise ValueError(
                "password_hash: N, r and p must be numbers, salt and hash base64"
            ) from None
        if n < 2**10 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
            raise ValueError("password_hash: N must be a power of two ≥ 1024, r 1 to 64, p 1 to 16")
        if 128 * r * n > 512 * 1024 * 1024:
            raise ValueError("password_hash: N·r needs more than 512 MiB of memory")
        if len(salt) < 8 or len(digest) < 16:
            raise ValueError("password_hash: the salt or the hash is too short")
        return cls(n, r, p, salt, digest)

    def __str__(self) -> str:
        return f"scrypt${self.n}${self.r}${self.p}${_b64(self.salt)}${_b64(self.digest)}"

    def matches(self, password: str) -> bool:
        """Whether ``password`` hashes to this (CPU-bound: call it in a thread)."""
        candidate = _scrypt(password, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(candidate, self.digest)


def hash_password(password: str) -> str:
    """A ``password_hash`` value for ``[admin]``."""
    return str(PasswordHash.new(password))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, size: int = 32) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 1024 * 1024, dklen=size
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# ── Login attempts ───────────────────────────────────────────────────────────────────────────


class LoginLimiter:
    """At most ``attempts`` failed logins per ``window`` seconds per client address."""

    def __init__(self, attempts: int = 5, window: float = 60.0, *, clients: int = 10_000) -> None:
        self.attempts = attempts
        self.window = window
        self.clients = clients
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again; 0 when it may now."""
        failures = self._recent(client)
        if len(failures) < self.attempts:
            return 0.0
        return max(0.0, failures[0] + self.window - time.monotonic())

    def failed(self, client: str) -> None:
        if len(self._failures) >= self.clients and client not in self._failures:
            self._prune()
        self._recent(client).append(time.monotonic())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.setdefault(client, deque(maxlen=self.attempts))
        while failures and failures[0] <= time.monotonic() - self.window:
            failures.popleft()
        return failures

    def _prune(self) -> None:
        cutoff = time.monotonic() - self.window
        for client in [c for c, f in self._failures.items() if not f or f[-1] <= cutoff]:
            del self._failures[client]
        while len(self._failures) >= self.clients:  # all recent: forget the oldest client
            del self._failures[next(iter(self._failures))]


# ── Sessions ─────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Session:
    """A logged-in browser: when the login expires, its CSRF token, the person (None: the admin
    password) and their session generation, and when it was last used."""

    expires: float
    csrf: str
    person: int | None = None
    generation: int = 0
    seen: float = 0.0
    workspace: str = DEFAULT_WORKSPACE
    """The workspace the pages show (the person chooses among theirs)."""


class AdminAuth:
    """The admin credentials of one app: password, bearer tokens, the session key, and the
    failed-login limiter. One per app (see :meth:`of`)."""

    def __init__(self, settings: AdminSettings) -> None:
        self.tokens = [token.get_secret_value() for token in settings.token]
        self.passwords: list[PasswordHash] = []
        if settings.password is not None:
            self.passwords.append(PasswordHash.new(settings.password.get_secret_value()))
        if settings.password_hash is not None:
            self.passwords.append(PasswordHash.parse(settings.password_hash))
        if settings.session_secret is not None:
            seed = settings.session_secret.get_secret_value().encode()
        elif settings.password_hash is not None:
            seed = settings.password_hash.encode()  # stable across workers and restarts
        else:
            seed = secrets.token_bytes(32)
        self._key = hmac.new(seed, b"deskside session key v1", hashlib.sha256).digest()
        self.lifetime = settings.session_hours * 3600
        self.limiter = LoginLimiter()

    @classmethod
    def of(cls, request: Request, default: AdminAuth | None = None) -> AdminAuth:
        """The app's one instance: ``default`` when none is set yet, else one built from the
        app's settings (``app.state.service.settings``)."""
        state = request.app.state
        auth: AdminAuth | None = getattr(state, "admin_auth", None)
        if auth is None:
            auth = default or cls(state.service.settings.admin)
            state.admin_auth = auth
        return auth

    # Passwords and tokens

    async def check_password(self, password: str) -> bool:
        """Whether ``password`` is an admin password (each hash is tried, in a thread)."""
        if not password or len(password) > 1024:
            return False
        matched = False
        for known in self.passwords:
            matched |= await run_in_threadpool(known.matches, password)
        return matched

    def token_valid(self, request: Request) -> bool:
        """Whether the request carries a valid ``Authorization: Bearer`` admin token."""
        return token_matches(bearer_token(request.headers.get("authorization")), self.tokens)

    # Session cookies

    def new_session(self, person: int | None = None, generation: int = 0) -> Session:
        """A session of ``person`` (None: the admin password) from now."""
        now = time.time()
        return Session(
            expires=now + self.lifetime,
            csrf=secrets.token_urlsafe(24),
            person=person,
            generation=generation,
            seen=now,
        )

    def session(self, request: Request) -> Session | None:
        """The request's valid, unexpired session, or None."""
        document = self._unseal("session", request.cookies.get(SESSION_COOKIE))
        if document is None:
            return None
        expires, csrf = document.get("e"), document.get("c")
        person, generation = document.get("p"), document.get("g", 0)
        seen, workspace = document.get("s", 0), document.get("w", DEFAULT_WORKSPACE)
        if not isinstance(expires, int | float) or not isinstance(csrf, str) or not csrf:
            return None
        if not isinstance(workspace, str):
            return None
        if not (person is None or type(person) is int) or type(generation) is not int:
            return None
        now = time.time()
        if expires <= now or not isinstance(seen, int | float) or seen + IDLE_SECONDS <= now:
            return None
        return Session(float(expires), csrf, person, generation, float(seen), workspace)

    def set_session(self, response: Response, request: Request, session: Session) -> None:
        document = {
            "e": round(session.expires),
            "c": session.csrf,
            "p": session.person,
            "g": session.generation,
            "s": round(session.seen),
            "w": session.workspace,
        }
        value = self._seal("session", document)
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=int(session.expires - time.time()),
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )

    @staticmethod
    def clear_session(response: Response, request: Request) -> None:
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="lax",
        )

    # The login form's CSRF token, before there is a session

    def login_token(self, request: Request) -> tuple[str, str | None]:
        """The login form's token, and the cookie value to set (None: the browser has it)."""
        document = self._unseal("login", request.cookies.get(LOGIN_COOKIE))
        token = document.get("t") if document else None
        if isinstance(token, str) and token:
            return token, None
        token = secrets.token_urlsafe(24)
        return token, self._seal("login", {"t": token})

    def login_token_valid(self, request: Request, submitted: str | None) -> bool:
        document = self._unseal("login", request.cookies.get(LOGIN_COOKIE))
        token = document.get("t") if document else None
        return (
            isinstance(token, str)
            and bool(submitted)
            and hmac.compare_digest(token.encode(), (submitted or "").encode())
        )

    @staticmethod
    def set_login_cookie(response: Response, request: Request, value: str) -> None:
        response.set_cookie(
            LOGIN_COOKIE,
            value,
            max_age=3600,
            path="/ui/",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )

    # CSRF

    @staticmethod
    def csrf_valid(session: Session, submitted: str | None) -> bool:
        """Whether ``submitted`` is the session's CSRF token (constant time)."""
        return bool(submitted) and hmac.compare_digest(
            session.csrf.encode(), (submitted or "").encode()
        )

    # Signing

    def seal(self, purpose: str, document: dict[str, Any]) -> str:
        """``document`` signed for ``purpose``, as a cookie's value (signed, not encrypted)."""
        return self._seal(purpose, document)

    def unseal(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        """What :meth:`seal` signed for ``purpose``; None when forged, altered or another's."""
        return self._unseal(purpose, value)

    def _seal(self, purpose: str, document: dict[str, Any]) -> str:
        payload = _b64(json.dumps(document, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(purpose, payload)}"

    def _unseal(self, purpose: str, value: str | None) -> dict[str, Any] | None:
        if not value or len(value) > 4096 or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(self._sign(purpose, payload).encode(), signature.encode()):
            return None
        try:
            document = json.loads(_unb64(payload))
        except (ValueError, binascii.Error):
            return None
        return document if isinstance(document, dict) else None

    def _sign(self, purpose: str, payload: str) -> str:
        message = f"{purpose}.{payload}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())


def _main() -> None:
    """``python -m deskside.web.auth``: read a password from stdin, print its hash."""
    import getpass

    if sys.stdin.isatty():
        password = getpass.getpass("Admin password: ")
        if getpass.getpass("Again: ") != password:
            sys.exit("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < 8:
        sys.exit("use at least 8 characters")
    print(hash_password(password))


if __name__ == "__main__":
    _main()
