"""The ``[ui]`` table of the config: the web UI's single sign-on (``[ui.oidc]``, an OpenID
Connect provider such as Google, Microsoft Entra ID, Okta or Keycloak)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import field_validator

from deskside.configtypes import ConfigModel, Secret

__all__ = ["OidcSettings", "UISettings"]

_LOCAL_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class OidcSettings(ConfigModel):
    """One OpenID Connect provider people sign in with (authorization code flow with PKCE)."""

    issuer: str
    """The provider's issuer URL (``https://accounts.google.com``); its discovery document is
    read from ``{issuer}/.well-known/openid-configuration``."""
    client_id: str
    client_secret: Secret
    """``env:NAME``, ``file:PATH`` or inline."""
    allowed_domains: list[str] = []
    """Email domains whose first sign-in creates a person (with ``default_role``)."""
    default_role: Literal["viewer", "editor", "admin"] | None = None
    """The role of a person created at their first sign-in; none: only people already added
    (``deskside users add``) may sign in."""

    @field_validator("issuer")
    @classmethod
    def _issuer_is_https(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        local = parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS
        if not parts.hostname or (parts.scheme != "https" and not local):
            raise ValueError("the issuer must be an https:// URL (http:// only on this machine)")
        if parts.query or parts.fragment:
            raise ValueError("the issuer is a URL without query or fragment")
        return value.strip()

    @field_validator("client_id")
    @classmethod
    def _client_id_not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("client_id is empty: copy it from the provider's app registration")
        return value.strip()

    @field_validator("allowed_domains")
    @classmethod
    def _domains_are_bare(cls, value: list[str]) -> list[str]:
        domains = [domain.strip().lower().removeprefix("@") for domain in value]
        if any(not domain or "@" in domain or "/" in domain for domain in domains):
            raise ValueError('allowed_domains are bare domains: ["team.example"]')
        return domains


class UISettings(ConfigModel):
    """``[ui]``: the web UI beyond its admin password (see ``[admin]``)."""

    oidc: OidcSettings | None = None
