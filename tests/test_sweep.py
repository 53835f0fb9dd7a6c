"""The sweep on a tiny local model: store layout, resume, failure isolation."""

from __future__ import annotations

import csv
import json
import os

import pytest

from rankscope.config import config_from_dict
from rankscope.sweep.plan import plan_arms
from rankscope.sweep.runner import run_sweep
from rankscope.runstore.writer import RunWriter
from rankscope.errors import RankscopeError


def tiny_config(model_dir, **train):
    return config_from_dict({
        "name": "tiny",
        "model": {"id": str(model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 24, "n_test": 6}],
                 "eval": [{"name": "arith_mc", "n_test": 6}, {"name": "capitals", "n_test": 6}]},
        "arms": {"sft": True, "lora": {"ranks": [1, 4]}, "seeds": [0]},
        "train": {"steps": 3, "batch_size": 4, "max_length": 64, **train},
        "eval": {"batch_size": 8, "max_new_tokens": 4},
        "analysis": {"enabled": True, "probe_size": 3, "probe_max_length": 32},
    })


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_arm_ids_are_stable_and_distinct(tiny_model_dir):
    config = tiny_config(tiny_model_dir)
    first, second = plan_arms(config), plan_arms(tiny_config(tiny_model_dir))
    assert [a.arm_id for a in first] == [a.arm_id for a in second]
    assert len({a.arm_id for a in first}) == len(first) == 4
    changed = plan_arms(tiny_config(tiny_model_dir, steps=4))
    assert {a.arm_id for a in changed if a.method != "base"}.isdisjoint({a.arm_id for a in first})
    # how the loss is computed is not part of the arm: a finished arm is reused either way
    plain = plan_arms(tiny_config(tiny_model_dir, shared_prefix=False))
    assert [a.arm_id for a in plain] == [a.arm_id for a in first]


def test_sweep_writes_the_store_and_resumes(tiny_model_dir, tmp_path):
    from peft import PeftConfig

    config = tiny_config(tiny_model_dir)
    run_dir = tmp_path / "run"
    outcome = run_sweep(config, run_dir, announce=lambda *_: None)
    assert not outcome.failed and len(outcome.ran) == 4
    rows = read_rows(run_dir / "results.csv")
    assert {r["method"] for r in rows} == {"base", "sft", "lora"}
    assert {r["domain"] for r in rows} == {"in", "out"}
    assert {r["kind"] for r in rows if r["dataset"] != "generic_text"} == {"reasoning", "recall"}
    assert {r["metric"] for r in rows if r["format"] == "mc"} == {"accuracy", "acc_norm", "margin"}
    # relation: the training set's own test split in, same kind (arith_mc) near, the rest far
    assert {(r["dataset"], r["relation"]) for r in rows if r["dataset"] != "generic_text"} == {("arith_chain", "in"), ("arith_mc", "near"),
                                                             ("capitals", "far")}
    # one primary metric per arm x dataset
    scored = [r for r in rows if r["dataset"] != "generic_text"]
    primary = [(r["arm_id"], r["dataset"]) for r in scored if r["primary"] == "1"]
    assert len(primary) == len(set(primary)) == len({(r["arm_id"], r["dataset"]) for r in scored})
    # per-item records: one line per scored item; their mean is the accuracy in results.csv
    from rankscope.verdicts.items import find_items, read_items

    for r in scored:
        items = read_items(find_items(run_dir / "arms" / r["arm_id"], r["dataset"]))
        assert len(items) == int(r["n"]) == 6
        field = {"accuracy": "correct", "acc_norm": "correct_norm", "truncated": "truncated"}.get(r["metric"])
        if field:
            assert sum(i[field] for i in items) / len(items) == pytest.approx(float(r["value"]), abs=1e-5)
        if r["format"] == "mc":
            assert all(len(i["choice_logprobs"]) >= 2 and "gold" in i for i in items)
        else:
            assert all("prediction" in i and "extracted" in i for i in items)
    assert (run_dir / "comparisons.csv").is_file() and (run_dir / "recommendation.json").is_file()
    # every arm has its generic-text NLL; nll_delta is arm minus base, so the base row reads 0
    nll = {r["arm_id"]: float(r["value"]) for r in rows if r["metric"] == "nll"}
    delta = {r["arm_id"]: float(r["value"]) for r in rows if r["metric"] == "nll_delta"}
    assert set(nll) == set(delta) == {a.arm_id for a in outcome.arms}
    base_id = next(a.arm_id for a in outcome.arms if a.method == "base")
    assert delta[base_id] == 0.0
    for arm_id, value in delta.items():
        assert value == pytest.approx(nll[arm_id] - nll[base_id], abs=2e-5)
    assert any(value != 0.0 for value in delta.values())  # training moved the NLL of some arm
    for arm in outcome.arms:
        folder = run_dir / "arms" / arm.arm_id
        assert json.loads((folder / "arm.json").read_text())["status"] == "done"
        if arm.method == "lora":
            assert PeftConfig.from_pretrained(folder / "adapter").r == arm.rank
            assert (folder / "adapter" / "adapter_model.safetensors").is_file()
        if arm.method == "sft":
            assert (folder / "model.safetensors").is_file()
    # accuracy rows are consistent with their n
    for r in rows:
        if r["metric"] == "accuracy":
            assert float(r["value"]) * int(r["n"]) == pytest.approx(round(float(r["value"]) * int(r["n"])), abs=1e-3)

    mtimes = {p: os.stat(p).st_mtime_ns for p in (run_dir / "arms").rglob("*") if p.is_file()}
    again = run_sweep(config, run_dir, announce=lambda *_: None)
    assert again.ran == [] and len(again.skipped) == 4
    assert read_rows(run_dir / "results.csv") == rows
    assert {p: os.stat(p).st_mtime_ns for p in (run_dir / "arms").rglob("*") if p.is_file()} == mtimes


