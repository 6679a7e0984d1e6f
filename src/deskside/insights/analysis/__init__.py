"""What the conversations say: the customer's own words (:mod:`.customer_text`), the labels
(:mod:`.labels`) a classifier gives (:mod:`.classify`, or a language model, :mod:`.llm`), the
topics they are grouped into (:mod:`.topics`), people's merges (:mod:`.merges`), the process
that keeps all of it current (:mod:`.engine`, with :mod:`.labelling` and :mod:`.grouping`),
what the dashboards read (:mod:`.queries`) and the ``deskside classify`` commands (:mod:`.cli`).

Importing this package loads nothing; the modules that need scikit-learn or SciPy load it.
"""
