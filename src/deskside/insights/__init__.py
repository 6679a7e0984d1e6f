"""Conversations in: the Help Scout connection, the webhook inbox, the store they fill.

Importing this package loads nothing heavy; the modules that need scikit-learn, SciPy, alembic
or lxml are imported only by a server or command that uses insights.
"""

__all__ = ["DEFAULT_WORKSPACE", "HELPSCOUT_WEBHOOK_PATH"]

DEFAULT_WORKSPACE = "default"
"""The workspace every instance has: its data is in the database ``[insights] database``
names, which also holds the people and the list of the other workspaces."""

HELPSCOUT_WEBHOOK_PATH = "/webhooks/helpscout"
"""Where the server takes Help Scout's webhooks (with an ``[insights]`` table)."""
