"""The report's truncated-generations and generic-text NLL sections."""

from __future__ import annotations

import csv

from fixtures_report import build_run_store
from rankscope.report.build import write_report
from rankscope.report.fidelity import TRUNCATED_WARN, nll_table, truncation_table
from rankscope.runstore.reader import load_run


def _append(run_dir, rows):
    path = run_dir / "results.csv"
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields, existing = reader.fieldnames, list(reader)
    arms = {r["arm_id"]: r for r in existing}
    extra = []
    for arm_id, dataset, metric, value, stderr in rows:
        base = arms[arm_id]
        extra.append({**{k: base[k] for k in ("arm_id", "method", "rank", "alpha", "seed", "train_set")},
                      "dataset": dataset, "kind": "reasoning", "domain": "in", "format": "generative",
                      "metric": metric, "value": value, "n": 20, "stderr": stderr, "status": "done"})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(existing + extra)


def test_truncation_warns_above_the_threshold_and_nll_shows_delta(tmp_path):
    run_dir = build_run_store(tmp_path / "run", analysis=False)
    store = load_run(run_dir)
    assert truncation_table(store) is None and nll_table(store) is None  # old runs: no section
    arm_ids = list(dict.fromkeys(r.arm_id for r in store.results))
    high, low = TRUNCATED_WARN + 0.2, TRUNCATED_WARN / 2
    _append(run_dir, [(arm_ids[0], "gsm8k<b>", "truncated", low, 0.01),
                      (arm_ids[1], "gsm8k<b>", "truncated", high, 0.05),
                      (arm_ids[0], "generic_text", "nll", 2.5, 0.1), (arm_ids[0], "generic_text", "nll_delta", 0.0, 0.0),
                      (arm_ids[1], "generic_text", "nll", 2.75, 0.1),
                      (arm_ids[1], "generic_text", "nll_delta", 0.25, 0.02)])
    store = load_run(run_dir)
    table = truncation_table(store)
    warned = [row for row in table.rows if row[-1]]
    assert len(table.rows) == 2 and len(warned) == 1 and warned[0][4].startswith(f"{100 * high:.1f}")
    assert table.note.startswith("⚠ 1 ")
    nll = nll_table(store)
    assert [row[4] for row in nll.rows] == ["+0.0000 ± 0.0000", "+0.2500 ± 0.0200"]
    html = write_report(run_dir).read_text(encoding="utf-8")
    assert "Truncated generations" in html and "Forgetting on generic text" in html
    assert "gsm8k<b>" not in html and "gsm8k&lt;b&gt;" in html  # escaped like every other cell
