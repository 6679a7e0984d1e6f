"""Conversations in: the Help Scout connection, the webhook inbox, the store they fill, and what
is learnt from them.

- :mod:`.helpscout`: the Mailbox API client, authorisation, the webhook inbox, ``connect``;
- :mod:`.ingest`: documents into rows, written in order, imported in bulk, kept current;
- :mod:`.privacy`: erasure, tombstones, retention, ``erase`` / ``purge``;
- :mod:`.analysis`: labels, topics, people's merges, the pass that keeps them current;
- :mod:`.reports`: a report per bug or feature topic, as text or GitHub issues;
- here: the store (:mod:`.store`, :mod:`.models`, its alembic ``migrations``), the settings,
  encryption (:mod:`.crypto`), workspaces, people, the audit, the service a server runs
  (:mod:`.service`) and the commands every insights command shares (:mod:`.cli`).

The insights side never imports the web UI or the demo: the web UI's routes for it live in
:mod:`deskside.web`, and it reaches the sidebar's sources only through an answer function it
is handed (:class:`~deskside.insights.reports.facts.CustomerFacts`).

Importing this package loads nothing heavy; the modules that need scikit-learn, SciPy, alembic
or lxml are imported only by a server or command that uses insights.
"""

__all__ = ["DEFAULT_WORKSPACE", "HELPSCOUT_WEBHOOK_PATH"]

DEFAULT_WORKSPACE = "default"
"""The workspace every instance has: its data is in the database ``[insights] database``
names, which also holds the people and the list of the other workspaces."""

HELPSCOUT_WEBHOOK_PATH = "/webhooks/helpscout"
"""Where the server takes Help Scout's webhooks (with an ``[insights]`` table)."""
