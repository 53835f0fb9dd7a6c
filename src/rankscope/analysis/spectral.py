"""Weight-update spectra: what fine-tuning changed in each projection matrix.

Definitions (the metric map is in docs/architecture.md, "What is measured, and where"):

- update: ``dW = W_ft - W_0`` for full fine-tuning (sft), ``dW = scale * B @ A`` for LoRA
  (Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models"), with
  ``B: [d_out, r]``, ``A: [r, d_in]`` and ``scale = alpha / r`` (or ``alpha / sqrt(r)`` for rsLoRA,
  Kalajdzievski 2023) as peft stores it in ``module.scaling``.
- LoRA singular values come from the factors, never from a dense ``d_out x d_in`` SVD: with thin
  QR decompositions ``B = Q_b R_b`` and ``A^T = Q_a R_a`` (``Q`` with orthonormal columns),
  ``scale * B A = Q_b (scale * R_b R_a^T) Q_a^T``, so the singular values of ``dW`` are those of the
  small ``r x r`` core ``scale * R_b R_a^T`` (rank-revealing factorizations, Golub & Van Loan,
  "Matrix Computations", 4th ed., sec. 5.4). Cost ``O((d_out + d_in) r^2)`` instead of
  ``O(d_out d_in min(d_out, d_in))``.
- metrics of a spectrum (norms, numerical / dtype-aware / energy / stable / effective rank,
  energy in the top k): :mod:`rankscope.analysis.ranks`, which also says which of them need the
  full spectrum and which are exact from the top-k values plus ``||dW||_F``.
- alignment / intruder dimensions (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An
  Illusion of Equivalence", arXiv 2410.21228): take the top-k (k=10) left singular vectors of the
  fine-tuned weight ``W_ft = W_0 + dW``; for each, the largest ``|cos|`` with any left singular
  vector of ``W_0``; an intruder dimension is one whose largest ``|cos|`` is below ``threshold``
  (0.5). Rows: ``intruder_dimensions`` (the count) and ``alignment_mean_cos`` (mean of the k
  largest-|cos| values; 1 means the top directions are all pre-existing ones).
  When ``dW`` is exactly zero (base arm, LoRA with ``B = 0``) this is 1 and 0 by definition and
  no SVD is computed. The weight pass adds counts over a (k, epsilon) grid, the null rate of
  random directions at each epsilon (:mod:`rankscope.analysis.intruder_null`) and the share of
  the update's energy on the intruders (:mod:`rankscope.analysis.weight_spectra`).

This module holds the per-matrix functions (the exact reference path: full float64 Gram
eigendecomposition for ``W_ft``'s top vectors, full SVD of ``W_0``). The per-model pass, the top-k
method and the streaming base reference are in :mod:`rankscope.analysis.weight_spectra`,
:mod:`rankscope.analysis.topk` and :mod:`rankscope.analysis.base_cache`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from rankscope.analysis.ranks import (  # noqa: F401  (re-exported: the metrics of a spectrum)
    DEFAULT_ENERGY_KS,
    default_rtol,
    entropy_effective_rank,
    spectrum_metrics,
)

#: metric names written to ``analysis/spectral.csv`` (energy_top_k for each k in energy_ks)
SPECTRUM_METRICS = (
    "frobenius_norm",
    "spectral_norm",
    "numerical_rank",
    "numerical_rank_dtype",
    "stable_rank",
    "energy_rank_90",
    "energy_rank_99",
    "effective_rank",
)
INTRUDER_METRICS = ("intruder_dimensions", "alignment_mean_cos")

_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)(?:\.|$)")


# --------------------------------------------------------------------------- names


def canonical_module_name(name: str) -> str:
    """Module name as in the plain (un-wrapped) model.

    Strips peft's ``base_model.model.`` prefix and ``.base_layer`` segments, so
    ``base_model.model.model.layers.0.self_attn.q_proj`` and ``model.layers.0.self_attn.q_proj``
    (and ``...q_proj.base_layer``) all map to ``model.layers.0.self_attn.q_proj``.
    """
    if name.startswith("base_model.model."):
        name = name[len("base_model.model.") :]
    return name.replace(".base_layer", "")


def parse_module_name(name: str) -> tuple[int, str] | None:
    """``(layer, short_name)`` of a block module, e.g. ``(3, "q_proj")``; None outside the blocks."""
    match = _LAYER_RE.search(name)
    if match is None:
        return None
    return int(match.group(1)), canonical_module_name(name).rsplit(".", 1)[-1]


def _is_conv1d(module: nn.Module) -> bool:
    # transformers' GPT-2 style Conv1D stores weight as [d_in, d_out]
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf")


def _dense_weight(module: nn.Module, device: torch.device | str = "cpu") -> Tensor:
    """``[d_out, d_in]`` float32 copy of a Linear / Conv1D weight on ``device`` (no host round trip)."""
    weight = module.weight.detach()
    if _is_conv1d(module):
        weight = weight.T
    return weight.to(device=device, dtype=torch.float32)


def block_linear_modules(model: nn.Module) -> Iterable[tuple[str, nn.Module]]:
    """(canonical name, module) of every Linear/Conv1D inside the decoder blocks.

    Embeddings and the LM head are outside the blocks and skipped. In a peft model the wrapped
    ``base_layer`` of each LoRA layer is returned (under the plain model's name).
    """
    seen: set[str] = set()
    for name, module in model.named_modules():
        if not (isinstance(module, nn.Linear) or _is_conv1d(module)):
            continue
        if ".lora_" in name or name.endswith(("lora_A", "lora_B")):
            continue  # the adapter factors themselves
        canonical = canonical_module_name(name)
        if canonical in seen or parse_module_name(canonical) is None:
            continue
        seen.add(canonical)
        yield canonical, module


def snapshot_block_weights(model: nn.Module) -> dict[str, Tensor]:
    """CPU float32 copies of the block projection weights, keyed like a state dict.

    Keys are ``"<canonical module name>.weight"`` (``model.layers.0.self_attn.q_proj.weight``),
    values ``[d_out, d_in]`` (Conv1D weights are transposed). The copies are independent of the
    model, so training the model afterwards does not change the snapshot.
    """
    return {
        f"{name}.weight": _dense_weight(module).clone() for name, module in block_linear_modules(model)
    }


def _lora_factors_cpu(module: nn.Module, adapter_names: list[str] | None) -> tuple[Tensor, Tensor, torch.dtype] | None:
    """Scaled factors ``(B_cat [d_out, R], A_cat [R, d_in], factor dtype)`` of a layer's active adapters,
    CPU float32.

    Several active adapters add up: ``sum_i s_i B_i A_i = [s_1 B_1 | s_2 B_2 ...] @ [A_1; A_2 ...]``.
    With fan_in_fan_out (GPT-2 Conv1D) peft still keeps A, B in Linear layout: ``B @ A`` is
    ``[d_out, d_in]``, matching :func:`_dense_weight`'s transposed base weight.
    """
    names = adapter_names or list(getattr(module, "active_adapters", None) or ["default"])
    Bs, As = [], []
    dtype = torch.float32
    for name in names:
        if name not in module.lora_A or name not in module.lora_B:
            continue
        A = module.lora_A[name].weight.detach()  # [r, d_in]
        B = module.lora_B[name].weight.detach()  # [d_out, r]
        if A.ndim != 2 or B.ndim != 2:
            continue  # conv / embedding LoRA: not a projection matrix
        dtype = A.dtype
        Bs.append(float(module.scaling[name]) * B.to(device="cpu", dtype=torch.float32))
        As.append(A.to(device="cpu", dtype=torch.float32))
    if not Bs:
        return None
    return torch.cat(Bs, dim=1), torch.cat(As, dim=0), dtype


def _lookup(base_weights: Mapping[str, Tensor], name: str) -> Tensor | None:
    for key in (f"{name}.weight", name, f"base_model.model.{name}.weight"):
        if key in base_weights:
            return base_weights[key]
    return None


# --------------------------------------------------------------------------- spectra


def lora_update_singular_values(B: Tensor, A: Tensor, scale: float) -> Tensor:
    """Singular values of ``scale * B @ A`` from the factors (descending, float32).

    Args:
        B: ``[d_out, r]`` (peft ``lora_B.weight``).
        A: ``[r, d_in]`` (peft ``lora_A.weight``).
        scale: the LoRA scaling (``alpha / r``, or ``alpha / sqrt(r)`` for rsLoRA).

    Returns:
        ``Tensor[min(r, d_out, d_in)]``: thin QR of ``B`` and ``A^T`` (float64), then the SVD of the
        small core ``scale * R_b @ R_a^T``. Never forms the dense ``d_out x d_in`` product.
    """
    if B.ndim != 2 or A.ndim != 2 or B.shape[1] != A.shape[0]:
        raise ValueError(f"expected B [d_out, r] and A [r, d_in], got {tuple(B.shape)} and {tuple(A.shape)}")
    B64 = B.detach().to(device="cpu", dtype=torch.float64)  # [d_out, r]
    At64 = A.detach().to(device="cpu", dtype=torch.float64).T  # [d_in, r]
    R_b = torch.linalg.qr(B64, mode="r").R  # [min(d_out, r), r]
    R_a = torch.linalg.qr(At64, mode="r").R  # [min(d_in, r), r]
    core = float(scale) * (R_b @ R_a.T)  # [min(d_out, r), min(d_in, r)]
    return torch.linalg.svdvals(core).to(torch.float32)


def dense_singular_values(delta: Tensor) -> Tensor:
    """Singular values of a dense update ``delta [d_out, d_in]`` (descending, float32, CPU)."""
    return torch.linalg.svdvals(delta.detach().to(device="cpu", dtype=torch.float32))


def left_singular_vectors(W: Tensor) -> Tensor:
    """All left singular vectors of ``W [d_out, d_in]``: ``U [d_out, min(d_out, d_in)]`` (float32)."""
    return torch.linalg.svd(W.detach().to(device="cpu", dtype=torch.float32), full_matrices=False).U


def top_left_singular_vectors(W: Tensor, k: int) -> Tensor:
    """Top-``k`` left singular vectors of ``W [d_out, d_in]``: ``[d_out, k]`` float32, descending.

    From the float64 eigendecomposition of the smaller Gram matrix (``W W^T`` if
    ``d_out <= d_in``, else ``W^T W`` and ``u_i = W v_i / s_i``): about 2-4x cheaper on CPU than a
    full SVD of ``W`` for the projection shapes of small LMs, and as accurate for the top
    directions (the ones with ``s_i`` far from 0, where dividing by ``s_i`` is stable). Each
    vector is defined up to sign, as with any SVD.
    """
    W64 = W.detach().to(device="cpu", dtype=torch.float64)
    d_out, d_in = W64.shape
    k = min(k, d_out, d_in)
    if d_out <= d_in:
        _, vecs = torch.linalg.eigh(W64 @ W64.T)  # ascending eigenvalues
        U = vecs[:, -k:].flip(-1)  # [d_out, k]
    else:
        evals, vecs = torch.linalg.eigh(W64.T @ W64)  # [d_in], [d_in, d_in]
        V = vecs[:, -k:].flip(-1)  # [d_in, k]
        U = W64 @ V  # [d_out, k], columns s_i u_i
        U = U / torch.linalg.vector_norm(U, dim=0, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    return U.to(torch.float32)


def intruder_dimensions(
    W0: Tensor,
    W_ft: Tensor,
    k: int = 10,
    threshold: float = 0.5,
    *,
    U0: Tensor | None = None,
) -> tuple[Tensor, int]:
    """Intruder dimensions (Shuttleworth et al. 2024, arXiv 2410.21228).

    Args:
        W0: base weight ``[d_out, d_in]``.
        W_ft: fine-tuned weight ``[d_out, d_in]``.
        k: how many top left singular vectors of ``W_ft`` to test (clipped to ``min(d_out, d_in)``).
        threshold: a direction is an intruder when its max ``|cos|`` is below this.
        U0: ``W0``'s left singular vectors ``[d_out, min(d_out, d_in)]`` if already known
            (they are the same for every arm; :class:`~rankscope.analysis.BaseReference` caches them).

    Returns:
        ``(max_cos [k], count)``: for each of ``W_ft``'s top-k left singular vectors the largest
        ``|cos|`` with any left singular vector of ``W0``, and how many fall below ``threshold``.
        Identical weights give ``max_cos = 1`` and count 0 without computing an SVD.
    """
    k = min(k, *W0.shape)
    if torch.equal(W0, W_ft):
        return torch.ones(k), 0
    U0 = left_singular_vectors(W0) if U0 is None else U0.to(device="cpu", dtype=torch.float32)
    U_ft = top_left_singular_vectors(W_ft, k)  # [d_out, k]
    max_cos = (U0.T @ U_ft).abs().amax(dim=0).clamp(max=1.0)  # [k]
    return max_cos, int((max_cos < threshold).sum())
