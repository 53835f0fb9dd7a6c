"""``data.train[].n_train`` as a list: one training set per size, nested samples of one pool, one test split."""

from __future__ import annotations

import csv

import pytest

from rankscope.config import RankscopeConfig
from rankscope.config.loading import config_from_dict
from rankscope.errors import ConfigError
from rankscope.data.registry import load_dataset
from rankscope.sweep.context import evaluation_targets
from rankscope.sweep.plan import plan_arms


def sized_config(n_train, **train_extra) -> RankscopeConfig:
    return config_from_dict({
        "name": "sizes",
        "model": {"id": "default"},
        "data": {"train": [{"name": "arith_chain", "n_train": n_train, "n_test": 12, "n_val": 6, **train_extra}],
                 "eval": [{"name": "capitals", "n_test": 5}]},
        "arms": {"sft": True, "lora": {"ranks": [1, 4]}, "seeds": [0]},
    })


def test_a_list_of_sizes_becomes_one_training_set_per_size():
    config = sized_config([30, 10, 60])
    assert [(s.name, s.sample_of, s.n_train) for s in config.data.train] == [
        ("arith_chain-n30", "arith_chain", 30), ("arith_chain-n10", "arith_chain", 10),
        ("arith_chain-n60", "arith_chain", 60)]
    assert all(s.n_val == 6 and s.n_test == 12 for s in config.data.train)  # the other keys carry over
    # every arm once per size: (sft + 2 ranks) x 3 sizes, plus the base model
    trained = [arm for arm in plan_arms(config) if arm.method != "base"]
    assert sorted({arm.train_set for arm in trained}) == ["arith_chain-n10", "arith_chain-n30", "arith_chain-n60"]
    assert len(trained) == 3 * 3


def test_one_size_or_none_leaves_the_set_as_it_is():
    assert [(s.name, s.sample_of, s.n_train) for s in sized_config([25]).data.train] == [("arith_chain", None, 25)]
    assert [(s.name, s.sample_of, s.n_train) for s in sized_config(25).data.train] == [("arith_chain", None, 25)]


def test_the_expanded_config_round_trips_so_a_rerun_plans_the_same_arms():
    config = sized_config([10, 30])
    again = RankscopeConfig.model_validate(config.model_dump())
    assert again == config
    assert [a.arm_id for a in plan_arms(again)] == [a.arm_id for a in plan_arms(config)]


@pytest.mark.parametrize("bad, message", [([10, 10], "duplicates"), ([], "empty"), ([10, 0], "positive")])
def test_bad_size_lists_name_the_key(bad, message):
    with pytest.raises(ConfigError, match=message) as error:
        sized_config(bad)
    assert "n_train" in str(error.value)


def test_a_size_list_on_an_evaluation_set_is_refused():
    with pytest.raises(ConfigError, match="move it under data.train"):
        config_from_dict({"name": "x", "data": {"train": [{"name": "arith_chain"}],
                                                "eval": [{"name": "arith_mc", "n_train": [5, 10]}]}})


def test_sizes_are_nested_samples_with_the_same_validation_and_test_items():
    small, large = sized_config([15, 45]).data.train
    a = load_dataset(small, seed=3, for_training=True)
    b = load_dataset(large, seed=3, for_training=True)
    assert (a.info.name, b.info.name) == ("arith_chain-n15", "arith_chain-n45")
    assert (len(a.train), len(b.train)) == (15, 45)
    assert {e.uid for e in a.train} < {e.uid for e in b.train}  # the smaller set is inside the larger
    assert [e.uid for e in a.test] == [e.uid for e in b.test]
    assert [e.uid for e in a.validation] == [e.uid for e in b.validation]
    # and the same rows as the set loaded under its own name at that size
    plain = load_dataset(sized_config(45).data.train[0], seed=3, for_training=True)
    assert [e.uid for e in plain.train] == [e.uid for e in b.train]
    assert [e.uid for e in plain.test] == [e.uid for e in b.test]


def test_an_arm_is_not_scored_again_on_another_sizes_copy_of_its_test_items():
    config = sized_config([10, 30])
    infos = {spec.name: load_dataset(spec, for_training=True).info for spec in config.data.train}
    infos["capitals"] = load_dataset(config.data.eval[0]).info
    targets = evaluation_targets(config, infos)
    for size in ("arith_chain-n10", "arith_chain-n30"):
        assert [(t.dataset, t.relation) for t in targets[size]] == [(size, "in"), ("capitals", "far")]


def test_a_sweep_over_sizes_trains_each_and_reports_the_knee_per_size(tiny_model_dir, tmp_path):
    from rankscope.report.build import build_run_report
    from rankscope.runstore.reader import load_run
    from rankscope.sweep.runner import run_sweep

    config = config_from_dict({
        "name": "sizes",
        "model": {"id": str(tiny_model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": [8, 16], "n_test": 6, "n_val": 4}],
                 "eval": [{"name": "capitals", "n_test": 6}]},
        "arms": {"sft": False, "lora": {"ranks": [1]}, "seeds": [0]},
        "train": {"steps": 2, "batch_size": 4, "max_length": 64},
        "eval": {"batch_size": 8, "max_new_tokens": 4, "nll": {"enabled": False}},
        "analysis": {"enabled": False},
    })
    outcome = run_sweep(config, tmp_path / "run", announce=lambda *_: None)
    assert not outcome.failed
    with open(tmp_path / "run" / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    lora = [r for r in rows if r["method"] == "lora"]
    assert {r["train_set"] for r in lora} == {"arith_chain-n8", "arith_chain-n16"}
    for size in ("arith_chain-n8", "arith_chain-n16"):  # each arm: its own size in-domain, never the other's
        assert {(r["dataset"], r["relation"]) for r in lora if r["train_set"] == size} == {(size, "in"),
                                                                                            ("capitals", "far")}
    report = build_run_report(load_run(tmp_path / "run"))
    table = next(t for t in report.tables if t.title == "Rank needed vs training-set size")
    assert [row[:3] for row in table.rows] == [["arith_chain", "8", "arith_chain-n8"],
                                               ["arith_chain", "16", "arith_chain-n16"]]
    assert all(row[3] in ("r1", "undecided") for row in table.rows)
