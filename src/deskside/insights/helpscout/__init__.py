"""Help Scout, as the insights side talks to it: the Mailbox API client (:mod:`.client`) over
an OAuth session that keeps its tokens encrypted and renewed (:mod:`.session`), what a
connection is (:mod:`.connection`), the browser's authorisation (:mod:`.authorize`; its routes
are the web UI's, :mod:`deskside.web.helpscout_oauth`), the webhook inbox (:mod:`.inbox`), the
Docs API's article titles (:mod:`.docs`) and the ``connect helpscout``, ``disconnect
helpscout``, ``mailboxes`` and ``import`` commands (:mod:`.cli`).

Importing this package loads nothing; each module loads what it needs.
"""
