"""The precision recipe: bf16 compute with fp32 master weights tracks fp32 training; naive bf16 drifts.

Full fine-tuning at a paper-scale learning rate (2e-5) on weights of std 0.02: an Adam step is
smaller than half a bf16 ulp for most weights, so bf16 weights updated directly mostly stay
where they were. The recipe keeps the update in fp32 and only the matmuls in bf16.
"""

from __future__ import annotations

import copy

import torch

from rankscope.config import TrainSpec
from rankscope.data.types import Example
from rankscope.models.arms import make_sft_copy
from rankscope.train.loop import encode_examples, train_model
from rankscope.train.precision import BF16_MIXED, BF16_NAIVE, FP32, resolve_precision

EXAMPLES = [Example(question=f"Mia has {a} apples and buys {b} more. How many apples?", answer=str(a + b))
            for a in range(2, 10) for b in range(2, 6)]
SPEC = TrainSpec(steps=20, batch_size=8, max_length=64, warmup_ratio=0.0, log_every=1, shared_prefix=False)


def _train(tiny, recipe, storage_dtype):
    model = make_sft_copy(tiny.model).to(storage_dtype)
    encoded = encode_examples(tiny.tokenizer, EXAMPLES, 64)
    start = {name: p.detach().float().clone() for name, p in model.named_parameters()}
    result = train_model(model, encoded, SPEC, lr=2e-5, seed=0, pad_token_id=tiny.tokenizer.pad_token_id,
                         precision=recipe)
    end = {name: p.detach().float().clone() for name, p in model.named_parameters()}
    return start, end, result


def _distance(a: dict, b: dict) -> float:
    return sum(float((a[k] - b[k]).pow(2).sum()) for k in a) ** 0.5


def test_precision_recipe_tracks_fp32_while_naive_bf16_drifts(tiny):
    start, fp32_end, fp32 = _train(tiny, FP32, torch.float32)
    _, mixed_end, mixed = _train(tiny, BF16_MIXED, torch.float32)
    naive_start, naive_end, naive = _train(tiny, BF16_NAIVE, torch.bfloat16)
    update = _distance(fp32_end, start)  # how far fp32 training moved the weights
    assert update > 0
    mixed_error = _distance(mixed_end, fp32_end) / update
    naive_error = _distance(naive_end, fp32_end) / update
    # The recipe's weights end within a fraction of the fp32 update; naive bf16 several times further.
    assert mixed_error < 0.5
    assert naive_error > 3 * mixed_error
    # Naive bf16 loses updates: its weights moved measurably less than fp32's did.
    naive_update = _distance(naive_end, naive_start)
    mixed_update = _distance(mixed_end, start)
    assert abs(mixed_update - update) < abs(naive_update - update)
    # The loss curves: the recipe's stays closer to fp32's than naive bf16's does.
    def curve_gap(result):
        return max(abs(a - b) for (_, a), (_, b) in zip(result.loss_curve, fp32.loss_curve))
    assert curve_gap(mixed) < curve_gap(naive)


def test_precision_recipe_is_recorded_and_keeps_master_weights_in_fp32(tiny):
    _, _, result = _train(tiny, BF16_MIXED, torch.bfloat16)  # bf16 storage: trainable weights go to fp32
    assert result.precision == {"recipe": "bf16-mixed", "compute_dtype": "bfloat16",
                                "master_weights": "float32", "optimizer_state": "float32"}
    assert result.to_json()["precision"]["recipe"] == "bf16-mixed"
    assert resolve_precision("auto", torch.device("cpu")) is FP32
    assert resolve_precision("bf16-mixed", torch.device("cpu")) is BF16_MIXED


def test_precision_prepare_keeps_tied_weights_tied(tiny):
    model = copy.deepcopy(tiny.model).to(torch.bfloat16)
    BF16_MIXED.prepare([p for p in model.parameters()])
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight
    assert all(p.dtype == torch.float32 for p in model.parameters())
