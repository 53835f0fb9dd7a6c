"""The per-model weight pass: the base reference (once per sweep) and every arm's update spectra.

Both stream one block projection at a time (host memory bounded by a module, not the model) and
compute on the analysis device (``analysis.device: auto`` = where the model's weights are).

Two methods (``analysis.method``), same definitions (:mod:`rankscope.analysis.spectral`):

- ``exact`` (the reference path): the base reference keeps every left singular vector of
  ``W_0``; ``W_ft``'s top-k vectors come from a float64 Gram eigendecomposition and a dense
  update's spectrum from a full SVD.
- ``topk`` (default): ``W_ft``'s top-k vectors, ``W_0``'s top ``reference_k`` vectors and a dense
  update's top ``spectrum_k`` values come from the randomized method of
  :mod:`rankscope.analysis.topk` with its residual check (refined, or exact as a fallback).
  A dense update's rank metrics come from those values plus ``||dW||_F``
  (:mod:`rankscope.analysis.ranks` says which are determinable); ``full_spectrum: true`` adds the
  full singular values (on the device) for the metrics that need them.
  Intruder test: ``W_ft``'s top-k vectors against ``W_0``'s top ``reference_k`` (default
  ``max(64, 4k)``) instead of all of them. The best ``|cos|`` over a subset is a lower bound of
  the best over all, so this can only count more intruders, and only when a top direction of
  ``W_ft`` matches none of ``W_0``'s top ``reference_k`` but one beyond them; the quick preset and
  ``bench/analysis_scale.py`` check the counts agree with ``exact``.

LoRA updates use the exact factor path (``lora_update_singular_values``) in both methods.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from rankscope.analysis.base_cache import BaseWeightCache, ModuleReference, fingerprint_weights
from rankscope.analysis.intruder_null import null_rate
from rankscope.analysis.ranks import DEFAULT_ENERGY_KS, spectrum_metrics
from rankscope.runstore.analysis_rows import SpectralRow
from rankscope.analysis.spectral import (
    _dense_weight,
    _is_conv1d,
    _lookup,
    _lora_factors_cpu,
    block_linear_modules,
    canonical_module_name,
    dense_singular_values,
    lora_update_singular_values,
    parse_module_name,
    top_left_singular_vectors,
)
from rankscope.analysis.topk import TopK, TopKSettings, takes_dense, top_singular_triplets

log = logging.getLogger(__name__)

#: Grid of the intruder test (Shuttleworth et al. 2024 use k = 10, epsilon = 0.5 alone).
DEFAULT_GRID_K = (1, 5, 10)
DEFAULT_GRID_EPS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.9)


def grid_name(k: int, eps: float) -> str:
    """Row name of one grid cell, e.g. ``intruders_k10_eps0.5``."""
    return f"intruders_k{k}_eps{eps:g}"


def null_name(eps: float) -> str:
    """Row name of the null rate at one epsilon, e.g. ``intruder_null_eps0.5``."""
    return f"intruder_null_eps{eps:g}"


@dataclass(frozen=True)
class SpectralSettings:
    """How the weight pass runs (read from the config's ``analysis`` spec; see its keys)."""

    method: str = "topk"  # topk | exact
    device: str = "auto"  # auto (the model's device) | cpu | cuda | cuda:N
    full_spectrum: bool = False
    spectrum_k: int = 64
    reference_k: int | None = None  # None: max(64, 4 * intruder_k)
    rank_dtype: str = "auto"  # auto (the trained weights' dtype) | float32 | bfloat16 | float16
    topk: TopKSettings = field(default_factory=TopKSettings)

    def __post_init__(self) -> None:
        if self.method not in ("topk", "exact"):
            raise ValueError(f"analysis.method must be 'topk' or 'exact', not {self.method!r}")

    def base_k(self, intruder_k: int) -> int:
        """Base vectors kept for the intruder test: never fewer than the ``intruder_k`` tested."""
        return max(self.reference_k, intruder_k) if self.reference_k is not None else max(64, 4 * intruder_k)


@dataclass
class SpectralResult:
    """Rows for ``analysis/spectral.csv`` and vectors for ``analysis/singular_values.safetensors``.

    ``singular_values`` keys are ``"<arm_id>/<layer>/<module>"``, values float32, descending
    (for a dense update under ``topk`` without ``full_spectrum``: the top ``spectrum_k``).
    ``max_residual`` is the largest relative residual of an accepted top-k result and
    ``exact_fallbacks`` how many matrices fell back to the exact SVD.
    """

    rows: list[SpectralRow] = field(default_factory=list)
    singular_values: dict[str, np.ndarray] = field(default_factory=dict)
    method: str = "dense"  # lora | dense
    max_residual: float = 0.0
    exact_fallbacks: int = 0


def resolve_device(model: nn.Module, device: str) -> torch.device:
    """``auto``: the device of the model's first parameter (the training device)."""
    if device == "auto":
        param = next(iter(model.parameters()), None)
        return param.device if param is not None else torch.device("cpu")
    return torch.device(device)


def _rank_dtype(setting: str, trained: torch.dtype) -> torch.dtype:
    return trained if setting == "auto" else getattr(torch, setting)


# --------------------------------------------------------------------------- base reference


def base_entry(W0: Tensor, settings: SpectralSettings, intruders: bool, intruder_k: int,
               device: torch.device) -> ModuleReference:
    """``W_0`` (as stored) plus the left singular vectors the intruder test compares against."""
    if not intruders:
        return ModuleReference(W0.detach().to("cpu"))
    W = W0.detach().to(device=device, dtype=torch.float32)  # [d_out, d_in]
    if settings.method == "exact":
        U, S, _ = torch.linalg.svd(W, full_matrices=False)  # all of them
    else:
        top = top_singular_triplets(W, settings.base_k(intruder_k), settings.topk, check_k=intruder_k)
        U, S = top.U, top.S
    return ModuleReference(W0.detach().to("cpu"), U.to("cpu"), S.to("cpu"))


def reference_fingerprint(model: nn.Module, settings: SpectralSettings, intruders: bool, intruder_k: int,
                          key: str = "") -> str:
    """Identity of a base reference: model name and weights sample, plus what shaped the vectors."""
    named = [(name, module.weight) for name, module in block_linear_modules(model)]
    identity = f"{key}|{getattr(getattr(model, 'config', None), '_name_or_path', '')}"
    shaped = f"{settings.method}|{settings.base_k(intruder_k) if settings.method == 'topk' else 'all'}|{intruders}"
    return fingerprint_weights(named, identity, shaped)


def build_base_reference(model: nn.Module, directory, settings: SpectralSettings, *, intruders: bool = True,
                         intruder_k: int = 10, key: str = "") -> BaseWeightCache:
    """Compute (or resume) the per-module base reference of ``model`` into ``directory``.

    Modules already on disk with the same fingerprint are kept; a peft-wrapped model gives its
    ``base_layer`` weights. Returns the cache, complete.
    """
    cache = BaseWeightCache(directory, reference_fingerprint(model, settings, intruders, intruder_k, key))
    if cache.complete():
        return cache
    device = resolve_device(model, settings.device)
    for name, module in block_linear_modules(model):
        if name not in cache.modules:
            cache.modules.append(name)
        if directory is not None and cache.has(name):
            continue
        W0 = module.weight.detach()
        W0 = W0.T if _is_conv1d(module) else W0  # [d_out, d_in]
        cache.put(name, base_entry(W0, settings, intruders, intruder_k, device))
    cache.finish()
    return cache


def as_cache(base_weights, base_left_singular_vectors: Mapping[str, Tensor] | None) -> BaseWeightCache | None:
    """Wrap a plain ``{"<module>.weight": W_0}`` snapshot (and optional ``U_0`` cache) in memory."""
    if base_weights is None or isinstance(base_weights, BaseWeightCache):
        return base_weights
    cache = BaseWeightCache(None, "in-memory")
    for key, W0 in base_weights.items():
        name = key[: -len(".weight")] if key.endswith(".weight") else key
        U = (base_left_singular_vectors or {}).get(name)
        cache.put(name, ModuleReference(W0, U, None))
    cache._plain = base_weights  # noqa: SLF001 - for _lookup's alternative key spellings
    return cache


def _reference_for(cache: BaseWeightCache, name: str) -> ModuleReference | None:
    entry = cache.get(name)
    if entry is None and hasattr(cache, "_plain"):
        W0 = _lookup(cache._plain, name)  # noqa: SLF001
        entry = ModuleReference(W0) if W0 is not None else None
    return entry


# --------------------------------------------------------------------------- arms


@dataclass
class _Pass:
    """State of one arm's weight pass."""

    arm_id: str
    settings: SpectralSettings
    device: torch.device
    intruders: bool
    intruder_k: int
    intruder_threshold: float
    energy_ks: tuple[int, ...]
    rtol: float | None
    result: SpectralResult
    grid_k: tuple[int, ...] = ()
    grid_eps: tuple[float, ...] = ()

    def track(self, top: TopK) -> TopK:
        if top.method == "exact":
            self.result.exact_fallbacks += 1
        self.result.max_residual = max(self.result.max_residual, top.residual)
        return top

    def top_vectors(self, W: Tensor) -> Tensor:
        """``W``'s top-k left singular vectors ``[d_out, k]`` on the device."""
        if self.settings.method == "exact" or takes_dense(tuple(W.shape), self.intruder_k, self.settings.topk):
            # small matrices: the float64 Gram eigendecomposition, cheaper than a dense SVD with vectors
            return top_left_singular_vectors(W.cpu(), self.intruder_k).to(self.device)
        return self.track(top_singular_triplets(W, self.intruder_k, self.settings.topk)).U

    def intruder_metrics(self, W0: Tensor, W_ft: Tensor, entry: ModuleReference | None) -> dict[str, float]:
        """Count, alignment, the (k, epsilon) grid, the null rate per epsilon and the energy share.

        Grid rows ``intruders_k<k>_eps<eps>``: the count among ``W_ft``'s top ``k`` vectors at
        threshold ``eps`` (each ``k <= intruder_k``, from the same vectors). ``intruder_null_eps<eps>``:
        the rate at which a uniformly random unit direction in ``R^{d_out}`` would be flagged against
        the same ``m`` base vectors (:mod:`rankscope.analysis.intruder_null`). ``intruder_energy_share``:
        ``||U_I^T dW||_F^2 / ||dW||_F^2``, the share of the update's energy along the intruders ``U_I``
        (at ``intruder_k``, ``intruder_threshold``): how much of what fine-tuning wrote lives there.
        """
        k = min(self.intruder_k, *W0.shape)
        grid_k = [g for g in self.grid_k if g <= k]
        if torch.equal(W0, W_ft):
            zero = {"intruder_dimensions": 0.0, "alignment_mean_cos": 1.0, "intruder_energy_share": 0.0}
            zero.update({grid_name(g, e): 0.0 for g in grid_k for e in self.grid_eps})
            return zero
        U0 = entry.left_vectors if entry is not None and entry.left_vectors is not None else None
        if U0 is None:  # no cached reference vectors: compute them like the reference would
            U0 = base_entry(W0, self.settings, True, k, self.device).left_vectors
        U0 = U0.to(device=self.device, dtype=torch.float32)  # [d_out, m]
        U_ft = self.top_vectors(W_ft)[:, :k]  # [d_out, k]
        max_cos = (U0.T @ U_ft).abs().amax(dim=0).clamp(max=1.0)  # [k]
        flagged = max_cos < self.intruder_threshold  # [k]
        delta = W_ft - W0  # [d_out, d_in]
        total = float(delta.square().sum())
        along = float((U_ft[:, flagged].T @ delta).square().sum()) if bool(flagged.any()) else 0.0  # ||U_I^T dW||^2
        out = {"intruder_dimensions": float(int(flagged.sum())), "alignment_mean_cos": float(max_cos.mean()),
               "intruder_energy_share": min(1.0, along / total) if total > 0 else 0.0}
        for g in grid_k:
            for e in self.grid_eps:
                out[grid_name(g, e)] = float(int((max_cos[:g] < e).sum()))
        for e in self.grid_eps:
            out[null_name(e)] = null_rate(int(W0.shape[0]), int(U0.shape[1]), float(e))
        return out

    def add(self, layer: int, short: str, s: Tensor, shape, metrics_extra: dict[str, float], dtype,
            frobenius: float | None = None, complete: bool = True) -> None:
        metrics = spectrum_metrics(s.cpu(), shape, rtol=self.rtol, energy_ks=self.energy_ks,
                                   dtype=_rank_dtype(self.settings.rank_dtype, dtype),
                                   frobenius_norm=frobenius, complete=complete)
        metrics.update(metrics_extra)
        self.result.rows.extend(SpectralRow(self.arm_id, layer, short, m, float(v)) for m, v in metrics.items())
        vec = torch.sort(s.detach().cpu().to(torch.float32).abs(), descending=True).values
        self.result.singular_values[f"{self.arm_id}/{layer}/{short}"] = vec.numpy().astype(np.float32)

    def dense_spectrum(self, delta: Tensor) -> tuple[Tensor, float, bool]:
        """``(values, ||dW||_F, complete)`` of a dense update on the device."""
        if not bool(delta.any()):
            return torch.zeros(min(delta.shape)), 0.0, True
        frobenius = float(torch.linalg.matrix_norm(delta))
        if self.settings.method == "exact" or takes_dense(tuple(delta.shape), self.settings.spectrum_k,
                                                          self.settings.topk):
            return dense_singular_values(delta), frobenius, True  # small: the whole spectrum costs no more
        if self.settings.full_spectrum:
            return torch.linalg.svdvals(delta), frobenius, True
        # values only: each within tol * s_1 of a true one (no vector of dW is used)
        top = self.track(top_singular_triplets(delta, self.settings.spectrum_k, self.settings.topk, check_k=0))
        return top.S, frobenius, top.S.numel() >= min(delta.shape)


def _lora_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    try:
        from peft.tuners.lora import LoraLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return []
    return [(name, m) for name, m in model.named_modules() if isinstance(m, LoraLayer)]


def weight_update_spectra(
    arm_id: str,
    model: nn.Module,
    base_weights: Mapping[str, Tensor] | BaseWeightCache | None,
    *,
    base_left_singular_vectors: Mapping[str, Tensor] | None = None,
    intruder_k: int = 10,
    intruder_threshold: float = 0.5,
    energy_ks: Iterable[int] = DEFAULT_ENERGY_KS,
    rtol: float | None = None,
    intruders: bool = True,
    adapter_names: list[str] | None = None,
    settings: SpectralSettings | None = None,
    intruder_grid_k: Iterable[int] = DEFAULT_GRID_K,
    intruder_grid_eps: Iterable[float] = DEFAULT_GRID_EPS,
) -> SpectralResult:
    """Spectra of every block projection's weight update, one module at a time.

    (a) ``model`` holds peft LoRA layers: ``dW = scaling * lora_B @ lora_A`` (active adapters
        summed), singular values from the factors; ``W_0 = base_layer.weight`` (``W - dW`` if
        merged); ``W_ft = W_0 + dW`` only for the intruder test. ``base_weights`` gives the cached
        base vectors when present and is otherwise not needed.
    (b) otherwise (sft, or the base arm): ``dW = W - W_0`` with ``W_0`` from ``base_weights``.

    Args:
        arm_id: written into every row and key.
        model: the arm's model (any device/dtype).
        base_weights: a :class:`BaseWeightCache` (from :func:`build_base_reference`) or a plain
            ``{"<module>.weight": W_0}`` snapshot (``snapshot_block_weights``).
        base_left_singular_vectors: module -> ``U_0`` for a plain snapshot.
        intruder_k, intruder_threshold: Shuttleworth et al.'s k and epsilon.
        energy_ks, rtol: see :func:`rankscope.analysis.ranks.spectrum_metrics`.
        intruders: False skips the intruder test.
        adapter_names: LoRA adapters to include (default: the active ones).
        settings: method, device, top-k sizes and accuracy (default: ``topk`` on the model's device).
        intruder_grid_k, intruder_grid_eps: the (k, epsilon) grid of intruder counts (k above
            ``intruder_k`` is left out) and the epsilons of the null rate.
    """
    settings = settings or SpectralSettings()
    cache = as_cache(base_weights, base_left_singular_vectors)
    device = resolve_device(model, settings.device)
    state = _Pass(arm_id, settings, device, intruders, intruder_k, intruder_threshold, tuple(energy_ks), rtol,
                  SpectralResult(), tuple(int(k) for k in intruder_grid_k), tuple(float(e) for e in intruder_grid_eps))
    result = state.result

    lora_layers = _lora_layers(model)
    if lora_layers:
        result.method = "lora"
        for raw_name, module in lora_layers:
            name = canonical_module_name(raw_name)
            parsed = parse_module_name(name)
            factors = _lora_factors_cpu(module, adapter_names)
            if parsed is None or factors is None:
                continue
            layer, short = parsed
            B, A, trained = factors  # [d_out, R], [R, d_in] (scale folded into B), factor dtype
            s = lora_update_singular_values(B, A, 1.0)
            W = _dense_weight(module.get_base_layer(), device)  # [d_out, d_in]
            zero = s.numel() == 0 or not bool(s.abs().max() > 0)
            Bd, Ad = B.to(device), A.to(device)
            merged = bool(getattr(module, "merged", False))
            W0 = W - Bd @ Ad if merged and not zero else W
            extra = {}
            if intruders:
                entry = _reference_for(cache, name) if cache is not None else None
                extra = state.intruder_metrics(W0, W0 if zero else W0 + Bd @ Ad, entry)
            state.add(layer, short, s, tuple(W0.shape), extra, trained)
        return result

    if cache is None:
        raise ValueError(
            f"arm {arm_id!r}: the model has no LoRA layers, so its update is W - W_0 and needs "
            "base_weights (a snapshot of the base model, e.g. BaseReference.compute(base_model, probes))"
        )
    unmatched: list[str] = []
    for name, module in block_linear_modules(model):
        parsed = parse_module_name(name)
        entry = _reference_for(cache, name)
        if parsed is None or entry is None:
            unmatched.append(name)
            continue
        layer, short = parsed
        trained = module.weight.dtype
        W_ft = _dense_weight(module, device)  # [d_out, d_in] float32
        W0 = entry.weight.to(device=device, dtype=torch.float32)
        if W0.shape != W_ft.shape:
            raise ValueError(f"arm {arm_id!r}: {name} has shape {tuple(W_ft.shape)} but the base snapshot {tuple(W0.shape)}")
        s, frobenius, complete = state.dense_spectrum(W_ft - W0)
        extra = state.intruder_metrics(W0, W_ft, entry) if intruders else {}
        state.add(layer, short, s, tuple(W0.shape), extra, trained, frobenius, complete)
        del W_ft, W0, entry
    if unmatched and not result.rows:
        raise ValueError(
            f"arm {arm_id!r}: none of the model's block projections (e.g. {unmatched[0]!r}) is in "
            f"base_weights (modules like {next(iter(cache.modules), None)!r}); snapshot the same "
            "architecture with snapshot_block_weights(base_model)"
        )
    if result.exact_fallbacks:
        log.info("%s: %d matrices fell back to the exact SVD", arm_id, result.exact_fallbacks)
    return result


__all__ = ["DEFAULT_GRID_EPS", "DEFAULT_GRID_K", "SpectralResult", "SpectralSettings", "as_cache", "base_entry",
           "build_base_reference", "grid_name", "null_name",
           "reference_fingerprint", "resolve_device", "weight_update_spectra"]
