"""Identities of linear CKA and hidden-state effective rank (rankscope.analysis.representation)."""

from __future__ import annotations

import math

import pytest
import torch

from rankscope.analysis.representation import hidden_effective_rank, linear_cka, representation_drift


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
    assert [r.metric for r in rows] == ["cka", "effective_rank"] * 3
    assert [r.layer for r in rows] == [0, 0, 1, 1, 2, 2]
    assert all(r.value == 1.0 for r in rows if r.metric == "cka")
    assert all(math.isfinite(r.value) for r in rows)
    with pytest.raises(ValueError):
        representation_drift("x", states, states[:2])
