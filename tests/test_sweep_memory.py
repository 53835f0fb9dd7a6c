"""Memory policies of the sweep: the base reloaded around full fine-tuning, gradient checkpointing,
and the per-arm memory fields of train.json. Each changes memory only, never what an arm learns."""

from __future__ import annotations

import json

import pytest

from rankscope.config import config_from_dict
from rankscope.sweep.runner import run_sweep


def config(model_dir, train=None, sweep=None):
    return config_from_dict({
        "name": "memory",
        "model": {"id": str(model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 16, "n_test": 4}]},
        "arms": {"sft": True, "lora": {"ranks": [2]}, "seeds": [0]},
        "train": {"steps": 3, "batch_size": 4, "max_length": 64, **(train or {})},
        "eval": {"batch_size": 8, "max_new_tokens": 4},
        "analysis": {"enabled": False},
        "sweep": sweep or {},
    })


def training(run_dir, outcome):
    return {arm.method: json.loads((run_dir / "arms" / arm.arm_id / "train.json").read_text())
            for arm in outcome.arms if arm.method != "base"}


def count_loads(monkeypatch, module) -> list[str]:
    calls: list[str] = []
    original = module.load_base_model

    def counting(spec):
        calls.append(spec.dtype)
        return original(spec)

    monkeypatch.setattr(module, "load_base_model", counting)
    return calls


def test_reload_and_checkpointing_train_the_same_arms_as_the_defaults(tiny_model_dir, tmp_path, monkeypatch):
    import rankscope.sweep.arm as arm_module
    import rankscope.sweep.context as context_module

    base_loads, sft_loads = count_loads(monkeypatch, context_module), count_loads(monkeypatch, arm_module)
    keep = run_sweep(config(tiny_model_dir, sweep={"sft_base_copy": "keep"}), tmp_path / "keep", announce=lambda *_: None)
    assert (len(base_loads), len(sft_loads)) == (1, 0)  # one base for every arm; sft trains a copy
    base_loads.clear()
    loads_when_training: list[int] = []
    original_train = arm_module.train_model

    def recording_train(*args, **kwargs):
        loads_when_training.append(len(base_loads))
        return original_train(*args, **kwargs)

    monkeypatch.setattr(arm_module, "train_model", recording_train)
    other = run_sweep(config(tiny_model_dir, train={"gradient_checkpointing": True}, sweep={"sft_base_copy": "reload"}),
                      tmp_path / "other", announce=lambda *_: None)
    # The base is freed for sft (which loads its own fp32 copy) and loaded again for the LoRA arm only.
    assert (len(base_loads), sft_loads) == (2, ["float32"])
    assert loads_when_training == [1, 2]  # sft trained while the base was freed; LoRA after its reload
    assert not keep.failed and not other.failed
    assert [a.arm_id for a in keep.arms] == [a.arm_id for a in other.arms]  # memory settings are not in the id
    a, b = training(tmp_path / "keep", keep), training(tmp_path / "other", other)
    for method in ("sft", "lora"):
        assert b[method]["gradient_checkpointing"] and not a[method]["gradient_checkpointing"]
        for (step_a, loss_a), (step_b, loss_b) in zip(a[method]["loss_curve"], b[method]["loss_curve"]):
            assert step_a == step_b and loss_a == pytest.approx(loss_b, rel=1e-4, abs=1e-5)
        for record in (a[method], b[method]):
            assert record["precision"]["recipe"] == "fp32"
            assert record["peak_memory_total_mb"] >= record["peak_memory_arm_mb"] >= 0
            assert record["peak_memory_mb"] == record["peak_memory_total_mb"]


def test_cost_table_shows_both_peaks_and_the_recipe(tiny_model_dir, tmp_path):
    from rankscope.runstore.reader import load_run
    from rankscope.report.tables import build_views, cost_table

    outcome = run_sweep(config(tiny_model_dir), tmp_path / "run", announce=lambda *_: None)
    assert not outcome.failed
    table = cost_table(build_views(load_run(tmp_path / "run"))[0])
    total, own, recipe = (table.columns.index(c) for c in ("peak memory (MiB)", "arm's own memory (MiB)", "precision"))
    records = training(tmp_path / "run", outcome)
    for row in table.rows:
        record = records["sft" if row[0] == "sft" else "lora"]
        assert float(row[total].replace(",", "")) == pytest.approx(record["peak_memory_total_mb"], abs=0.06)
        assert float(row[own].replace(",", "")) == pytest.approx(record["peak_memory_arm_mb"], abs=0.06)
        assert row[recipe] == "fp32"
