"""Intruder dimensions over a (k, epsilon) grid beside their null (Shuttleworth et al. 2024).

Per arm and epsilon: the mean count over modules among ``W_ft``'s top ``k`` left singular vectors
(``k`` the largest of the grid) and, in brackets, the count expected of ``k`` uniformly random unit
directions (``k`` times the module's null rate, averaged over modules;
``rankscope.analysis.intruder_null``). A count near its null says the top directions are no more
aligned with the base than random ones; a count far below it says most are pre-existing
directions. ``intruder_energy_share`` is the share of ``||dW||_F^2`` along the intruders at the
configured (k, epsilon). Torch-free: it reads analysis/spectral.csv only.
"""

from __future__ import annotations

import re
from collections import defaultdict

from rankscope.report.tables import Table, arm_keys
from rankscope.runstore.reader import RunStore

_GRID = re.compile(r"^intruders_k(\d+)_eps([0-9.eE+-]+)$")
_NULL = re.compile(r"^intruder_null_eps([0-9.eE+-]+)$")


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def intruder_grid_table(store: RunStore) -> Table | None:
    """The grid at the largest k, with the null per epsilon; None when the run has no grid rows."""
    counts: dict[tuple[str, int, float], list[float]] = defaultdict(list)
    nulls: dict[tuple[str, float], list[float]] = defaultdict(list)
    share: dict[str, list[float]] = defaultdict(list)
    for row in store.spectral:
        if match := _GRID.match(row.metric):
            counts[(row.arm_id, int(match.group(1)), float(match.group(2)))].append(row.value)
        elif match := _NULL.match(row.metric):
            nulls[(row.arm_id, float(match.group(1)))].append(row.value)
        elif row.metric == "intruder_energy_share":
            share[row.arm_id].append(row.value)
    if not counts:
        return None
    k = max(key[1] for key in counts)
    eps_grid = sorted({key[2] for key in counts if key[1] == k})
    keys = arm_keys(store)
    arms = sorted({key[0] for key in counts if key[0] in keys}, key=lambda a: (keys[a].order, a))
    rows = []
    for arm in arms:
        row = [keys[arm].label]
        for eps in eps_grid:
            mean = _mean(counts.get((arm, k, eps), []))
            null = _mean(nulls.get((arm, eps), []))
            text = "—" if mean is None else f"{mean:.2f}"
            row.append(text + (f" ({k * null:.2f})" if null is not None else ""))
        energy = _mean(share.get(arm, []))
        row.append("—" if energy is None else f"{100 * energy:.1f}")
        rows.append(row)
    null_row = ["null: random directions"]
    for eps in eps_grid:
        values = [v for (arm, e), vs in nulls.items() if e == eps for v in vs]
        null_row.append("—" if not values else f"{k * sum(values) / len(values):.2f}")
    rows.append(null_row + ["—"])
    return Table(f"Intruder dimensions against a null (top k={k} directions per module)",
                 ["arm", *[f"ε={eps:g}: count (null)" for eps in eps_grid], "update energy on intruders (%)"], rows,
                 "count: mean over modules of W_ft's top-k left singular vectors whose largest |cos| with the "
                 "base's vectors is below ε (Shuttleworth et al. 2024 report k=10, ε=0.5 alone); (null): the count "
                 "expected of k uniformly random unit directions against the same base vectors (seeded simulation, "
                 "rankscope.analysis.intruder_null). A count at its null means the top directions are as unaligned "
                 "as random ones. Energy on intruders: ||U_I^T dW||_F^2 / ||dW||_F^2 at the configured k and ε.")


__all__ = ["intruder_grid_table"]
