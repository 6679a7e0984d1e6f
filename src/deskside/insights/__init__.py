"""Conversations in: the Help Scout connection, the webhook inbox, the store they fill.

Importing this package loads nothing heavy; the modules that need scikit-learn, SciPy, alembic
or lxml are imported only by a server or command that uses insights.
"""

__all__ = ["HELPSCOUT_WEBHOOK_PATH"]

HELPSCOUT_WEBHOOK_PATH = "/webhooks/helpscout"
"""Where the server takes Help Scout's webhooks (with an ``[insights]`` table)."""
