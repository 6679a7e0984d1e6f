"""Helpdesk protocols: one module per helpdesk, one :class:`Protocol` interface."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from deskside.protocols.base import Decline, HelpdeskConfig, Protocol, RawRequest
from deskside.protocols.generic import Generic, GenericConfig
from deskside.protocols.helper import Helper, HelperConfig
from deskside.protocols.helpscout import HelpScout, HelpScoutConfig
from deskside.protocols.plain import Plain, PlainConfig
from deskside.protocols.therethere import ThereThere, ThereThereConfig

__all__ = [
    "PROTOCOLS",
    "AnyHelpdeskConfig",
    "Decline",
    "HelpdeskConfig",
    "Protocol",
    "RawRequest",
    "build_protocol",
]

AnyHelpdeskConfig = Annotated[
    HelpScoutConfig | ThereThereConfig | HelperConfig | PlainConfig | GenericConfig,
    Field(discriminator="kind"),
]

PROTOCOLS: dict[type[HelpdeskConfig], type[Protocol]] = {
    HelpScoutConfig: HelpScout,
    ThereThereConfig: ThereThere,
    HelperConfig: Helper,
    PlainConfig: Plain,
    GenericConfig: Generic,
}


def build_protocol(name: str, config: HelpdeskConfig) -> Protocol:
    """The protocol ``config`` (the table ``[helpdesks.NAME]``) sets up."""
    return PROTOCOLS[type(config)](name, config)
