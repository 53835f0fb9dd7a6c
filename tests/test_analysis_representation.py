"""Identities of linear CKA and hidden-state effective rank (rankscope.analysis.representation)."""

from __future__ import annotations

import math

import pytest
import torch

from rankscope.analysis.representation import (
    REPRESENTATION_METRICS,
    TokenMask,
    _unbiased_hsic,
    debiased_cka,
    hidden_effective_rank,
    layer_similarity,
    linear_cka,
    norm_outliers,
    representation_drift,
)


def _x(n=60, d=16, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_cka_of_identical_inputs_is_exactly_one():
    X = _x()
    assert linear_cka(X, X) == 1.0
    assert linear_cka(X, X.clone()) == 1.0
    assert linear_cka(X, X.double()) == pytest.approx(1.0, abs=1e-12)


def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling():
    X, Y = _x(seed=0), _x(d=24, seed=1)
    Y = Y + 0.5 * torch.cat([X, X[:, :8]], dim=1)  # some shared structure
    Q, _ = torch.linalg.qr(torch.randn(24, 24, generator=torch.Generator().manual_seed(2)))
    base = linear_cka(X, Y)
    assert linear_cka(X, Y @ Q) == pytest.approx(base, abs=1e-6)
    assert linear_cka(X, 7.5 * Y) == pytest.approx(base, abs=1e-6)
    assert linear_cka(0.01 * X, Y) == pytest.approx(base, abs=1e-6)
    # translation (centering) invariance
    assert linear_cka(X + 3.0, Y - 1.0) == pytest.approx(base, abs=1e-6)
    # orthogonal transform of X alone (16 x 16)
    Q16, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(3)))
    assert linear_cka(X @ Q16, Y) == pytest.approx(base, abs=1e-6)
    assert linear_cka(X, X @ Q16) == pytest.approx(1.0, abs=1e-9)


def test_cka_in_unit_interval_and_symmetric():
    for seed in range(5):
        X, Y = _x(n=30, d=8, seed=seed), _x(n=30, d=40, seed=seed + 10)
        value = linear_cka(X, Y)
        assert 0.0 <= value <= 1.0
        assert linear_cka(Y, X) == pytest.approx(value, abs=1e-12)


def test_cka_constant_input_is_zero_not_nan():
    X = _x()
    assert linear_cka(X, torch.ones(60, 4)) == 0.0
    assert linear_cka(torch.zeros(60, 4), torch.zeros(60, 4)) == 1.0  # identical


def test_cka_shape_mismatch_raises():
    with pytest.raises(ValueError):
        linear_cka(_x(n=10), _x(n=11))


def test_hidden_effective_rank():
    assert hidden_effective_rank(torch.zeros(10, 4)) == 0.0
    # rows spanning exactly k orthogonal directions with equal energy: effective rank k
    k = 3
    X = torch.cat([torch.eye(k) * 2, -torch.eye(k) * 2], dim=0)  # centered already, equal s
    assert hidden_effective_rank(X) == pytest.approx(k)
    X = _x(n=200, d=8)
    assert 1.0 <= hidden_effective_rank(X) <= 8.0


def test_representation_drift_rows():
    states = [_x(seed=s) for s in range(3)]
    rows = representation_drift("base", states, states)
    k = len(REPRESENTATION_METRICS)
    assert [r.metric for r in rows] == list(REPRESENTATION_METRICS) * 3
    assert [r.layer for r in rows] == [0] * k + [1] * k + [2] * k
    assert all(r.value == 1.0 for r in rows if r.metric == "cka")
    assert all(r.value == 0.0 for r in rows if r.metric in ("masked_template", "masked_sink", "arm_outliers"))
    assert all(math.isfinite(r.value) for r in rows)
    with pytest.raises(ValueError):
        representation_drift("x", states, states[:2])


def _gram_unbiased_hsic(X, Y):
    """Song et al. 2012 eq. (5) written with explicit n x n Gram matrices (the reference)."""
    n = X.shape[0]
    K, L = X @ X.T, Y @ Y.T
    K.fill_diagonal_(0)
    L.fill_diagonal_(0)
    one = torch.ones(n, dtype=X.dtype)
    return (torch.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2.0 / (n - 2) * (one @ K @ L @ one)) / (n * (n - 3))


def test_feature_space_unbiased_hsic_equals_the_gram_formula():
    X, Y = _x(n=23, d=7, seed=4).double(), _x(n=23, d=11, seed=5).double() + 2.0
    assert float(_unbiased_hsic(X, Y)) == pytest.approx(float(_gram_unbiased_hsic(X, Y)), rel=1e-10)
    # translation invariant (the estimator is built from kernel differences)
    assert float(_unbiased_hsic(X + 5.0, Y)) == pytest.approx(float(_unbiased_hsic(X, Y)), rel=1e-8)


