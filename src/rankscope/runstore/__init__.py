"""The run directory's contract (docs/run-store.md), below everything that trains, scores or reports.

- :mod:`~rankscope.runstore.arms` — one arm's stored settings (``ArmPlan``, ``arm.json``);
- :mod:`~rankscope.runstore.writer` — ``RunWriter``: arm folders, ``eval.json``, ``results.csv``
  (the sweep driver and ``rankscope eval`` are its only users);
- :mod:`~rankscope.runstore.analysis_rows` / :mod:`~rankscope.runstore.analysis_files` — the
  ``analysis/`` tables and tensors;
- :mod:`~rankscope.runstore.reader` — a whole run directory as typed records (the report's input).

No module here imports torch, so a copied run directory can be read anywhere
(docs/architecture.md).
"""
