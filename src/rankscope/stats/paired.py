"""Paired tests between two arms scored on the same items (and, with several seeds, per seed).

Why paired: gain and forgetting compare two arms on the *same* questions. Their noise is the
noise of the per-item differences, which is small when the arms agree on most items; treating the
two accuracies as independent (``hypot(se_a, se_b)``) overstates it. With 100 items and 90%
agreement the paired standard error is about 3 points, the independent one about 7.

Methods (Dror et al. 2018, "The hitchhiker's guide to testing statistical significance in NLP"):
- **McNemar's exact test** (McNemar 1947) for one seed per arm and a 0/1 outcome: under the null
  the discordant items split 50/50, so the two-sided p-value is the exact binomial test on them.
- **Paired bootstrap** (Koehn 2004, "Statistical significance tests for machine translation
  evaluation"): resample items with replacement, keeping each item's pair together, for the
  interval of the mean difference (and the p-value of non-0/1 metrics).
- **Hierarchical bootstrap** with several seeds: every resample draws the items *and*, per arm,
  its seeds with replacement, so the interval carries the seed-to-seed variation; seeds are never
  counted as extra items (every seed is scored on the same items, so that part of the error does
  not shrink with more seeds).
- **Holm's step-down correction** (Holm 1979) over the ranks compared in one decision (equal to
  statsmodels' ``multipletests(method="holm")``, see :func:`holm`).
All resampling is vectorised: ``B`` replicates are one ``[B, n]`` array of item indices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats as scipy_stats

CHUNK = 256  # bootstrap replicates per matrix product: bounds memory at CHUNK x n floats


@dataclass(frozen=True)
class PairedResult:
    """delta = mean over paired items of (a - b), seeds averaged first; ci at ``confidence``.

    sd_diff: standard deviation of the per-item differences (of the seed means), what the
    minimum detectable effect scales with; for 0/1 outcomes sqrt(discordance - delta^2).
    boot: the bootstrap distribution of delta (for one-sided / non-inferiority p-values).
    """

    delta: float
    ci_low: float
    ci_high: float
    p_value: float
    test: str
    n_pairs: int
    n_seeds: int
    sd_diff: float
    agreement: float | None = None  # 0/1 outcomes: fraction of items where a and b agree (seed 0)
    boot: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)


def mcnemar_exact(a_better: np.ndarray | int, b_better: np.ndarray | int) -> np.ndarray | float:
    """Two-sided exact McNemar p-value from the discordant counts (vectorised over arrays).

    Equals ``scipy.stats.binomtest(a_better, a_better + b_better, 0.5).pvalue``: the binomial
    null is symmetric, so the two-sided p is twice the smaller tail, capped at 1; 1 when no item
    is discordant.
    """
    n10 = np.asarray(a_better, dtype=np.int64)
    n01 = np.asarray(b_better, dtype=np.int64)
    total = n10 + n01
    p = np.minimum(1.0, 2.0 * scipy_stats.binom.cdf(np.minimum(n10, n01), total, 0.5))
    p = np.where(total == 0, 1.0, p)
    return float(p) if p.ndim == 0 else p


def _seed_weights(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    """[size, k] weights (summing to 1) of a resample of k seeds with replacement; k=1 -> ones."""
    if k == 1:
        return np.ones((size, 1))
    return rng.multinomial(k, np.full(k, 1.0 / k), size=size) / k


def paired_bootstrap(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution [n_boot] of mean(a - b); ``a`` [k_a, n] and ``b`` [k_b, n] are the
    per-seed outcomes of the same n items (1-D means one seed). Items are resampled jointly for
    both arms; with k > 1 seeds are resampled too (hierarchical): jointly when both arms have the
    same seeds (row s of a and of b share seed s), else independently per arm."""
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired arms need the same items: {a.shape[1]} vs {b.shape[1]}")
    n = a.shape[1]
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    for start in range(0, n_boot, CHUNK):
        size = min(CHUNK, n_boot - start)
        items = rng.integers(0, n, size=(size, n))  # [size, n] item indices, drawn with replacement
        if a.shape[0] == 1 and b.shape[0] == 1:
            out[start:start + size] = (a[0] - b[0])[items].mean(axis=1)
            continue
        weights_a = _seed_weights(rng, a.shape[0], size)
        # Equal seed counts are paired seeds (seed s of both arms saw the same data order): one draw.
        weights_b = weights_a if b.shape[0] == a.shape[0] else _seed_weights(rng, b.shape[0], size)
        mean_a = weights_a @ a  # [size, n]: per item, the resampled seeds' mean
        mean_b = weights_b @ b
        out[start:start + size] = np.take_along_axis(mean_a - mean_b, items, axis=1).mean(axis=1)
    return out


