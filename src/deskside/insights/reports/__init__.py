"""Bug and feature topics as something to act on: a report per topic (:mod:`.report`), the
customers' plans and revenue from the sidebar's sources (:mod:`.facts`), Markdown, CSV and
JSON (:mod:`.formats`), GitHub issues (:mod:`.github`) and ``deskside report`` (:mod:`.cli`).

Importing this package loads nothing; each module loads what it needs.
"""