def test_interrupted_arm_is_redone(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir)
    run_dir = tmp_path / "run"
    first = run_sweep(config, run_dir, announce=lambda *_: None)
    before = read_rows(run_dir / "results.csv")
    victim = next(a for a in first.arms if a.method == "lora")
    (run_dir / "arms" / victim.arm_id / "arm.json").unlink()  # as if killed before finishing
    reference = run_dir / "analysis" / "base_reference"
    cached = {p: os.stat(p).st_mtime_ns for p in reference.glob("*.safetensors")}
    assert (reference / "manifest.json").is_file() and len(cached) == 2 * 7  # 2 layers x 7 projections
    again = run_sweep(config, run_dir, announce=lambda *_: None)
    assert again.ran == [victim.arm_id]
    assert read_rows(run_dir / "results.csv") == before  # deterministic on CPU: the same table
    # the streamed base reference of the same base was reused, not recomputed
    assert {p: os.stat(p).st_mtime_ns for p in reference.glob("*.safetensors")} == cached


def test_diverging_arm_fails_alone(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, lr={"lora": 1e30, "sft": 1e-4}, steps=4)
    outcome = run_sweep(config, tmp_path / "run", announce=lambda *_: None)
    lora = [a.arm_id for a in outcome.arms if a.method == "lora"]
    assert set(outcome.failed) == set(lora)
    assert all("loss is" in reason or "nan" in reason.lower() for reason in outcome.failed.values())
    rows = read_rows(tmp_path / "run" / "results.csv")
    assert {r["arm_id"] for r in rows if r["metric"] == "failed"} == set(lora)
    assert any(r["method"] == "sft" and r["metric"] == "accuracy" for r in rows)


def test_arm_dir_cannot_escape(tmp_path):
    store = RunWriter(tmp_path)
    for bad in ("../x", "..", "a/b", ".hidden"):
        with pytest.raises(RankscopeError):
            store.arm_dir(bad)


