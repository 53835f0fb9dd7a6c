"""The precision recipe every arm trains with: bf16 compute, fp32 master weights and optimizer state.

Why: AdamW applied straight to bf16 weights loses most small updates. bf16 keeps 8 significand
bits, so a weight of magnitude 0.02 moves only in steps of ~8e-5; an Adam step of lr = 2e-5
rounds back to the old value for most weights, and full fine-tuning (which updates bf16 base
weights) would under-train next to LoRA (whose adapters peft keeps in fp32). Mixed precision
(Micikevicius et al., 2018, "Mixed Precision Training") keeps an fp32 master copy of every
trainable weight and its optimizer state and runs the matmuls in the low-precision dtype; with
``torch.autocast`` the fp32 parameters *are* the master copy and the casts happen per op.

A recipe is chosen once per sweep (``train.precision``) and applied identically to every arm:
trainable parameters are held in ``master_dtype`` (frozen ones may stay in the storage dtype,
which autocast casts to the compute dtype anyway) and forwards run under ``autocast``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PrecisionRecipe:
    name: str  # fp32 | bf16-mixed (| bf16-naive: the counterexample the tests measure against)
    compute_dtype: torch.dtype  # dtype of matmuls inside forward/backward
    master_dtype: torch.dtype  # dtype of trainable weights, their gradients and AdamW moments

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """Autocast to the compute dtype when it differs from the master dtype; else a no-op."""
        if self.compute_dtype == self.master_dtype:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.compute_dtype)

    def prepare(self, params: list[nn.Parameter]) -> None:
        """Hold every trainable parameter in the master dtype (in place, so tied weights stay tied)."""
        for param in params:
            if param.dtype != self.master_dtype:
                param.data = param.data.to(self.master_dtype)

    def to_json(self) -> dict:
        return {"recipe": self.name, "compute_dtype": _name(self.compute_dtype),
                "master_weights": _name(self.master_dtype), "optimizer_state": _name(self.master_dtype)}


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


FP32 = PrecisionRecipe("fp32", torch.float32, torch.float32)
BF16_MIXED = PrecisionRecipe("bf16-mixed", torch.bfloat16, torch.float32)
# Not selectable in a config: bf16 weights updated directly, the recipe this module replaces.
BF16_NAIVE = PrecisionRecipe("bf16-naive", torch.bfloat16, torch.bfloat16)


def resolve_precision(requested: str, device: torch.device) -> PrecisionRecipe:
    """``auto``: bf16-mixed on a GPU with bf16 support, fp32 elsewhere (CPU bf16 is slow to train)."""
    if requested == "fp32":
        return FP32
    if requested == "bf16-mixed":
        return BF16_MIXED
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return BF16_MIXED
    return FP32
