"""Conversations into the store: Help Scout's documents turned into rows (:mod:`.normalise`),
written as changes that never go back in time (:mod:`.changes`), imported in bulk
(:mod:`.backfill`) and kept current from the webhook inbox (:mod:`.worker`).

Importing this package loads nothing; each module loads what it needs.
"""
