"""Sharded full fine-tuning (FSDP2 on 2 gloo processes, CPU) learns what one process learns.

Runs the sft arm of a tiny sweep twice, unsharded and with ``sweep.sft_gpus: 2`` (torchrun, two
CPU ranks): the loss curves and the saved weights must agree.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rankscope.config import config_from_dict
from rankscope.sweep.runner import run_sweep


def sft_only(model_dir, **sweep):
    return config_from_dict({
        "name": "fsdp",
        "model": {"id": str(model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 24, "n_test": 4}]},
        "arms": {"sft": True, "lora": None, "seeds": [0]},
        "train": {"steps": 6, "batch_size": 8, "max_length": 64, "log_every": 1, "lr": {"sft": 1e-3}},
        "eval": {"batch_size": 8, "max_new_tokens": 4},
        "analysis": {"enabled": False},
        "sweep": sweep,
    })


def sft_arm(run_dir, outcome):
    arm = next(a for a in outcome.arms if a.method == "sft")
    folder = run_dir / "arms" / arm.arm_id
    return json.loads((folder / "train.json").read_text()), load_file(str(folder / "model.safetensors"))


def test_fsdp_two_processes_match_one(tiny_model_dir, tmp_path):
    single_out = run_sweep(sft_only(tiny_model_dir), tmp_path / "single", announce=lambda *_: None)
    sharded_out = run_sweep(sft_only(tiny_model_dir, sft_gpus=2), tmp_path / "sharded", announce=lambda *_: None)
    assert not single_out.failed and not sharded_out.failed, sharded_out.failed
    single, single_weights = sft_arm(tmp_path / "single", single_out)
    sharded, sharded_weights = sft_arm(tmp_path / "sharded", sharded_out)
    assert sharded["sharded"] == {"world_size": 2, "engine": "fsdp2 fully_shard"}
    assert "sharded" not in single
    assert [s for s, _ in sharded["loss_curve"]] == [s for s, _ in single["loss_curve"]]
    for (_, a), (_, b) in zip(single["loss_curve"], sharded["loss_curve"]):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    assert single["loss_curve"][-1][1] < single["loss_curve"][0][1]  # it learned: not two flat curves
    assert set(sharded_weights) <= set(single_weights)
    for name, tensor in sharded_weights.items():
        assert torch.allclose(tensor, single_weights[name], atol=1e-5), name
