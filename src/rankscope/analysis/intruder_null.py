"""The null of the intruder test: how often a *random* direction would be called an intruder.

Shuttleworth et al. 2024 ("LoRA vs Full Fine-tuning: An Illusion of Equivalence", arXiv
2410.21228) call a top left singular vector ``u`` of ``W_ft`` an intruder when its largest
``|cos|`` with the base's left singular vectors is below ``epsilon`` (their headline setting
``k = 10``, ``epsilon = 0.5``). Whether such a count means anything depends on how often a
direction with *no* relation to the base would pass the same test. This module gives that rate.

The null: ``u`` uniform on the unit sphere ``S^{d-1}`` (``d = d_out``), compared with ``m``
orthonormal base vectors ``e_1..e_m`` (``m = min(d_out, d_in)`` for the exact test, or the
``intruder_reference_k`` vectors the top-k test keeps). By rotation invariance the projections
``(u.e_1, .., u.e_m)`` are distributed like the first ``m`` coordinates of ``u``, so

    p_null(d, m, eps) = P( max_{j<=m} |u_j| < eps ).

- exact for ``m = 1``: ``u_1^2 ~ Beta(1/2, (d-1)/2)``, so ``p = I_{eps^2}(1/2, (d-1)/2)`` (the
  regularized incomplete beta function);
- for ``m > 1`` the coordinates are dependent (``sum u_j^2 = 1``); :func:`null_rate_approx`
  treats them as independent (``p ~ I_{eps^2}(1/2, (d-1)/2)^m``), good when ``m << d``;
- :func:`null_rate_simulated` is exact up to Monte Carlo error for any ``m <= d`` (seeded), and is
  what the analysis writes (``intruder_null_eps<eps>`` rows of ``analysis/spectral.csv``).

The expected intruder count of ``k`` random directions is ``k * p_null`` (each is tested alone).
At ``d = 576`` (SmolLM2-135M) and ``m = 64`` reference vectors, ``p_null`` is ~1 already at
``eps = 0.2``: at ``eps = 0.5`` every direction that is not close to a base direction counts, so
the count at one threshold says little without this null beside it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.special import betainc

#: Monte Carlo draws per (d, m, eps): the standard error is at most 0.5 / sqrt(n) = 0.0035.
DEFAULT_DRAWS = 20_000


def _check(d: int, m: int, eps: float) -> None:
    if d < 1 or m < 1 or m > d:
        raise ValueError(f"need 1 <= m <= d, got d={d}, m={m}")
    if not 0 < eps <= 1:
        raise ValueError(f"epsilon must be in (0, 1], got {eps}")


def null_rate_single(d: int, eps: float) -> float:
    """Exact ``P(|u_1| < eps)`` for ``u`` uniform on ``S^{d-1}``: ``I_{eps^2}(1/2, (d-1)/2)``."""
    _check(d, 1, eps)
    if d == 1:
        return 0.0 if eps <= 1 else 1.0  # u_1 = +-1
    return float(betainc(0.5, (d - 1) / 2, eps * eps))


def null_rate_approx(d: int, m: int, eps: float) -> float:
    """``P(max_{j<=m} |u_j| < eps)`` treating the ``m`` coordinates as independent (exact at ``m = 1``)."""
    _check(d, m, eps)
    return null_rate_single(d, eps) ** m


def max_cos_samples(d: int, m: int, draws: int = DEFAULT_DRAWS, seed: int = 0) -> np.ndarray:
    """``draws`` seeded samples of ``max_{j<=m} |u_j|``, ``u = z / ||z||``, ``z ~ N(0, I_d)``: ``[draws]``.

    Drawn in chunks (``[chunk, d]`` float64 at most ~16 MB) so a 4096-wide module costs little memory.
    """
    _check(d, m, 1.0)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(draws, 2_000_000 // d))
    out = np.empty(draws)
    done = 0
    while done < draws:
        n = min(chunk, draws - done)
        z = rng.standard_normal((n, d))  # [n, d]
        out[done:done + n] = np.abs(z[:, :m]).max(axis=1) / np.linalg.norm(z, axis=1)  # [n] largest |cos|
        done += n
    return out


def null_rate_simulated(d: int, m: int, eps: float, draws: int = DEFAULT_DRAWS, seed: int = 0) -> float:
    """Seeded Monte Carlo ``P(max_{j<=m} |u_j| < eps)`` (:func:`max_cos_samples`)."""
    _check(d, m, eps)
    return float((max_cos_samples(d, m, draws, seed) < eps).mean())


@lru_cache(maxsize=256)
def _cached_samples(d: int, m: int) -> np.ndarray:
    return max_cos_samples(d, m)


def null_rate(d: int, m: int, eps: float) -> float:
    """The null rate the analysis writes: simulated (seed 0, :data:`DEFAULT_DRAWS` draws), the samples
    cached per ``(d, m)`` since every layer of a model repeats the same few shapes and every epsilon
    of the grid reads the same draws."""
    _check(int(d), int(m), float(eps))
    return float((_cached_samples(int(d), int(m)) < float(eps)).mean())


__all__ = ["DEFAULT_DRAWS", "max_cos_samples", "null_rate", "null_rate_approx", "null_rate_simulated", "null_rate_single"]
