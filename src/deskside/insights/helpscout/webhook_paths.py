"""Where Help Scout sends a workspace's webhooks on a deskside server: the one answer the Setup
and Help Scout pages and the commands that print or register the address share.

Light on purpose (no imports beyond :mod:`deskside.insights`): the web UI and the command line
both import it.
"""

from __future__ import annotations

from deskside.insights import DEFAULT_WORKSPACE, HELPSCOUT_WEBHOOK_PATH

__all__ = ["webhook_path"]


def webhook_path(workspace: str) -> str:
    """The server's path for Help Scout's webhooks to ``workspace``: ``/webhooks/helpscout``
    for the default workspace, ``/webhooks/helpscout/NAME`` for another."""
    if workspace == DEFAULT_WORKSPACE:
        return HELPSCOUT_WEBHOOK_PATH
    return f"{HELPSCOUT_WEBHOOK_PATH}/{workspace}"
