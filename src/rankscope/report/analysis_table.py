"""One table of the inside-the-network numbers per arm, so the trend with rank reads at a glance:
the weight update's robust ranks (energy ranks, dtype-aware numerical rank) and intruder dimensions (Shuttleworth et al. 2024), the
representation drift (1 - linear CKA vs base, Kornblith et al. 2019) and the attention-entropy
change vs base. The figures show the same numbers per layer and head."""

from __future__ import annotations

from collections import defaultdict

from rankscope.runstore.reader import AnalysisRow, RunStore
from rankscope.report.tables import ARM_COLUMNS, Table, arm_cells, arm_keys


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _by_arm(rows: list[AnalysisRow], metric: str) -> dict[str, list[float]]:
    grouped: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.metric == metric:
            grouped[row.arm_id].append(row.value)
    return grouped


def _entropy_change(store: RunStore) -> dict[str, list[float]]:
    """|arm - base| attention entropy per (layer, head); from the stored change when present."""
    stored = _by_arm(store.attention, "entropy_change")
    if stored:
        return {arm: [abs(v) for v in values] for arm, values in stored.items()}
    entropy = [r for r in store.attention if r.metric == "entropy"]
    base_ids = {a.arm_id for a in store.arms.values() if a.method == "base"}
    base = {(r.layer, r.head): r.value for r in entropy if r.arm_id in base_ids}
    out: dict[str, list[float]] = defaultdict(list)
    for r in entropy:
        if (r.layer, r.head) in base:
            out[r.arm_id].append(abs(r.value - base[(r.layer, r.head)]))
    return out


def analysis_summary_table(store: RunStore) -> Table | None:
    if not (store.spectral or store.representation or store.attention):
        return None
    keys = arm_keys(store)
    energy90 = _by_arm(store.spectral, "energy_rank_90")
    energy99 = _by_arm(store.spectral, "energy_rank_99")
    numerical = _by_arm(store.spectral, "numerical_rank_dtype") or _by_arm(store.spectral, "numerical_rank")
    numerical_name = "numerical_rank_dtype" if _by_arm(store.spectral, "numerical_rank_dtype") else "numerical_rank"
    intruders = _by_arm(store.spectral, "intruder_dimensions")
    cka = _by_arm(store.representation, "cka")
    entropy = _entropy_change(store)

    matrices = _by_arm(store.spectral, "frobenius_norm")  # every analysed matrix has one

    def cell(values: dict[str, list[float]], arm: str, fmt: str, transform=lambda v: v) -> str:
        mean = _mean(values.get(arm, []))
        if mean is None:
            return "—"
        text = format(transform(mean), fmt)
        have, total = len(values.get(arm, [])), len(matrices.get(arm, []))
        return f"{text} ({have}/{total})" if values is not intruders and 0 < have < total else text

    arms = sorted((a for a in keys), key=lambda a: (keys[a].order, a))
    rows = [[*arm_cells(keys[a]), cell(energy90, a, ".1f"), cell(energy99, a, ".1f"), cell(numerical, a, ".0f"),
             f"{max(numerical[a]):.0f}" if numerical.get(a) else "—",
             cell(intruders, a, ".2f"), cell(cka, a, ".4f", lambda v: 1 - v), cell(entropy, a, ".4f")]
            for a in arms]
    return Table("Inside the network (mean over layers and modules / heads)",
                 [*ARM_COLUMNS, "energy rank 90% of dW", "energy rank 99% of dW", "numerical rank of dW",
                  "max numerical rank", "intruder dimensions", "drift 1 - CKA",
                  "|attention entropy change| (nats)"], rows,
                 "energy rank: directions holding 90% / 99% of ||dW||_F^2 (robust to rounding noise; "
                 "(n/N): mean over the n of N matrices whose computed top singular values determine it); "
                 "numerical rank: "
                 + ("singular values above the expected rounding error of the training dtype "
                    "(Numerical Recipes' eps/2 sqrt(m+n+1)); " if numerical_name == "numerical_rank_dtype"
                    else "singular values above max(m, n) eps(float32) s_1; ") +
                 "intruders: top-10 singular vectors of W_ft with max |cos| < 0.5 to every base one "
                 "(Shuttleworth et al. 2024); CKA: linear CKA of hidden states vs base (Kornblith et al. 2019)")
