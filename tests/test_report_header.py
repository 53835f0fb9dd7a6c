"""The report's header (run.json), units legend, example predictions and the one-seed warning."""

from __future__ import annotations

import hashlib
import json

from fixtures_report import Arm, build_run_store, default_arms

from rankscope.config import config_from_dict
from rankscope.models.resolve import ResolvedModel
from rankscope.report import write_report
from rankscope.report.header import UNITS, example_predictions, run_header
from rankscope.runstore.reader import load_run
from rankscope.report.tables import build_views, view_tables
from rankscope.sweep.provenance import write_run_json

ONE_SEED = "rests on one training seed"


def _config():
    return config_from_dict({"model": {"id": "default"}, "data": {"train": [{"name": "arith_chain"}]}})


def test_without_run_json_the_header_says_so_and_still_counts_items(tmp_path):
    run = build_run_store(tmp_path / "run", n=120, analysis=False)
    header = {row[0]: row[1] for row in run_header(load_run(run)).rows}
    assert header["recorded"].startswith("not recorded")
    assert header["test items per set"] == "arith_chain 120, capitals 120"
    assert header["seeds"] == "0"


def test_run_json_reaches_the_header_and_resumes_add_up(tmp_path):
    run = build_run_store(tmp_path / "run", analysis=False)
    weights = tmp_path / "model.gguf"
    weights.write_bytes(b"not really a model, but bytes to hash")
    resolved = ResolvedModel("default", "wheel", str(weights), "model.gguf")
    write_run_json(run, _config(), resolved, "2026-01-01T00:00:00+00:00", 30.0, 4, 0, 0)
    write_run_json(run, _config(), resolved, "2026-01-02T00:00:00+00:00", 12.5, 0, 4, 0)
    info = json.loads((run / "run.json").read_text())
    assert info["total_wall_time_s"] == 42.5 and len(info["invocations"]) == 2
    assert info["started"] == "2026-01-01T00:00:00+00:00"
    assert info["model"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    header = {row[0]: row[1] for row in run_header(load_run(run)).rows}
    assert header["weights"].startswith("sha256 " + info["model"]["sha256"][:16])
    assert header["device, dtype"] == "cpu, float32"
    assert f"torch {info['libraries']['torch']}" in header["libraries"]
    assert header["total wall time"].startswith("0:00:42") and "2 invocations" in header["total wall time"]


def test_every_column_of_the_tables_has_a_unit():
    """The legend covers each column the accuracy, gain and cost tables print."""
    import tempfile
    from pathlib import Path

    run = build_run_store(Path(tempfile.mkdtemp()) / "run", analysis=False)
    documented = {name for name, _, _ in UNITS}
    for view in build_views(load_run(run)):
        for table in view_tables(view):
            for column in table.columns:
                if column in ("arm", *[d.name for d in view.datasets]):
                    continue
                assert any(column == name or column.startswith(name + " ") for name in documented), column


def test_one_seed_is_warned_about_and_several_are_not(tmp_path):
    one = build_run_store(tmp_path / "one", analysis=False)
    write_report([one])
    assert ONE_SEED in (one / "summary.md").read_text() and ONE_SEED in (one / "report.html").read_text()
    arms = default_arms() + [Arm("lora", 8, seed=1, acc={"arith_chain": 0.57, "capitals": 0.87}),
                             Arm("sft", seed=1, acc={"arith_chain": 0.61, "capitals": 0.71})]
    two = build_run_store(tmp_path / "two", arms, analysis=False)
    write_report([two])
    assert ONE_SEED not in (two / "summary.md").read_text()


def test_example_predictions_come_from_the_stored_samples(tmp_path):
    run = build_run_store(tmp_path / "run", analysis=False)
    samples = {"base-0000abcd": [{"uid": "q1", "answer": "12", "prediction": "11", "correct": False}],
               "lora-r8-a16-s0-0000abcd": [{"uid": "q1", "answer": "12", "prediction": "12 <b>", "correct": True}]}
    for arm_id, items in samples.items():
        path = run / "arms" / arm_id / "eval.json"
        stored = json.loads(path.read_text())
        stored["datasets"]["arith_chain"]["samples"] = items
        path.write_text(json.dumps(stored))
    tables = example_predictions(load_run(run))
    assert [t.title for t in tables] == ["Example predictions: arith_chain"]
    table = tables[0]
    assert table.columns == ["item", "gold answer", "base-0000abcd", "lora-r8-a16-s0-0000abcd"]
    assert table.rows == [["q1", "12", "✗ 11", "✓ 12 <b>"]]
    write_report([run])
    assert "12 &lt;b&gt;" in (run / "report.html").read_text() and "12 \\<b\\>" in (run / "summary.md").read_text()
