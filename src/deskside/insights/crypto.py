"""Encryption at rest for what must not be readable in the database file: OAuth tokens and
webhook secrets (Fernet: AES-128-CBC with an HMAC-SHA256, from ``cryptography``)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from deskside.errors import ConfigError
from deskside.insights.settings import InsightsSettings

__all__ = ["Cipher", "new_key"]


def new_key() -> str:
    """A fresh key for ``[insights] encryption_key``."""
    return Fernet.generate_key().decode()


class Cipher:
    """Encrypts and decrypts with the configured key; refuses to exist without one."""

    def __init__(self, key: str) -> None:
        try:
            self._fernet = Fernet(key.encode())
        except ValueError:
            raise ConfigError(
                [
                    "insights.encryption_key: not a Fernet key (32 url-safe base64-encoded "
                    "bytes); make one with: python -c 'from cryptography.fernet import Fernet; "
                    "print(Fernet.generate_key().decode())'"
                ]
            ) from None

    @classmethod
    def from_settings(cls, settings: InsightsSettings) -> Cipher:
        """The cipher for ``[insights] encryption_key``; :class:`ConfigError` when it is unset
        (deskside does not store tokens in the clear)."""
        if settings.encryption_key is None:
            raise ConfigError(
                [
                    "insights.encryption_key is not set: tokens are only stored encrypted. "
                    f'Set it, e.g. encryption_key = "env:DESKSIDE_ENCRYPTION_KEY" with '
                    f"DESKSIDE_ENCRYPTION_KEY={new_key()}"
                ]
            )
        return cls(settings.encryption_key.get_secret_value())

    def encrypt(self, plain: str) -> bytes:
        return self._fernet.encrypt(plain.encode())

    def decrypt(self, sealed: bytes) -> str:
        """The plain text; :class:`ConfigError` when another key sealed it."""
        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            raise ConfigError(
                [
                    "insights.encryption_key cannot decrypt the stored tokens: it is not the key "
                    "they were stored with; restore that key, or `deskside disconnect helpscout` "
                    "and connect again"
                ]
            ) from None