def _bootstrap_two_sided_p(boot: np.ndarray) -> float:
    """Percentile-bootstrap p of delta = 0: twice the smaller share of replicates on either side
    of 0 (with the +1 correction), capped at 1."""
    b = len(boot)
    below = (1 + np.count_nonzero(boot <= 0)) / (b + 1)
    above = (1 + np.count_nonzero(boot >= 0)) / (b + 1)
    return float(min(1.0, 2 * min(below, above)))


def noninferiority_p(boot: np.ndarray, margin: float) -> float:
    """One-sided p of H0 "delta <= -margin" (a is worse than b by the margin or more) from the
    bootstrap distribution of delta: the share of replicates at or below -margin, +1 corrected.
    Rejecting it at level alpha is the same as the one-sided (1 - alpha) percentile interval
    lying above -margin."""
    return float((1 + np.count_nonzero(boot <= -margin)) / (len(boot) + 1))


def _is_binary(x: np.ndarray) -> bool:
    return bool(np.all((x == 0) | (x == 1)))


def compare_paired(a: np.ndarray, b: np.ndarray, confidence: float = 0.95, n_boot: int = 2000,
                   seed: int = 0) -> PairedResult:
    """Paired comparison of arm a with arm b on the same items (see the module docstring).

    One seed each with 0/1 outcomes: McNemar's exact p and a paired-bootstrap interval
    (``test = "mcnemar-exact"``); otherwise the bootstrap gives both (``paired-bootstrap``, or
    ``hierarchical-bootstrap`` with several seeds).
    """
    a, b = np.atleast_2d(np.asarray(a, float)), np.atleast_2d(np.asarray(b, float))
    diff = a.mean(axis=0) - b.mean(axis=0)  # [n]
    n = diff.shape[0]
    if n == 0:
        raise ValueError("no paired items to compare")
    boot = paired_bootstrap(a, b, n_boot, seed)
    tail = (1 - confidence) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    binary = _is_binary(a) and _is_binary(b)
    agreement = float(np.mean(a[0] == b[0])) if binary else None
    if a.shape[0] == 1 and b.shape[0] == 1 and binary:
        p = mcnemar_exact(int(np.sum((a[0] == 1) & (b[0] == 0))), int(np.sum((a[0] == 0) & (b[0] == 1))))
        test = "mcnemar-exact"
    else:
        p = _bootstrap_two_sided_p(boot)
        test = "paired-bootstrap" if a.shape[0] == 1 and b.shape[0] == 1 else "hierarchical-bootstrap"
    return PairedResult(delta=float(diff.mean()), ci_low=float(low), ci_high=float(high), p_value=float(p),
                        test=test, n_pairs=n, n_seeds=max(a.shape[0], b.shape[0]),
                        sd_diff=float(diff.std(ddof=1)) if n > 1 else 0.0, agreement=agreement, boot=boot)


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (Holm 1979): the i-th smallest p times (m - i), made monotone by a
    running maximum, capped at 1; empty in, empty out.

    The same numbers as ``statsmodels.stats.multitest.multipletests(p, method="holm")[1]`` (a
    test pins the equality), computed here because statsmodels runs a full ``gc.collect()`` on
    every call, about 0.3 s each in a process that holds a model, once per comparison family.
    """
    p = np.asarray(p_values, dtype=float)
    if p.size == 0:
        return p
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * np.arange(p.size, 0, -1)))
    out = np.empty_like(adjusted)
    out[order] = adjusted
    return out
