"""Norms and ranks of a weight update from its singular values, complete or top-k.

Metrics of a spectrum ``s`` (descending) of a ``d_out x d_in`` update ``dW``:

- ``frobenius_norm = ||dW||_F`` (``sqrt(sum s^2)``, or given directly when only the top-k is known);
  ``spectral_norm = s_1``;
- ``stable_rank = ||dW||_F^2 / s_1^2`` (Rudelson & Vershynin 2007);
- ``numerical_rank = #{s_i > rtol * s_1}``, ``rtol = max(d_out, d_in) * eps(float32)``: the
  tolerance of ``numpy.linalg.matrix_rank`` at float32 (kept for comparison with earlier runs);
- ``numerical_rank_dtype = #{s_i > s_1 * eps / 2 * sqrt(d_out + d_in + 1)}`` with ``eps`` of the
  dtype the weights were trained in (``eps(bfloat16) = 2^-7``, ``eps(float16) = 2^-10``,
  ``eps(float32) = 2^-23``): the "expected roundoff error" threshold of Numerical Recipes (Press
  et al. 2007, 3rd ed., p. 71; quoted in ``numpy.linalg.matrix_rank``'s notes). Rounding errors are
  random, so their spectral norm grows like ``sqrt(d)``; numpy's worst-case ``max(d_out, d_in) *
  eps`` would be ``>= 1`` for bf16 and any side above 128, i.e. every bf16 update would have rank 0.
  With the fp32 tolerance, bf16 rounding noise alone makes an update full rank; with this one it
  does not;
- ``energy_rank_90`` / ``energy_rank_99``: the smallest ``r`` with
  ``sum_{i<=r} s_i^2 >= 0.90 (0.99) ||dW||_F^2``: rounding noise of relative size ``e`` moves the
  energy by ~``e^2``, so these barely move (the robust ranks the report uses);
- ``effective_rank = exp(H(p))``, ``p = s / sum(s)`` (Roy & Vetterli 2007), inflated by noise;
- ``energy_top_k = sum_{i<k} s_i^2 / ||dW||_F^2`` for k in ``energy_ks``.

Which metrics need the full spectrum: ``effective_rank`` always (every ``s_i`` enters ``p``). The
others are exact from the top-k values plus ``||dW||_F`` when determinable: ``numerical_rank*``
when the smallest computed value is already below the tolerance, ``energy_rank_*`` and
``energy_top_k`` when reached within the top-k. A metric that is not determinable is left out
(never guessed), and ``energy_captured`` (the fraction of ``||dW||_F^2`` in the computed values)
says how much of the spectrum was seen. A zero update gives 0 for every metric (no NaN).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

DEFAULT_ENERGY_KS = (1, 8)
ENERGY_RANK_LEVELS = (0.90, 0.99)


def dtype_eps(dtype: torch.dtype | str) -> float:
    """Machine epsilon of a floating dtype (``torch.finfo``), e.g. 2^-7 for bfloat16."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    return float(torch.finfo(dtype).eps)


def default_rtol(shape: tuple[int, int], dtype: torch.dtype | str = torch.float32) -> float:
    """``max(d_out, d_in) * eps(dtype)``, the tolerance of ``numpy.linalg.matrix_rank``."""
    return max(shape) * dtype_eps(dtype)


def roundoff_rtol(shape: tuple[int, int], dtype: torch.dtype | str = torch.float32) -> float:
    """``eps(dtype) / 2 * sqrt(d_out + d_in + 1)``: Numerical Recipes' expected-roundoff tolerance."""
    return dtype_eps(dtype) / 2 * math.sqrt(shape[0] + shape[1] + 1)


def entropy_effective_rank(singular_values: Tensor | np.ndarray) -> float:
    """Effective rank ``exp(H(p))``, ``p = s / sum(s)`` (Roy & Vetterli 2007); 0 for all-zero ``s``."""
    s = torch.as_tensor(np.asarray(singular_values), dtype=torch.float64).clamp_min(0)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def _rank_above(s: Tensor, tol: float, complete: bool) -> float | None:
    """``#{s_i > tol}``, or None when values beyond the computed ones could still exceed ``tol``."""
    count = int((s > tol).sum())
    if not complete and count == s.numel():
        return None
    return float(count)


def energy_rank(s: Tensor, total: float, level: float) -> float | None:
    """Smallest ``r`` whose top-``r`` squared values reach ``level * total``; None if not within ``s``."""
    if total <= 0:
        return 0.0
    cumulative = torch.cumsum(s.square(), 0) / total
    reached = torch.nonzero(cumulative >= level - 1e-12)
    return float(int(reached[0]) + 1) if reached.numel() else None


def spectrum_metrics(
    singular_values: Tensor | np.ndarray,
    shape: tuple[int, int],
    *,
    rtol: float | None = None,
    energy_ks: Iterable[int] = DEFAULT_ENERGY_KS,
    dtype: torch.dtype | str = torch.float32,
    frobenius_norm: float | None = None,
    complete: bool = True,
) -> dict[str, float]:
    """Metrics of an update's spectrum (definitions and sources in the module docstring).

    Args:
        singular_values: the update's singular values (any order): all of them (``complete``), or
            for LoRA the ``<= r`` possibly non-zero ones, or the top-k of a dense update.
        shape: ``(d_out, d_in)`` of the update, for the rank tolerances.
        rtol: relative tolerance of ``numerical_rank``; default ``max(d_out, d_in) * eps(float32)``.
        energy_ks: the k of each ``energy_top_k`` metric.
        dtype: the dtype the weights were trained in, for ``numerical_rank_dtype``.
        frobenius_norm: ``||dW||_F`` when ``singular_values`` is only the top-k.
        complete: False when values beyond the given ones may be non-zero.

    Returns:
        metric -> value, all finite; metrics not determinable from a top-k spectrum are absent.
    """
    s = torch.as_tensor(np.asarray(singular_values), dtype=torch.float64).abs()
    s = torch.sort(s, descending=True).values
    rtol = default_rtol(shape) if rtol is None else rtol
    s_max = float(s[0]) if s.numel() else 0.0
    energy = s.square()
    captured = float(energy.sum())
    total = captured if frobenius_norm is None else float(frobenius_norm) ** 2
    total = max(total, captured)  # rounding: the top-k never holds more than everything
    complete = complete or (s_max == 0.0 and total == 0.0)
    out: dict[str, float] = {
        "frobenius_norm": math.sqrt(total),
        "spectral_norm": s_max,
        "stable_rank": total / s_max**2 if s_max > 0 else 0.0,
    }
    ranks = {
        "numerical_rank": _rank_above(s, rtol * s_max, complete) if s_max > 0 else 0.0,
        "numerical_rank_dtype": _rank_above(s, roundoff_rtol(shape, dtype) * s_max, complete) if s_max > 0 else 0.0,
    }
    for level in ENERGY_RANK_LEVELS:
        ranks[f"energy_rank_{round(level * 100)}"] = energy_rank(s, total, level)
    if complete:
        ranks["effective_rank"] = entropy_effective_rank(s)
    out.update({k: v for k, v in ranks.items() if v is not None})
    for k in energy_ks:
        if complete or k <= s.numel():
            out[f"energy_top_{k}"] = float(energy[:k].sum()) / total if total > 0 else 0.0
    if not complete:
        out["energy_captured"] = captured / total if total > 0 else 0.0
    return out


__all__ = ["DEFAULT_ENERGY_KS", "ENERGY_RANK_LEVELS", "default_rtol", "dtype_eps", "energy_rank",
           "entropy_effective_rank", "roundoff_rtol", "spectrum_metrics"]
