"""Reading the store: tolerant of missing analysis, failed arms and a missing results.csv."""

from __future__ import annotations

import pytest
from fixtures_report import Arm, build_run_store, default_arms

from rankscope.errors import RankscopeError
from rankscope.runstore.reader import load_run


def test_reads_every_part_of_a_complete_store(tmp_path):
    store = load_run(build_run_store(tmp_path / "run"))
    assert store.name == "synthetic" and store.config["model"]["id"] == "default"
    assert {a.method for a in store.arms.values()} == {"base", "sft", "lora"}
    lora8 = store.arms["lora-r8-a16-s0-0000abcd"]
    assert lora8.rank == 8 and lora8.alpha == 16.0 and lora8.train.trainable_params > 0 and lora8.train.loss_curve
    assert store.arms["base-0000abcd"].train is None and store.arms["base-0000abcd"].train_set is None
    assert {r.metric for r in store.spectral} >= {"effective_rank", "stable_rank", "intruder_dimensions"}
    assert store.singular_values["lora-r8-a16-s0-0000abcd/0/q_proj"].shape == (8,)
    assert store.attention_maps["base-0000abcd/0"].ndim == 3
    assert store.notes == []


def test_missing_analysis_is_not_an_error(tmp_path):
    store = load_run(build_run_store(tmp_path / "run", analysis=False))
    assert store.spectral == [] and store.singular_values == {} and store.results


def test_failed_arm_error_comes_from_arm_json_and_results(tmp_path):
    arms = default_arms() + [Arm("lora", 64, status="failed", error="OOM at step 3")]
    store = load_run(build_run_store(tmp_path / "run", arms))
    (failed,) = store.failed_arms()
    assert failed.rank == 64 and failed.error == "OOM at step 3"


def test_results_rebuilt_from_eval_json_when_csv_missing(tmp_path):
    with_csv = load_run(build_run_store(tmp_path / "a", analysis=False))
    without = load_run(build_run_store(tmp_path / "b", analysis=False, results_csv=False))
    key = lambda r: (r.arm_id, r.dataset, r.metric, r.value)
    assert sorted(map(key, without.results)) == sorted(map(key, with_csv.results))
    assert any("rebuilt" in n for n in without.notes)


def test_malformed_row_becomes_a_note(tmp_path):
    run = build_run_store(tmp_path / "run", analysis=False)
    with (run / "results.csv").open("a") as handle:
        handle.write("x,lora,notanint,,0,arith_chain,arith_chain,reasoning,in,mc,accuracy,0.5,10,0.1,done\n")
    store = load_run(run)
    assert any("malformed row" in n and ":10" in n for n in store.notes)


def test_unfinished_arm_is_noted(tmp_path):
    run = build_run_store(tmp_path / "run", analysis=False)
    (run / "arms" / "lora-r32-a64-s0-0000abcd").mkdir()
    assert any("no arm.json" in n for n in load_run(run).notes)


def test_nothing_to_report_is_one_clear_error(tmp_path):
    with pytest.raises(RankscopeError, match="no results.csv and no arms"):
        load_run(tmp_path)
    (tmp_path / "results.csv").write_text("arm_id,method\n")
    with pytest.raises(RankscopeError, match="missing column"):
        load_run(tmp_path)