def test_several_training_sets_give_the_train_by_eval_matrix(tiny_model_dir, tmp_path):
    raw = tiny_config(tiny_model_dir).model_dump(mode="json")
    raw["data"]["train"].append({"name": "unit_conv", "n_train": 24, "n_test": 6})
    raw["arms"] = {"sft": False, "lora": {"ranks": [2]}, "seeds": [0]}
    raw["analysis"]["enabled"] = False
    outcome = run_sweep(config_from_dict(raw), tmp_path / "run", announce=lambda *_: None)
    assert not outcome.failed
    rows = [r for r in read_rows(tmp_path / "run" / "results.csv") if r["metric"] == "accuracy"]
    trained = {(r["train_set"], r["method"]) for r in rows}
    assert trained == {("arith_chain", "base"), ("arith_chain", "lora"), ("unit_conv", "base"), ("unit_conv", "lora")}
    domain = {(r["train_set"], r["dataset"]): r["domain"] for r in rows}
    assert domain[("arith_chain", "arith_chain")] == "in" and domain[("arith_chain", "unit_conv")] == "out"
    assert domain[("unit_conv", "unit_conv")] == "in" and domain[("unit_conv", "arith_chain")] == "out"
    base = {(r["train_set"], r["dataset"]): r["value"] for r in rows if r["method"] == "base"}
    assert base[("arith_chain", "capitals")] == base[("unit_conv", "capitals")]  # the base arm ran once


def test_shared_work_is_done_once_per_sweep(tiny_model_dir, tmp_path, monkeypatch):
    """Datasets, tokenized training rows, the base model and the base evaluation: once, not per arm.
    LoRA arms wrap the one base model in memory (no second copy of its weights)."""
    import rankscope.sweep.arm as arm_module
    import rankscope.sweep.context as context_module

    calls = {"load_dataset": 0, "encode_examples": 0, "load_base_model": 0, "evaluate_model": 0}
    base_storage: set[int] = set()
    lora_storage: list[set[int]] = []

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    for name in ("load_dataset", "encode_examples", "load_base_model"):
        monkeypatch.setattr(context_module, name, counting(name, getattr(context_module, name)))
    monkeypatch.setattr(arm_module, "evaluate_model", counting("evaluate_model", arm_module.evaluate_model))
    real_apply = arm_module.apply_lora

    def apply_and_record(base, *args, **kwargs):
        base_storage.update(p.data_ptr() for p in base.parameters())
        model = real_apply(base, *args, **kwargs)
        lora_storage.append({p.data_ptr() for n, p in model.named_parameters() if "lora_" not in n})
        return model

    monkeypatch.setattr(arm_module, "apply_lora", apply_and_record)
    config = tiny_config(tiny_model_dir)
    outcome = run_sweep(config, tmp_path / "run", announce=lambda *_: None)
    assert len(outcome.ran) == 4  # base, sft, lora r1, lora r4
    assert calls["load_base_model"] == 1
    assert calls["encode_examples"] == 1
    assert calls["load_dataset"] == 3  # arith_chain, arith_mc, capitals
    assert calls["evaluate_model"] == 4  # one per arm: the base model is scored once
    assert len(lora_storage) == 2 and all(storage == base_storage for storage in lora_storage)


def test_a_worker_ships_item_records_back_and_the_driver_writes_them(tiny_model_dir, tmp_path):
    """The Ray task body returns the items in ArmOutput (pickled across processes); record_arm
    writes them exactly as the local executor's arms get them."""
    import pickle

    from rankscope.sweep.executors import run_arm_in_worker
    from rankscope.sweep.plan import evaluation_fingerprint
    from rankscope.sweep.runner import record_arm
    from rankscope.verdicts.items import find_items, read_items

    config = tiny_config(tiny_model_dir)
    base = plan_arms(config)[0]
    result = pickle.loads(pickle.dumps(run_arm_in_worker(config.model_dump(mode="json"), base.to_json(), None)))
    assert result.error is None and set(result.output.items) == {"arith_chain", "arith_mc", "capitals"}
    store = RunWriter(tmp_path / "run")
    store.start_arm(base)
    record_arm(store, tmp_path / "run", result, evaluation_fingerprint(config))
    for dataset, rows in result.output.items.items():
        written = read_items(find_items(store.arm_dir(base.arm_id), dataset))
        assert written == rows and len(rows) == 6
    assert store.is_done(base.arm_id, evaluation_fingerprint(config))
