"""Rank needed vs training-set size: the knee of every size of an ``n_train`` list, side by side.

Schulman et al. 2025 ("LoRA Without Regret") argue that the rank an adapter needs grows with the
information in the training data; a sweep over ``data.train[].n_train: [a, b, ...]`` trains every
arm at each size (nested samples of one pool, tested on the same items: rankscope.config.datasets),
and this table lists the recommended rank (the knee: rankscope.verdicts.recommend) per size, the
points of a "rank needed vs dataset size" plot. An undecided knee is shown as such.
Torch-free: reads the run's config and its recommendations.
"""

from __future__ import annotations

from pydantic import ValidationError

from rankscope.config import DataSpec
from rankscope.report.tables import Table
from rankscope.runstore.reader import RunStore
from rankscope.verdicts.recommend import Recommendation


def size_table(store: RunStore, recommendations: list[Recommendation]) -> Table | None:
    """One row per size of every training set swept over ``n_train``; None when none was."""
    try:
        data = DataSpec.model_validate((store.config or {}).get("data") or {})
    except ValidationError:
        return None  # the config is checked where it is loaded; a report still renders without this table
    sized = sorted((s for s in data.train if s.sample_of is not None), key=lambda s: (s.sample_of, s.n_train or 0))
    if not sized:
        return None
    by_set = {rec.train_set: rec for rec in recommendations}
    rows = []
    for spec in sized:
        rec = by_set.get(spec.name)
        if rec is None:
            knee = "not run"
        elif rec.decided:
            knee = f"r{rec.rank}"
        else:
            knee = "undecided"
        rows.append([spec.sample_of, str(spec.n_train), spec.name, knee])
    return Table("Rank needed vs training-set size", ["set", "training rows", "trained on", "recommended rank (knee)"],
                 rows, "one training set per size of data.train[].n_train: nested seeded samples of one pool, "
                       "validated and tested on the same items; the knee is each size's recommended rank under "
                       "the rule above (undecided: the data decide neither way)")


__all__ = ["size_table"]
