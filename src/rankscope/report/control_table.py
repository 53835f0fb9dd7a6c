"""The intruder control's table: gain and forgetting when the intruders are scaled down, beside a
uniform shrink of the update by the same norm (rankscope.analysis.intruder_control).

If intruders cause forgetting (Shuttleworth et al. 2024), scaling them down should recover far-set
scores and generic-text NLL faster than the uniform shrink that removes as much weight change;
if both move alike, the intruders are no more to blame than any other part of the update. Gain
is the in-domain primary score minus the base arm's, forgetting the base's minus the arm's on far
sets, nll_delta the generic-text NLL minus the base's. Torch-free: reads intruder_control.csv and
results.csv.
"""

from __future__ import annotations

from collections import defaultdict

from rankscope.report.tables import Table, arm_keys
from rankscope.runstore.analysis_files import read_control
from rankscope.runstore.reader import RunStore


def _base_scores(store: RunStore) -> tuple[dict[tuple[str, str], float], float | None]:
    """The base arm's (dataset, metric) -> value, and its generic-text nll."""
    scores, nll = {}, None
    for row in store.results:
        if row.method == "base" and row.value is not None:
            scores[(row.dataset, row.metric)] = row.value
            if row.metric == "nll":
                nll = row.value
    return scores, nll


def control_table(store: RunStore) -> Table | None:
    rows_in = read_control(store.path)
    if not rows_in:
        return None
    base, base_nll = _base_scores(store)
    relation = {(r.arm_id, r.dataset): r.relation for r in store.results if r.relation}
    keys = arm_keys(store)
    grouped: dict[tuple[str, str, float], dict[tuple[str, str], float]] = defaultdict(dict)
    for r in rows_in:
        grouped[(r.arm_id, r.variant, r.lam)][(r.dataset, r.metric)] = r.value
    rows = []
    order = {"intruder": 0, "uniform": 1}
    for (arm, variant, lam), values in sorted(grouped.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 2),
                                                                              -kv[0][2])):
        gains, losses = [], []
        for (dataset, metric), value in values.items():
            rel = relation.get((arm, dataset))
            if (dataset, metric) not in base or rel not in ("in", "far"):
                continue
            (gains if rel == "in" else losses).append(
                f"{dataset} {100 * (value - base[(dataset, metric)]):+.1f}" if rel == "in"
                else f"{dataset} {100 * (base[(dataset, metric)] - value):+.1f}")
        nll = values.get(("generic_text", "nll"))
        removed = values.get(("weights", "removed_frobenius"))
        update = values.get(("weights", "update_frobenius"))
        rows.append([keys[arm].label if arm in keys else arm, variant, f"{lam:g}",
                     f"{values.get(('weights', 'modules_with_intruders'), 0):.0f}",
                     f"{100 * removed / update:.1f}" if removed is not None and update else "—",
                     "; ".join(gains) or "—", "; ".join(losses) or "—",
                     f"{nll - base_nll:+.4f}" if nll is not None and base_nll is not None else "—"])
    return Table("Intruder control: intruders scaled by λ vs a uniform shrink of the same norm",
                 ["arm", "variant", "λ", "modules with intruders", "removed ||ΔW||_F (% of the update's)",
                  "gain in-domain (pp vs base)", "forgetting on far sets (pp vs base)", "nll_delta (nats)"], rows,
                 "intruder: W_ft - (1-λ) C_I (C_I: the intruder part of W_ft); uniform: W_0 + c dW removing the same "
                 "Frobenius norm per module (rankscope.analysis.intruder_control). λ=1 is the arm itself. If intruders "
                 "caused forgetting, the intruder rows would recover far scores and NLL faster than the uniform rows. "
                 "One seed, unpaired point estimates: read differences below a few points as noise.")


__all__ = ["control_table"]
