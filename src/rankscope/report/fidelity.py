"""Report sections that say whether the evaluation measured skill: generations cut off at the
token limit (metric ``truncated``) and the generic-text NLL per arm (``nll``, ``nll_delta``).

Kept apart from the main tables (report/tables.py) on purpose: these read their own metrics
from results.csv and add one table each, whatever the main tables show.
"""

from __future__ import annotations

from rankscope.runstore.reader import ResultRow, RunStore
from rankscope.report.tables import ARM_COLUMNS, Table, rate_text

#: Above this share of cut-off generations a set's accuracy measures length, not skill.
TRUNCATED_WARN = 0.05


def _arm_cells(row: ResultRow) -> list[str]:
    """The arm's name, learning rate and alpha (report.tables.ARM_COLUMNS)."""
    label = row.method if row.rank is None else f"{row.method} r={row.rank}"
    label += f" (seed {row.seed})" if row.seed not in (None, 0) else ""
    return [label, rate_text(row.lr), "—" if row.alpha is None else f"{row.alpha:g}"]


def _unique(rows: list[ResultRow]) -> list[ResultRow]:
    """One row per (arm, dataset, metric): the base arm is repeated once per training set."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for row in rows:
        key = (row.arm_id, row.dataset, row.metric)
        if key not in seen and row.value is not None:
            seen.add(key)
            out.append(row)
    return out


def truncation_table(store: RunStore, warn: float = TRUNCATED_WARN) -> Table | None:
    """Share of each arm's generations per set that hit ``max_new_tokens`` without an end token."""
    rows = _unique([r for r in store.results if r.metric == "truncated"])
    if not rows:
        return None
    cells = []
    flagged = 0
    for row in rows:
        over = row.value > warn
        flagged += over
        stderr = f" ± {100 * row.stderr:.1f}" if row.stderr is not None else ""
        cells.append([*_arm_cells(row), row.dataset, f"{100 * row.value:.1f}{stderr}", str(row.n or "—"),
                      "⚠ answers cut off: raise the set's max_new_tokens" if over else ""])
    note = (f"Generations that reached the token limit without an end token; above {100 * warn:.0f}% "
            "the accuracy of that set is partly a measure of length, not of skill.")
    if flagged:
        note = f"⚠ {flagged} arm/set pair(s) above {100 * warn:.0f}%. " + note
    return Table("Truncated generations", [*ARM_COLUMNS, "dataset", "truncated (%)", "n", "warning"], cells, note)


def nll_table(store: RunStore) -> Table | None:
    """Mean per-token NLL of the generic text per arm, and its change vs the base model."""
    rows = _unique([r for r in store.results if r.metric in {"nll", "nll_delta"}])
    if not rows:
        return None
    by_arm: dict[str, dict[str, ResultRow]] = {}
    for row in rows:
        by_arm.setdefault(row.arm_id, {})[row.metric] = row
    cells = []
    for metrics in by_arm.values():
        nll, delta = metrics.get("nll"), metrics.get("nll_delta")
        first = nll or delta
        cells.append([
            *_arm_cells(first),
            f"{nll.value:.4f}" if nll else "—",
            f"{delta.value:+.4f} ± {delta.stderr or 0.0:.4f}" if delta else "—",
            str(first.n or "—"),
        ])
    return Table("Forgetting on generic text", [*ARM_COLUMNS, "NLL (nats/token)", "Δ vs base", "tokens"], cells,
                 "Mean negative log-likelihood per token of a fixed generic-text sample; Δ = arm − base "
                 "(positive = the arm forgot some language modelling; ± = stderr over paired text chunks).")