def test_debiased_cka_identities_and_bias():
    X = _x(n=40, d=16, seed=0)
    assert debiased_cka(X, X) == 1.0
    Q, _ = torch.linalg.qr(torch.randn(16, 16, generator=torch.Generator().manual_seed(1)))
    assert debiased_cka(X, X @ Q * 3.0) == pytest.approx(1.0, abs=1e-9)
    assert math.isnan(debiased_cka(X[:3], X[:3] + 1e-3))
    # independent representations with fewer tokens than features: plain CKA is biased far
    # above 0, the debiased estimate is centred on 0 (simulation over seeds)
    plain, debiased = [], []
    for seed in range(20):
        A, B = _x(n=32, d=128, seed=100 + seed), _x(n=32, d=128, seed=200 + seed)
        plain.append(linear_cka(A, B))
        debiased.append(debiased_cka(A, B))
    assert sum(plain) / 20 > 0.5
    assert abs(sum(debiased) / 20) < 0.05


def _planted(seed, n=200, d=32, massive=25_000.0):
    """Token states with a massive activation on token 0 in dimension 5 (Sun et al. 2024)."""
    X = _x(n=n, d=d, seed=seed)
    X[0, 5] = massive
    return X


def test_massive_activation_no_longer_swamps_cka():
    base = _planted(0)
    # the arm keeps the massive token but changes every other token substantially
    arm = base.clone()
    arm[1:] = 0.3 * base[1:] + _x(n=199, d=32, seed=9)
    assert linear_cka(base, arm) > 0.999  # the artifact: one token dominates
    content = torch.ones(200, dtype=torch.bool)
    first = torch.zeros(200, dtype=torch.bool)
    first[0] = True
    mask = TokenMask.from_base([base], content, first)
    assert mask.sink == [1] and bool(~mask.keep[0][0]) and int(mask.keep[0].sum()) == 199
    rows = {r.metric: r.value for r in representation_drift("a", [base], [arm], mask=mask)}
    assert rows["cka"] < 0.3  # the real change is visible
    assert rows["masked_sink"] == 1 and rows["cka_tokens"] == 199
    # an unchanged arm still reads exactly 1
    same = {r.metric: r.value for r in representation_drift("b", [base], [base.clone()], mask=mask)}
    assert same["cka"] == 1.0


def test_outlier_rule_finds_a_massive_token_anywhere_and_counts_template_apart():
    base = _planted(1)
    base[17, 3] = 9_000.0  # a second massive activation, not the first token
    assert norm_outliers(base, 5.0).nonzero().flatten().tolist() == [0, 17]
    content = torch.ones(200, dtype=torch.bool)
    content[:10] = False  # template tokens 0..9 (token 0 is template AND first)
    first = torch.zeros(200, dtype=torch.bool)
    first[0] = True
    mask = TokenMask.from_base([base, base], content, first)
    assert mask.template == 10
    assert mask.sink == [1, 1]  # token 17 only; token 0 already counted as template
    assert int(mask.keep[0].sum()) == 200 - 10 - 1
    arm = base.clone()
    arm[50, 1] = 50_000.0  # the arm grows a new outlier the base mask does not cover
    rows = [r for r in representation_drift("a", [base, base], [arm, arm], mask=mask) if r.metric == "arm_outliers"]
    assert [r.value for r in rows] == [1.0, 1.0]


def test_shared_product_layer_similarity_equals_the_separate_definitions():
    X = _planted(3, n=120, d=24) + 4.0  # a massive token and a nonzero mean
    Y = 0.7 * X + _x(n=120, d=24, seed=4)
    Y[0, 5] = 20_000.0
    keep = torch.ones(120, dtype=torch.bool)
    keep[[0, 7, 8, 50]] = False
    got = layer_similarity(X, Y, keep)
    assert got["cka"] == pytest.approx(debiased_cka(X[keep], Y[keep]), rel=1e-9)
    assert got["effective_rank"] == pytest.approx(hidden_effective_rank(Y[keep]), rel=1e-6)
    # different widths (d1 != d2) and nothing masked
    Z = _x(n=120, d=40, seed=6)
    every = torch.ones(120, dtype=torch.bool)
    got = layer_similarity(X, Z, every)
    assert got["cka"] == pytest.approx(debiased_cka(X, Z), rel=1e-9, abs=1e-12)
    # fewer kept tokens than features: the effective rank comes from the token Gram matrix
    few = torch.zeros(120, dtype=torch.bool)
    few[:15] = True
    assert layer_similarity(X, Z, few)["effective_rank"] == pytest.approx(hidden_effective_rank(Z[:15]), rel=1e-6)
