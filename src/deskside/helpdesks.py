"""The helpdesk kinds deskside answers, and how each one signs its requests.

Light on purpose: the command line lists the kinds and signs requests (``deskside sign``)
without loading the protocols, which bring FastAPI, the renderers and the sources. The
protocol classes (:data:`deskside.protocols.PROTOCOLS`) are the reference; a test checks that
this table names each of them, in the same order, with the same scheme and header.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from deskside.signing import Scheme

__all__ = ["HELPDESKS", "Helpdesk"]


@dataclass(frozen=True)
class Helpdesk:
    """A helpdesk kind (the ``kind`` of a ``[helpdesks.NAME]`` table) and its signature."""

    kind: str
    scheme: Scheme
    signature_header: str
    """The header the signature travels in (lower-case); Helper's is ``Bearer …``."""


HELPDESKS: Mapping[str, Helpdesk] = {
    helpdesk.kind: helpdesk
    for helpdesk in (
        Helpdesk("helpscout", Scheme.SHA1_BASE64, "x-helpscout-signature"),
        Helpdesk("therethere", Scheme.SHA256_HEX, "x-there-there-signature"),
        Helpdesk("helper", Scheme.SHA256_BASE64, "authorization"),
        Helpdesk("plain", Scheme.SHA256_HEX, "plain-request-signature"),
        Helpdesk("card", Scheme.SHA256_HEX, "x-deskside-signature"),
    )
}
"""Every kind, in the order :data:`deskside.protocols.PROTOCOLS` lists them."""
