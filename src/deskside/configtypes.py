"""Building blocks shared by every part of the config: strict tables and secret references."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    SecretStr,
    ValidationInfo,
)

__all__ = ["ConfigModel", "Secret", "SecretList", "resolve_secret"]


class ConfigModel(BaseModel):
    """A config table: unknown keys are errors (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def resolve_secret(value: Any, info: ValidationInfo) -> Any:
    """Resolve ``env:NAME`` and ``file:PATH`` references; other strings are taken literally.

    ``file:`` paths are relative to the config file's folder; the file's content is stripped.
    """
    if not isinstance(value, str):
        return value
    if value.startswith("env:"):
        name = value[4:]
        if name not in os.environ:
            raise ValueError(
                f"environment variable {name} is not set: export {name}=… before starting, "
                "or use file:/path/to/secret"
            )
        return os.environ[name]
    if value.startswith("file:"):
        base = (info.context or {}).get("base_dir", Path.cwd())
        path = Path(base) / Path(value[5:]).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
    return value


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _not_empty(value: SecretStr) -> SecretStr:
    if not value.get_secret_value().strip():
        raise ValueError("the secret is empty: set it to the value configured in the helpdesk")
    return value


Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]
"""A string that may come from the environment or a file and is never printed."""

SecretList = Annotated[
    list[Annotated[SecretStr, BeforeValidator(resolve_secret), AfterValidator(_not_empty)]],
    BeforeValidator(_one_or_many),
]
"""One secret, or several during a rotation; any of them verifies a request."""
