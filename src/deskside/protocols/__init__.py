"""The built-in helpdesks, one module each, and the interface they implement.

Every module here but ``base`` is a helpdesk (see :mod:`deskside.helpdesks` for the contract
and how third-party packages add more); nothing outside a helpdesk's module knows its kind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Union

from pydantic import Field

from deskside.helpdesks import protocol_classes
from deskside.protocols.base import Decline, HelpdeskConfig, Protocol, RawRequest

__all__ = [
    "PROTOCOLS",
    "AnyHelpdeskConfig",
    "Decline",
    "HelpdeskConfig",
    "Protocol",
    "RawRequest",
    "build_protocol",
]

PROTOCOLS: dict[type[HelpdeskConfig], type[Protocol]] = {
    protocol.config_model: protocol for protocol in protocol_classes().values()
}
"""Every registered helpdesk: its config model → its Protocol class."""

if TYPE_CHECKING:
    AnyHelpdeskConfig = HelpdeskConfig
else:  # the union of every registered helpdesk's table, told apart by `kind`
    AnyHelpdeskConfig = Annotated[Union[tuple(PROTOCOLS)], Field(discriminator="kind")]  # noqa: UP007


def build_protocol(name: str, config: HelpdeskConfig) -> Protocol:
    """The protocol ``config`` (the table ``[helpdesks.NAME]``) sets up."""
    return PROTOCOLS[type(config)](name, config)
