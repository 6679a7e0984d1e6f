"""Forgetting customers: erasure on request (:mod:`.erasure`), the tombstones that keep erased
conversations from coming back (:mod:`.erased`), the retention period and disconnecting Help
Scout with its data (:mod:`.retention`), and the ``deskside forget`` / ``erasures`` commands
(:mod:`.cli`).

Importing this package loads nothing; each module loads what it needs.
"""
