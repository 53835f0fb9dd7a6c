"""Sharded full fine-tuning (FSDP2 on 2 gloo processes, CPU) learns what one process learns."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from rankscope.config import ModelSpec, TrainSpec
from rankscope.data.types import Example
from rankscope.models.arms import make_sft_copy
from rankscope.train.fsdp import WEIGHTS_FILE, ShardedJob, launch_sharded
from rankscope.train.loop import encode_examples, train_model

EXAMPLES = [Example(question=f"Mia has {a} apples and buys {b} more. How many apples?", answer=str(a + b))
            for a in range(2, 10) for b in range(2, 6)]
SPEC = TrainSpec(steps=6, batch_size=8, max_length=64, log_every=1, shared_prefix=False, lr={"sft": 1e-3})


def test_fsdp_two_processes_match_one(tiny_model_dir, tiny, tmp_path):
    encoded = encode_examples(tiny.tokenizer, EXAMPLES, 64)
    pad = tiny.tokenizer.pad_token_id
    single_model = make_sft_copy(tiny.model)
    single = train_model(single_model, encoded, SPEC, lr=1e-3, seed=0, pad_token_id=pad)
    job = ShardedJob(model=ModelSpec(id=str(tiny_model_dir)).model_dump(), train=SPEC.model_dump(), lr=1e-3, seed=0,
                     pad_token_id=pad, precision="fp32", gradient_checkpointing=False,
                     encoded=[(e.input_ids, e.labels) for e in encoded], out_dir=str(tmp_path / "sharded"))
    sharded = launch_sharded(job, nproc=2, timeout_s=240)
    assert sharded["sharded"]["world_size"] == 2
    steps = [s for s, _ in single.loss_curve]
    assert [s for s, _ in sharded["loss_curve"]] == steps
    for (_, a), (_, b) in zip(single.loss_curve, sharded["loss_curve"]):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-5)
    # The loss moved (the comparison is not two flat curves) and the gathered weights match.
    assert single.loss_curve[-1][1] < single.loss_curve[0][1]
    weights = load_file(str(tmp_path / "sharded" / WEIGHTS_FILE))
    reference = single_model.state_dict()
    changed = 0
    for name, tensor in weights.items():
        assert torch.allclose(tensor, reference[name], atol=1e-5), name
        changed += not torch.equal(tensor, tiny.model.state_dict()[name])
    assert changed > 0
