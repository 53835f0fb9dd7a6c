"""Paired statistics (rankscope.stats): identities, agreement with scipy, and simulations of the
false-positive rate and power the recommendation relies on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests

from rankscope.stats import (binary_sd_floor, compare_paired, holm, items_to_detect, mcnemar_exact, minimum_detectable_effect,
                             noninferiority_p, paired_bootstrap)


def _paired_binary(rng, n, p_a_only, p_b_only, p_both):
    """Outcomes of two arms on n items: a right alone, b right alone, both right, else both wrong."""
    u = rng.random(n)
    a = ((u < p_a_only) | ((u >= p_a_only + p_b_only) & (u < p_a_only + p_b_only + p_both))).astype(float)
    b = ((u >= p_a_only) & (u < p_a_only + p_b_only + p_both)).astype(float)
    return a, b


def test_an_arm_compared_with_itself_gives_zero_and_a_point_interval():
    rng = np.random.default_rng(1)
    for a in (rng.integers(0, 2, 150).astype(float), rng.normal(size=80), rng.integers(0, 2, (3, 60)).astype(float)):
        result = compare_paired(a, a)
        assert result.delta == 0.0
        assert (result.ci_low, result.ci_high) == (0.0, 0.0)
        assert result.p_value == 1.0


def test_mcnemar_equals_scipy_binomial_test_on_the_discordant_pairs():
    for a_better in range(0, 25, 3):
        for b_better in range(0, 25, 4):
            if a_better + b_better == 0:
                assert mcnemar_exact(a_better, b_better) == 1.0
                continue
            expected = binomtest(a_better, a_better + b_better, 0.5).pvalue
            assert mcnemar_exact(a_better, b_better) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    rng = np.random.default_rng(2)
    a, b = _paired_binary(rng, 300, 0.12, 0.06, 0.5)
    result = compare_paired(a, b)
    n10, n01 = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    assert result.test == "mcnemar-exact"
    assert result.p_value == pytest.approx(binomtest(n10, n10 + n01, 0.5).pvalue)
    assert result.delta == pytest.approx((n10 - n01) / 300)


def test_paired_interval_is_narrower_than_the_unpaired_one_when_arms_agree():
    rng = np.random.default_rng(3)
    a, b = _paired_binary(rng, 100, 0.06, 0.04, 0.55)  # 90% agreement
    result = compare_paired(a, b)
    unpaired_se = math.hypot(a.std(ddof=1) / 10, b.std(ddof=1) / 10)
    assert result.ci_high - result.ci_low < 2 * 1.96 * unpaired_se * 0.7
    assert result.ci_low <= result.delta <= result.ci_high


def test_false_positive_rate_at_or_below_nominal_under_a_realistic_null():
    """Two arms with the same accuracy agreeing on 85% of 200 items; 20,000 simulated sweeps."""
    rng = np.random.default_rng(4)
    n, sims, alpha = 200, 20_000, 0.05
    counts = rng.multinomial(n, [0.075, 0.075, 0.85], size=sims)  # a alone, b alone, agree
    p = mcnemar_exact(counts[:, 0], counts[:, 1])
    better = np.mean((p < alpha) & (counts[:, 0] > counts[:, 1]))
    rejected = np.mean(p < alpha)
    mc_error = 3 * math.sqrt(alpha * (1 - alpha) / sims)
    assert rejected <= alpha + mc_error
    assert better <= alpha / 2 + mc_error


def test_power_at_least_80_percent_for_10_points_at_n400_and_70_percent_agreement():
    rng = np.random.default_rng(5)
    sims = 20_000
    counts = rng.multinomial(400, [0.20, 0.10, 0.70], size=sims)  # delta = 0.10, agreement 0.70
    power = np.mean((mcnemar_exact(counts[:, 0], counts[:, 1]) < 0.05) & (counts[:, 0] > counts[:, 1]))
    assert power >= 0.80
    # the normal-approximation MDE agrees: 10 points is detectable with >= 80% power at n=400
    sd = math.sqrt(0.30 - 0.10**2)
    assert minimum_detectable_effect(sd, 400) <= 0.10
    assert items_to_detect(sd, 0.10) <= 400 < items_to_detect(sd, 0.05)
    # arms that agree on every item still get a finite, nonzero MDE (rule of three)
    assert binary_sd_floor(0.0, 300) == pytest.approx(0.1) and binary_sd_floor(0.5, 300) == 0.5


def test_bootstrap_interval_covers_the_true_difference_at_about_the_nominal_rate():
    rng = np.random.default_rng(6)
    sims, hits = 300, 0
    for sim in range(sims):
        a, b = _paired_binary(rng, 200, 0.15, 0.10, 0.5)  # true delta 0.05
        result = compare_paired(a, b, n_boot=1000, seed=sim)
        hits += result.ci_low <= 0.05 <= result.ci_high
    assert hits / sims >= 0.95 - 3 * math.sqrt(0.05 * 0.95 / sims)


def test_hierarchical_bootstrap_carries_the_seed_variation():
    """Seeds that disagree widen the interval beyond an item-only bootstrap of the seed means."""
    rng = np.random.default_rng(7)
    n = 400
    base = (rng.random(n) < 0.5).astype(float)
    seeds = np.stack([np.where(rng.random(n) < shift, 1.0, base) for shift in (0.0, 0.15, 0.30)])  # [3, n]
    hierarchical = compare_paired(seeds, base[None, :])
    flat = paired_bootstrap(seeds.mean(axis=0), base)
    assert hierarchical.test == "hierarchical-bootstrap" and hierarchical.n_seeds == 3
    assert hierarchical.ci_high - hierarchical.ci_low > np.subtract(*np.quantile(flat, [0.975, 0.025]))


def test_noninferiority_and_holm():
    boot = np.linspace(-0.05, 0.05, 1001)
    assert noninferiority_p(boot, 0.1) == pytest.approx(1 / 1002)
    assert noninferiority_p(boot, 0.0) > 0.4
    adjusted = holm([0.01, 0.04, 0.03])
    assert list(adjusted) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([]).size == 0
    rng = np.random.default_rng(8)
    for size in (1, 2, 5, 12):
        p = rng.uniform(0, 0.2, size) ** 2
        assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_noninferiority_verdicts_at_the_margin_stay_at_or_below_nominal():
    """At the boundary of the null (a truly worse than b by exactly the margin), the bootstrap
    non-inferiority test the recommendation uses declares "not worse" at most alpha of the time."""
    rng = np.random.default_rng(9)
    sims, alpha, margin = 300, 0.05, 0.03
    passed = 0
    for sim in range(sims):
        a, b = _paired_binary(rng, 400, 0.10, 0.13, 0.5)  # delta = -0.03 = -margin, agreement 77%
        passed += noninferiority_p(paired_bootstrap(a, b, 1000, seed=sim), margin) < alpha
    assert passed / sims <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / sims)
