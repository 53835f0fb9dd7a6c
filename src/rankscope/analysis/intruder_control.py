"""A causal control for intruder dimensions: shrink them, or shrink the update as much, and compare.

Shuttleworth et al. 2024 (arXiv 2410.21228) link intruder dimensions to forgetting and report
that scaling the intruders' singular values down recovers some forgetting with little loss of
fit; whether intruders *cause* forgetting is disputed. Shrinking any part of an update also
shrinks the update, so the intruder edit is set against a control that removes the same amount
of weight change without singling out the intruders.

Per block projection, with ``W_ft = W_0 + dW``, ``U_I [d_out, c]`` its intruder left singular
vectors (top ``k`` vectors of ``W_ft`` whose largest ``|cos|`` with the base reference's left
vectors is below ``epsilon``, the analysis' own test) and ``C_I = U_I U_I^T W_ft`` (the sum of
``s_i u_i v_i^T`` over the intruders):

- ``intruder`` at ``lambda``: ``W = W_ft - (1 - lambda) C_I`` (intruder singular values scaled by lambda);
- ``uniform`` at ``lambda``: ``W = W_0 + c dW`` with ``c = max(0, 1 - (1 - lambda) ||C_I||_F / ||dW||_F)``:
  the update shrunk uniformly so that ``||W_ft - W||_F`` is the same ``(1 - lambda) ||C_I||_F``
  (clipped at ``c = 0``, the whole update, when the intruder part is larger than ``dW``; the
  number of clipped modules is reported).

A module without intruders is left as it is by both. ``lambda = 1`` is the arm itself. The
edits are made in place on the arm's weights (the LoRA arm's base layer, so that base + adapter
is the edited weight) and undone exactly on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rankscope.analysis.base_cache import BaseWeightCache
from rankscope.analysis.spectral import (
    _is_conv1d,
    _lora_factors_cpu,
    block_linear_modules,
    canonical_module_name,
    top_left_singular_vectors,
)

LAMBDAS = (1.0, 0.75, 0.5, 0.0)
VARIANTS = ("intruder", "uniform")


@dataclass
class _Part:
    """One module's edit: the tensor written, its original, the update and the intruder basis."""

    name: str
    param: Tensor  # the stored weight tensor the edit writes (sft: the weight; LoRA: the base layer's)
    original: Tensor  # copy of param, restored on exit
    delta: Tensor  # dW [d_out, d_in] float32, CPU
    lora: bool  # the adapter adds delta at forward time
    U_I: Tensor  # [d_out, c] intruder left singular vectors of W_ft
    transpose: bool  # Conv1D stores [d_in, d_out]

    def w_ft(self) -> Tensor:
        stored = self.original.to(dtype=torch.float32, device="cpu")
        stored = stored.T if self.transpose else stored
        return stored + self.delta if self.lora else stored  # [d_out, d_in]

    def intruder_norm(self) -> float:
        return float(torch.linalg.matrix_norm(self.U_I.T @ self.w_ft()))


@dataclass(frozen=True)
class EditStats:
    """What one (variant, lambda) edit changed over the model."""

    modules_with_intruders: int
    removed_frobenius: float  # sqrt(sum over modules of ||W_ft - W||_F^2)
    update_frobenius: float  # sqrt(sum over modules of ||dW||_F^2), for scale
    clipped: int  # uniform: modules where the whole update was removed (c clipped at 0)


def intruder_parts(model: nn.Module, cache: BaseWeightCache, k: int, threshold: float) -> list[_Part]:
    """Every block projection whose update has intruders, with what the edits need."""
    parts = []
    lora_layers = {canonical_module_name(n): m for n, m in model.named_modules()
                   if hasattr(m, "lora_A") and hasattr(m, "get_base_layer")}
    for name, module in block_linear_modules(model):
        entry = cache.get(name)
        if entry is None or entry.left_vectors is None:
            continue
        target = module  # block_linear_modules gives the base layer of a LoRA module
        transpose = _is_conv1d(target)
        stored = target.weight.detach()
        W_stored = (stored.T if transpose else stored).to(device="cpu", dtype=torch.float32)  # [d_out, d_in]
        layer = lora_layers.get(name)
        if layer is not None:
            factors = _lora_factors_cpu(layer, None)
            if factors is None:
                continue
            B, A, _ = factors
            delta, W_ft, lora = B @ A, W_stored + B @ A, True
        else:
            W0 = entry.weight.to(device="cpu", dtype=torch.float32)
            delta, W_ft, lora = W_stored - W0, W_stored, False
        if not bool(delta.any()):
            continue
        U_ft = top_left_singular_vectors(W_ft, k)  # [d_out, k]
        U0 = entry.left_vectors.to(device="cpu", dtype=torch.float32)  # [d_out, m]
        flagged = (U0.T @ U_ft).abs().amax(dim=0) < threshold  # [k]
        if not bool(flagged.any()):
            continue
        parts.append(_Part(name, target.weight.data, stored.clone(), delta, lora, U_ft[:, flagged], transpose))
    return parts


def edited_weight(part: _Part, lam: float, variant: str) -> tuple[Tensor, float, bool]:
    """``(effective W [d_out, d_in], ||W_ft - W||_F, clipped)`` of one module (module docstring)."""
    W_ft = part.w_ft()
    C_I = part.U_I @ (part.U_I.T @ W_ft)  # [d_out, d_in]
    if variant == "intruder":
        removed = (1 - lam) * C_I
        return W_ft - removed, float(torch.linalg.matrix_norm(removed)), False
    if variant != "uniform":
        raise ValueError(f"variant must be one of {VARIANTS}, not {variant!r}")
    norm_dw = float(torch.linalg.matrix_norm(part.delta))
    raw = 1 - (1 - lam) * float(torch.linalg.matrix_norm(C_I)) / norm_dw
    c = max(0.0, raw)
    return W_ft - (1 - c) * part.delta, (1 - c) * norm_dw, raw < 0


@contextmanager
def intruders_scaled(parts: list[_Part], lam: float, variant: str) -> Iterator[EditStats]:
    """Write every part's edited weight in place for the block; restore the originals after."""
    removed2, clipped = 0.0, 0
    try:
        for part in parts:
            W, removed, was_clipped = edited_weight(part, lam, variant)
            stored = W - part.delta if part.lora else W  # the adapter still adds delta
            stored = stored.T if part.transpose else stored
            part.param.copy_(stored.to(dtype=part.param.dtype, device=part.param.device))
            removed2 += removed**2
            clipped += int(was_clipped)
        update = sum(float(torch.linalg.matrix_norm(p.delta)) ** 2 for p in parts) ** 0.5
        yield EditStats(len(parts), removed2**0.5, update, clipped)
    finally:
        for part in parts:
            part.param.copy_(part.original)


__all__ = ["EditStats", "LAMBDAS", "VARIANTS", "edited_weight", "intruder_parts", "intruders_scaled"]
