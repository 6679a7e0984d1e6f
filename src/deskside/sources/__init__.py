"""Sources: where customer data lives. One module per kind, one :class:`Source` interface."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from deskside.sources.base import Record, Source, SourceConfig
from deskside.sources.http import HttpSource, HttpSourceConfig
from deskside.sources.python import PythonSource, PythonSourceConfig
from deskside.sources.sql import SqlSource, SqlSourceConfig
from deskside.sources.stripe import StripeSource, StripeSourceConfig

__all__ = ["AnySourceConfig", "Record", "Source", "SourceConfig", "build_source"]

AnySourceConfig = Annotated[
    SqlSourceConfig | HttpSourceConfig | StripeSourceConfig | PythonSourceConfig,
    Field(discriminator="kind"),
]

_SOURCES: dict[type[SourceConfig], type[Source]] = {
    SqlSourceConfig: SqlSource,
    HttpSourceConfig: HttpSource,
    StripeSourceConfig: StripeSource,
    PythonSourceConfig: PythonSource,
}


def build_source(name: str, config: SourceConfig) -> Source:
    """The source ``config`` describes, named ``name``."""
    return _SOURCES[type(config)](name, config)
