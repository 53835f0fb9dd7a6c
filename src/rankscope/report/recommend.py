"""The recommended LoRA rank, as the report shows it.

The rule itself (a paired non-inferiority test with the margins of ``recommend:`` in the config)
lives in :mod:`rankscope.verdicts.recommend`, next to the comparisons it reads, so the sweep and
the report give the same answer; the report attaches one recommendation per training set to its
view (rankscope.runstore.reader loads them with the run).
"""

from __future__ import annotations

import dataclasses

from rankscope.report.tables import View
from rankscope.verdicts.recommend import Recommendation, rule_text
from rankscope.verdicts.settings import RuleSettings

RULE = rule_text(RuleSettings())  # the rule with the default margins


def recommend(view: View) -> Recommendation:
    """The view's recommendation, with ``label`` set to the report's name for the chosen arm."""
    rec = view.recommendation
    if rec is None:
        return Recommendation(None, RULE, "No paired comparisons exist for this training set (no item records).",
                              False, view.train_set)
    if rec.decided:
        for g in view.groups:
            if view.group_name(g) == rec.label:
                return dataclasses.replace(rec, label=g.label)
    return rec
