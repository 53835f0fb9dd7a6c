"""Run the intruder control on one trained arm: edit, evaluate, undo (rankscope.analysis.intruder_control).

For every lambda < 1 and both variants (intruder scaled, uniform shrink of the same norm) the arm
is scored on its own evaluation sets exactly as the arm was (same scorer, precision, sets);
lambda = 1 is the arm's own evaluation. When no module has an intruder, every edit is the arm
itself and nothing is re-evaluated (the weights rows say so).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from rankscope.analysis.base_cache import BaseWeightCache
from rankscope.analysis.intruder_control import LAMBDAS, VARIANTS, EditStats, intruder_parts, intruders_scaled
from rankscope.runstore.analysis_rows import ControlRow


def score_rows(arm_id: str, variant: str, lam: float, payload: dict) -> list[ControlRow]:
    """Each set's primary metric and the generic-text NLL from an eval.json payload."""
    rows = []
    for name, scores in payload.get("datasets", {}).items():
        metric = scores.get("primary_metric", "accuracy")
        value = scores["metrics"].get(metric) or scores["metrics"]["accuracy"]
        rows.append(ControlRow(arm_id, variant, lam, name, metric, float(value["value"]), int(value["n"])))
    nll = payload.get("nll")
    if nll:
        rows.append(ControlRow(arm_id, variant, lam, "generic_text", "nll", float(nll["metric"]["value"]),
                               int(nll["metric"]["n"])))
    return rows


def _weight_rows(arm_id: str, variant: str, lam: float, stats: EditStats) -> list[ControlRow]:
    return [ControlRow(arm_id, variant, lam, "weights", metric, float(value), 0) for metric, value in
            (("modules_with_intruders", stats.modules_with_intruders), ("removed_frobenius", stats.removed_frobenius),
             ("update_frobenius", stats.update_frobenius), ("clipped", stats.clipped))]


def intruder_control(arm_id: str, model: nn.Module, cache: BaseWeightCache, own: dict,
                     evaluate: Callable[[nn.Module], dict], k: int, threshold: float) -> list[ControlRow]:
    """Rows for every (variant, lambda); ``own`` is the arm's eval.json payload (lambda = 1)."""
    parts = intruder_parts(model, cache, k, threshold)
    rows: list[ControlRow] = []
    for variant in VARIANTS:
        for lam in LAMBDAS:
            with intruders_scaled(parts, lam, variant) as stats:
                rows += _weight_rows(arm_id, variant, lam, stats)
                identity = lam == 1.0 or not parts
                rows += score_rows(arm_id, variant, lam, own if identity else evaluate(model))
    return rows


__all__ = ["intruder_control", "score_rows"]
