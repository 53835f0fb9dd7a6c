"""The cheap measurements behind a prediction: the gradient at initialisation and a short probe.

Both use the sweep's own training pieces (rankscope.train.loop: encoding, batch order, answer-only
loss, precision recipe), so they measure what the sweep's first steps will see.

- :func:`gradient_at_init`: the mean gradient ``G0 [d_out, d_in]`` of each targeted block
  projection over ``groups x batch_size`` training examples at the base weights, and the noise
  variance of that mean: with ``g`` group means ``G_j`` (each over ``b`` examples),
  ``var_j = sum_j (G_j - G0)^2 / (g - 1)`` per entry estimates ``v / b`` (``v``: one example's
  gradient variance), so the mean's noise variance is ``v / n = mean_entries(var_j) / g``, ``n = g b``.
- :func:`sft_probe`: at most 10 steps of the sweep's own full fine-tuning (learning rate, batch,
  schedule shape, seed), from which the update ``dW = W_probe - W_0`` per module is read.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rankscope.config import TrainSpec
from rankscope.train.loop import EncodedExample, TrainResult, accumulate_batch_gradient, batch_schedule, train_model
from rankscope.train.loss import padded_answer_loss
from rankscope.train.precision import PrecisionRecipe

#: The probe's ceiling: "cheap" means a few percent of one arm's training (issue 18: at most 10 steps).
MAX_PROBE_STEPS = 10


@dataclass
class GradientMoments:
    """Per module: the mean gradient ``[d_out, d_in]`` (float32, CPU) and the noise variance of that mean."""

    mean: dict[str, Tensor]
    noise_var: dict[str, float]
    examples: int


def gradient_at_init(model: nn.Module, modules: dict[str, nn.Linear], encoded: list[EncodedExample],
                     batch_size: int, groups: int, seed: int, pad_token_id: int,
                     precision: PrecisionRecipe) -> GradientMoments:
    """Mean gradient and its noise variance over the first ``groups`` batches of the sweep's order.

    Only the targeted weights require grad here (the rest of the model is frozen for the pass
    and restored after).
    """
    if groups < 2:
        raise ValueError("the noise estimate needs at least 2 groups")
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    for module in modules.values():
        module.weight.requires_grad_(True)
    total: dict[str, Tensor] = {}
    squares: dict[str, Tensor] = {}
    seen = 0
    try:
        model.eval()  # no dropout: the gradient of the loss itself
        for indices in batch_schedule(len(encoded), groups, batch_size, seed):
            batch = [encoded[i] for i in indices]
            for module in modules.values():
                module.weight.grad = None
            accumulate_batch_gradient(model, batch, pad_token_id, padded_answer_loss, precision)
            seen += len(batch)
            for name, module in modules.items():
                grad = module.weight.grad.detach().to(device="cpu", dtype=torch.float32)  # [d_out, d_in]
                if name in total:
                    total[name] += grad
                    squares[name] += grad.square()
                else:
                    total[name], squares[name] = grad.clone(), grad.square()
    finally:
        for module in modules.values():
            module.weight.grad = None
        for p, flag in flags.items():
            p.requires_grad_(flag)
    mean = {name: t / groups for name, t in total.items()}
    noise = {}
    for name, t in mean.items():
        between = (squares[name] - groups * t.square()).clamp_min(0) / (groups - 1)  # per-entry var of group means
        noise[name] = float(between.mean()) / groups
        del squares[name]
    return GradientMoments(mean, noise, seen)


def sft_probe(model: nn.Module, encoded: list[EncodedExample], spec: TrainSpec, steps: int, lr: float, seed: int,
              pad_token_id: int, precision: PrecisionRecipe) -> TrainResult:
    """``steps`` (<= :data:`MAX_PROBE_STEPS`) of full fine-tuning with the sweep's loop, in place.

    The linear schedule is the sweep's (same warm-up ratio) compressed to ``steps``; every
    parameter trains, as in the sft arm. The loss is logged at every step.
    """
    if not 1 <= steps <= MAX_PROBE_STEPS:
        raise ValueError(f"probe steps must be between 1 and {MAX_PROBE_STEPS}, not {steps}")
    for p in model.parameters():
        p.requires_grad_(True)
    probe_spec = spec.model_copy(update={"steps": steps, "log_every": 1})
    return train_model(model, encoded, probe_spec, lr=lr, seed=seed, pad_token_id=pad_token_id,
                       description="predict probe", precision=precision)


__all__ = ["GradientMoments", "MAX_PROBE_STEPS", "gradient_at_init", "sft_probe"]
