"""The report's "Predicted vs realised rank" table and hit rate (issue 18), torch-free."""

from __future__ import annotations

from fixtures_report import build_run_store

from rankscope.report.build import build_compare, build_run_report
from rankscope.report.prediction_table import (
    PredictionCheck,
    hit_rate_table,
    prediction_checks,
    prediction_table,
    snap_to_grid,
)
from rankscope.runstore.prediction import Prediction, SignalInterval, write_prediction
from rankscope.runstore.reader import load_run


def test_snapping_widens_to_the_swept_ranks_around_the_interval():
    assert snap_to_grid(5, 12, [1, 4, 16, 64]) == (4, 16)
    assert snap_to_grid(4, 16, [1, 4, 16, 64]) == (4, 16)
    assert snap_to_grid(100, 300, [1, 4, 16, 64]) == (64, 64)  # above the sweep: its largest rank
    assert snap_to_grid(1, 1, []) is None


def _check(signal, lo, hi, knee, grid=(1, 64)):
    return PredictionCheck("", "t", signal, lo, hi, grid, knee, 1.0)


def test_hit_rate_counts_undecided_knees_apart():
    checks = [_check("a", 2, 8, 4), _check("a", 2, 8, 16), _check("a", 2, 8, 1), _check("a", 2, 8, None),
              _check("b", 5, 12, 4, grid=(4, 16))]
    table = hit_rate_table(checks)
    rows = {r[0]: r for r in table.rows}
    assert rows["a"][1:] == ["1/3", "3/3", "1", "1", "1"]  # hit, above, below; one undecided apart
    assert rows["b"][1:3] == ["0/1", "1/1"]  # between two swept ranks: a miss, but a hit once snapped
    detail = prediction_table(checks)
    assert detail.title == "Predicted vs realised rank"
    assert [r[5] for r in detail.rows] == ["hit", "miss", "miss", "undecided", "miss"]
    assert detail.rows[3][4] == "undecided"


def test_run_report_reads_prediction_json_beside_the_knee(tmp_path):
    root = build_run_store(tmp_path / "run")
    store = load_run(root)
    assert prediction_checks(store) == []  # no prediction.json: no table, no note
    rec = store.recommendations[0]
    write_prediction(root, Prediction("m", 10, 32, {rec.train_set: [SignalInterval("sft_energy_90", 1, 8, 2.0, "d"),
                                                                      SignalInterval("data_capacity", 100, 200, 0.1, "d")]}))
    store = load_run(root)
    checks = prediction_checks(store)
    assert [c.signal for c in checks] == ["sft_energy_90", "data_capacity"]
    assert all(c.knee == (rec.rank if rec.decided else None) for c in checks)
    titles = [t.title for t in build_run_report(store).tables]
    assert "Predicted vs realised rank" in titles and "Prediction hit rate" in titles
    compare = build_compare([store, load_run(root)])
    table = next(t for t in compare.extra if t.title == "Predicted vs realised rank")
    assert len(table.rows) == 4 and table.columns[0] == "run"


def test_unreadable_prediction_is_a_note_not_a_failure(tmp_path):
    root = build_run_store(tmp_path / "run")
    (root / "prediction.json").write_text("[]")
    store = load_run(root)
    assert prediction_checks(store) == [] and any("prediction.json" in n for n in store.notes)
