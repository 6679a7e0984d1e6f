"""The ``[insights]`` table: where conversations are stored and how Help Scout is reached."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from deskside.configtypes import ConfigModel, Secret, SecretList

__all__ = [
    "ClassifierSettings",
    "HelpScoutSettings",
    "InsightsSettings",
    "ReportsSettings",
    "WorkspaceSettings",
]


class HelpScoutSettings(ConfigModel):
    """``[insights.helpscout]``: the OAuth app (or own-account credentials) and the webhook."""

    mode: Literal["oauth", "client_credentials"] = "oauth"
    """``oauth``: an agent authorises deskside in the browser (authorization-code flow);
    ``client_credentials``: your own Help Scout account's app id and secret, no browser."""
    client_id: Secret | None = None
    """The Help Scout app's "App ID"."""
    client_secret: Secret | None = None
    """The Help Scout app's "App Secret"."""
    redirect_url: str = "http://127.0.0.1:8765/insights/helpscout/callback"
    """Where Help Scout sends the browser back after authorising; the app's Redirection URL."""
    api_url: str = "https://api.helpscout.net"
    """The Mailbox API 2.0 base URL (conversations, mailboxes, webhooks, the token endpoint)."""
    authorize_url: str = "https://secure.helpscout.net/authentication/authorizeClientApplication"
    """Where the browser goes to authorise the app."""
    webhook_secret: SecretList = []
    """Secret(s) Help Scout signs webhooks with (several during a rotation); a webhook that
    ``deskside connect --webhook-url`` registers gets its own generated secret besides these."""
    webhook_max_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    """Larger webhook bodies are refused (413); a conversation with its threads can be large."""

    @property
    def token_url(self) -> str:
        return self.api_url.rstrip("/") + "/v2/oauth2/token"


class ClassifierSettings(ConfigModel):
    """``[insights.classifier]``: what the classifier learns from, and optional helpers."""

    examples: list[str] = []
    """Labelled example files (CSV ``text,label`` or JSON lines), relative to the config file,
    learnt from besides the shipped examples and the agents' corrections."""
    llm_url: str | None = None
    """An OpenAI-compatible API (``http://127.0.0.1:8080/v1``) asked first; the local model
    answers whenever it fails."""
    llm_model: str = "default"
    """The model name sent to ``llm_url``."""
    llm_api_key: Secret | None = None
    """Bearer token for ``llm_url``."""
    docs_api_key: Secret | None = None
    """A Help Scout Docs API key: article titles make ``docs`` likelier for close matches."""
    docs_api_url: str = "https://docsapi.helpscout.net"
    """The Docs API's base URL."""

    @field_validator("examples")
    @classmethod
    def _relative_to_config(cls, paths: list[str], info: ValidationInfo) -> list[str]:
        base = Path((info.context or {}).get("base_dir", "."))
        return [str(base / Path(path).expanduser()) for path in paths]


class ReportsSettings(ConfigModel):
    """``[insights.reports]``: what a report says about the customers behind it, and where it
    is exported."""

    plan: str | None = None
    """An expression over the sidebar's sources giving a customer's plan, e.g. ``app.plan``."""
    revenue_cents: str | None = None
    """An expression giving a customer's monthly revenue in cents, e.g. ``app.mrr_cents``."""
    github_repository: str | None = None
    """``owner/name``: where ``deskside reports --export github`` opens (or updates) issues."""
    github_token: Secret | None = None
    """A GitHub token allowed to write that repository's issues (``env:GITHUB_TOKEN``)."""
    github_api_url: str = "https://api.github.com"
    """GitHub's REST API (GitHub Enterprise: ``https://HOST/api/v3``)."""


class WorkspaceSettings(ConfigModel):
    """``[insights.workspaces.<name>]``: what differs for one workspace (e.g. its own
    ``[insights.workspaces.acme.reports] github_repository``); a table given replaces the
    ``[insights]`` one of that name whole, one left out is shared."""

    helpscout: HelpScoutSettings | None = None
    classifier: ClassifierSettings | None = None
    reports: ReportsSettings | None = None


class InsightsSettings(ConfigModel):
    """``[insights]``: the conversation store and the Help Scout connection."""

    database: Secret | None = None
    """A SQLAlchemy URL (``postgresql://…`` in production); default: ``insights.db``, SQLite, in
    the data directory (``$DESKSIDE_DATA_DIR``, else the platform's user data directory)."""
    encryption_key: Secret | None = None
    """Encrypts OAuth tokens and webhook secrets at rest: a Fernet key
    (``deskside connect`` prints how to make one). Without it, no token is stored."""
    worker: bool = True
    """Process stored webhook events inside each ``deskside serve`` process; ``false``: run
    ``deskside worker`` separately."""
    worker_attempts: int = Field(default=8, ge=1, le=100)
    """A webhook event that fails this many times is parked with its error, not retried."""
    keep_days: int | None = Field(default=None, ge=1, le=36_500)
    """Retention: conversations that changed last more than this many days ago are purged
    daily (with their threads, labels, topic memberships and agents' corrections), and so are
    webhook deliveries received before then and customers left without a conversation.
    Unset: kept until Help Scout deletes them or someone is erased."""
    helpscout: HelpScoutSettings = HelpScoutSettings()
    classifier: ClassifierSettings = ClassifierSettings()
    reports: ReportsSettings = ReportsSettings()
    workspaces: dict[str, WorkspaceSettings] = {}
    """Settings of single workspaces (added with ``deskside workspaces add``), by name."""

    def of_workspace(self, name: str) -> InsightsSettings:
        """These settings as workspace ``name`` sees them: its own tables where it has any."""
        own = self.workspaces.get(name)
        if own is None:
            return self
        tables = ("helpscout", "classifier", "reports")
        return self.model_copy(
            update={table: getattr(own, table) for table in tables if getattr(own, table)}
        )

    @field_validator("database")
    @classmethod
    def _async_driver(cls, url: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if url is None:
            return None
        from deskside.sources.sql import async_url

        return SecretStr(async_url(url.get_secret_value(), (info.context or {}).get("base_dir")))
