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
- metrics of a spectrum ``s`` (descending) of a ``d_out x d_in`` update:
  ``frobenius_norm = sqrt(sum s^2)``; ``spectral_norm = s_max``;
  ``numerical_rank = #{s_i > rtol * s_max}`` with ``rtol = max(d_out, d_in) * eps(float32)`` by
  default (the tolerance of ``numpy.linalg.matrix_rank``, at float32 because weights are float32;
  an all-zero update has rank 0);
  ``stable_rank = ||dW||_F^2 / ||dW||_2^2`` (Rudelson & Vershynin 2007);
  ``effective_rank = exp(H(p))``, ``p = s / sum(s)``, ``H`` the Shannon entropy in nats
  (Roy & Vetterli 2007, "The effective rank: a measure of effective dimensionality");
  ``energy_top_k = sum_{i<k} s_i^2 / sum s^2`` (fraction of the squared Frobenius norm in the
  top-k directions; k in ``energy_ks``, default (1, 8)).
  For a zero update every metric is 0 (no NaN): norms 0, ranks 0, energy 0.
- alignment / intruder dimensions (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An
  Illusion of Equivalence", arXiv 2410.21228): take the top-k (k=10) left singular vectors of the
  fine-tuned weight ``W_ft = W_0 + dW``; for each, the largest ``|cos|`` with any left singular
  vector of ``W_0``; an intruder dimension is one whose largest ``|cos|`` is below ``threshold``
  (0.5). Rows: ``intruder_dimensions`` (the count) and ``alignment_mean_cos`` (mean of the k
  largest-|cos| values; 1 means the top directions are all pre-existing ones).
  When ``dW`` is exactly zero (base arm, LoRA with ``B = 0``) this is 1 and 0 by definition and
  no SVD is computed.

Everything is computed on CPU in float32; the small LoRA cores in float64.

Caveat for sft: ``W_ft - W_0`` is taken in float32, so its noise floor is about
``eps(float32) * |W_0|``; a tiny but real dense update is (correctly) full rank.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from rankscope.runstore.analysis_rows import SpectralRow

#: metric names written to ``analysis/spectral.csv`` (energy_top_k for each k in energy_ks)
SPECTRUM_METRICS = (
    "frobenius_norm",
    "spectral_norm",
    "numerical_rank",
    "stable_rank",
    "effective_rank",
)
INTRUDER_METRICS = ("intruder_dimensions", "alignment_mean_cos")
DEFAULT_ENERGY_KS = (1, 8)

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


def _dense_weight(module: nn.Module) -> Tensor:
    """``[d_out, d_in]`` float32 CPU copy of a Linear / Conv1D weight."""
    weight = module.weight.detach()
    if _is_conv1d(module):
        weight = weight.T
    return weight.to(device="cpu", dtype=torch.float32)


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


def entropy_effective_rank(singular_values: Tensor | np.ndarray) -> float:
    """Effective rank ``exp(H(p))``, ``p = s / sum(s)`` (Roy & Vetterli 2007); 0 for all-zero ``s``."""
    s = torch.as_tensor(np.asarray(singular_values), dtype=torch.float64).clamp_min(0)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def default_rtol(shape: tuple[int, int]) -> float:
    """``max(d_out, d_in) * eps(float32)``, the tolerance of ``numpy.linalg.matrix_rank``."""
    return max(shape) * float(np.finfo(np.float32).eps)


def spectrum_metrics(
    singular_values: Tensor | np.ndarray,
    shape: tuple[int, int],
    *,
    rtol: float | None = None,
    energy_ks: Iterable[int] = DEFAULT_ENERGY_KS,
) -> dict[str, float]:
    """Metrics of an update's spectrum (see the module docstring for the formulas and sources).

    Args:
        singular_values: the update's singular values (any order; all of them, or for LoRA the
            ``<= r`` possibly non-zero ones: the rest are zero and change no metric).
        shape: ``(d_out, d_in)`` of the update, for the default rank tolerance.
        rtol: relative tolerance of ``numerical_rank``; default ``max(d_out, d_in) * eps(float32)``.
        energy_ks: the k of each ``energy_top_k`` metric.

    Returns:
        ``{frobenius_norm, spectral_norm, numerical_rank, stable_rank, effective_rank,
        energy_top_<k>...}``, all finite; all 0 for a zero update.
    """
    s = torch.as_tensor(np.asarray(singular_values), dtype=torch.float64).abs()
    s = torch.sort(s, descending=True).values
    rtol = default_rtol(shape) if rtol is None else rtol
    s_max = float(s[0]) if s.numel() else 0.0
    energy = s.square()
    total = float(energy.sum())
    out: dict[str, float] = {
        "frobenius_norm": math.sqrt(total),
        "spectral_norm": s_max,
        "numerical_rank": float(int((s > rtol * s_max).sum())) if s_max > 0 else 0.0,
        "stable_rank": total / s_max**2 if s_max > 0 else 0.0,
        "effective_rank": entropy_effective_rank(s),
    }
    for k in energy_ks:
        out[f"energy_top_{k}"] = float(energy[:k].sum()) / total if total > 0 else 0.0
    return out


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


# --------------------------------------------------------------------------- model level


@dataclass
class SpectralResult:
    """Rows for ``analysis/spectral.csv`` and vectors for ``analysis/singular_values.safetensors``.

    ``singular_values`` keys are ``"<arm_id>/<layer>/<module>"``, values float32, descending.
    """

    rows: list[SpectralRow] = field(default_factory=list)
    singular_values: dict[str, np.ndarray] = field(default_factory=dict)
    method: str = "dense"  # lora | dense


def _lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return []
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


def _lora_factors(module: nn.Module, adapter_names: list[str] | None) -> tuple[Tensor, Tensor] | None:
    """Scaled factors ``(B_cat [d_out, R], A_cat [R, d_in])`` of all active adapters of a layer.

    Several active adapters add up: ``sum_i s_i B_i A_i = [s_1 B_1 | s_2 B_2 ...] @ [A_1; A_2 ...]``.
    """
    names = adapter_names or list(getattr(module, "active_adapters", None) or ["default"])
    Bs, As = [], []
    for name in names:
        if name not in module.lora_A or name not in module.lora_B:
            continue
        A = module.lora_A[name].weight.detach().to(device="cpu", dtype=torch.float32)  # [r, d_in]
        B = module.lora_B[name].weight.detach().to(device="cpu", dtype=torch.float32)  # [d_out, r]
        if A.ndim != 2 or B.ndim != 2:
            continue  # conv / embedding LoRA: not a projection matrix
        # with fan_in_fan_out (GPT-2 Conv1D) peft still keeps A, B in Linear layout: B @ A is
        # [d_out, d_in], matching _dense_weight's transposed base weight
        Bs.append(float(module.scaling[name]) * B)
        As.append(A)
    if not Bs:
        return None
    return torch.cat(Bs, dim=1), torch.cat(As, dim=0)


def _module_rows(
    arm_id: str,
    layer: int,
    short: str,
    metrics: dict[str, float],
) -> list[SpectralRow]:
    return [SpectralRow(arm_id, layer, short, metric, float(value)) for metric, value in metrics.items()]


def weight_update_spectra(
    arm_id: str,
    model: nn.Module,
    base_weights: Mapping[str, Tensor] | None,
    *,
    base_left_singular_vectors: Mapping[str, Tensor] | None = None,
    intruder_k: int = 10,
    intruder_threshold: float = 0.5,
    energy_ks: Iterable[int] = DEFAULT_ENERGY_KS,
    rtol: float | None = None,
    intruders: bool = True,
    adapter_names: list[str] | None = None,
) -> SpectralResult:
    """Spectra of every block projection's weight update.

    Two cases:

    (a) ``model`` holds peft LoRA layers (a ``PeftModel`` with adapters active): for each
        ``LoraLayer``, ``dW = scaling * lora_B.weight @ lora_A.weight`` (all active adapters
        summed), singular values from the factors (:func:`lora_update_singular_values`);
        ``W_0 = base_layer.weight`` (``W_ft - dW`` if the adapter is merged), ``W_ft = W_0 + dW``
        only for the intruder test. ``base_weights`` is not needed.
    (b) otherwise (sft, or the base arm itself): ``dW = W - base_weights[name]`` for every Linear in
        the decoder blocks, dense singular values. The base model gives zero updates everywhere.

    Args:
        arm_id: written into every row and key.
        model: the arm's model (any device/dtype; copies to CPU float32 module by module).
        base_weights: CPU snapshot of the base model, state-dict keys
            (``model.layers.0.self_attn.q_proj.weight``), e.g. :func:`snapshot_block_weights`.
        base_left_singular_vectors: canonical module name -> ``U0`` cache for the intruder test.
        intruder_k, intruder_threshold: Shuttleworth et al.'s k and epsilon.
        energy_ks: k of each ``energy_top_k``; rtol: see :func:`spectrum_metrics`.
        intruders: False skips the intruder test (it needs a dense SVD of ``W_ft`` per module).
        adapter_names: LoRA adapters to include (default: the active ones).

    Returns:
        :class:`SpectralResult` with one row per (module, metric): the metrics of
        :func:`spectrum_metrics` plus ``intruder_dimensions`` and ``alignment_mean_cos``.
    """
    energy_ks = tuple(energy_ks)
    U_cache = base_left_singular_vectors or {}
    result = SpectralResult()

    def add(name: str, layer: int, short: str, s: Tensor, shape, W0: Tensor | None, W_ft):
        metrics = spectrum_metrics(s, shape, rtol=rtol, energy_ks=energy_ks)
        if intruders and W0 is not None:
            max_cos, count = intruder_dimensions(
                W0, W_ft(), intruder_k, intruder_threshold, U0=U_cache.get(name)
            )
            metrics["intruder_dimensions"] = float(count)
            metrics["alignment_mean_cos"] = float(max_cos.mean())
        result.rows.extend(_module_rows(arm_id, layer, short, metrics))
        vec = torch.sort(s.detach().to(torch.float32).abs(), descending=True).values
        result.singular_values[f"{arm_id}/{layer}/{short}"] = vec.numpy().astype(np.float32)

    lora_layers = _lora_layers(model)
    if lora_layers:
        result.method = "lora"
        for raw_name, module in lora_layers:
            name = canonical_module_name(raw_name)
            parsed = parse_module_name(name)
            factors = _lora_factors(module, adapter_names)
            if parsed is None or factors is None:
                continue
            layer, short = parsed
            B, A = factors  # [d_out, R], [R, d_in] (scale folded into B)
            s = lora_update_singular_values(B, A, 1.0)
            W = _dense_weight(module.get_base_layer())  # [d_out, d_in]
            zero = s.numel() == 0 or not bool(s.abs().max() > 0)
            merged = bool(getattr(module, "merged", False))
            W0 = W - B @ A if merged and not zero else W  # merged: base_layer holds W_0 + dW

            def fine_tuned(W0=W0, B=B, A=A, zero=zero) -> Tensor:
                return W0 if zero else W0 + B @ A  # [d_out, d_in], only for the intruder test

            add(name, layer, short, s, tuple(W0.shape), W0, fine_tuned)
        return result

    if base_weights is None:
        raise ValueError(
            f"arm {arm_id!r}: the model has no LoRA layers, so its update is W - W_0 and needs "
            "base_weights (a snapshot of the base model, e.g. BaseReference.compute(base_model, probes))"
        )
    unmatched: list[str] = []
    for name, module in block_linear_modules(model):
        parsed = parse_module_name(name)
        W0 = _lookup(base_weights, name)
        if parsed is None or W0 is None:
            unmatched.append(name)
            continue
        layer, short = parsed
        W_ft = _dense_weight(module)  # [d_out, d_in]
        W0 = W0.to(device="cpu", dtype=torch.float32)
        if W0.shape != W_ft.shape:
            raise ValueError(f"arm {arm_id!r}: {name} has shape {tuple(W_ft.shape)} but the base snapshot {tuple(W0.shape)}")
        delta = W_ft - W0
        s = dense_singular_values(delta) if bool(delta.any()) else torch.zeros(min(delta.shape))
        add(name, layer, short, s, tuple(delta.shape), W0, lambda W_ft=W_ft: W_ft)
    if unmatched and not result.rows:
        raise ValueError(
            f"arm {arm_id!r}: none of the model's block projections (e.g. {unmatched[0]!r}) is in "
            f"base_weights (keys like {next(iter(base_weights), None)!r}); snapshot the same "
            "architecture with snapshot_block_weights(base_model)"
        )
    return result
