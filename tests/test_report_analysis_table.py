"""The inside-the-network table: per-arm means of the stored analysis rows."""

from __future__ import annotations

import pytest
from fixtures_report import build_run_store

from rankscope.report.analysis_table import analysis_summary_table
from rankscope.runstore.reader import load_run


def test_means_per_arm_match_the_stored_rows(tmp_path):
    store = load_run(build_run_store(tmp_path / "run"))
    table = analysis_summary_table(store)
    assert table is not None
    by_label = {row[0]: row for row in table.rows}
    assert {"base", "sft", "lora r1", "lora r8"} <= set(by_label)
    column = table.columns.index("drift 1 - CKA")
    for label, row in by_label.items():
        arm = next(a for a in store.arms.values() if (a.method if a.method != "lora" else f"lora r{a.rank}") == label)
        cka = [r.value for r in store.representation if r.arm_id == arm.arm_id and r.metric == "cka"]
        if not cka:
            assert row[column] == "—"
            continue
        assert float(row[column]) == pytest.approx(1 - sum(cka) / len(cka), abs=1e-4)
    intruders = table.columns.index("intruder dimensions")
    assert float(by_label["lora r8"][intruders]) == pytest.approx(3.0)
    assert by_label["base"][intruders] == "—"  # the base arm has no update rows


def test_no_analysis_no_table(tmp_path):
    assert analysis_summary_table(load_run(build_run_store(tmp_path / "run", analysis=False))) is None
