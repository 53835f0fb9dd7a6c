"""Identities of the weight-update spectra (rankscope.analysis.spectral)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rankscope.analysis.spectral import (
    canonical_module_name,
    default_rtol,
    dense_singular_values,
    intruder_dimensions,
    lora_update_singular_values,
    parse_module_name,
    spectrum_metrics,
    top_left_singular_vectors,
)


@pytest.mark.parametrize(
    "d_out, d_in, r",
    [(64, 48, 1), (64, 48, 4), (48, 64, 8), (96, 32, 16), (20, 12, 16), (12, 20, 16)],
)
def test_factor_spectrum_equals_dense_spectrum(d_out, d_in, r):
    g = torch.Generator().manual_seed(d_out * 1000 + d_in * 10 + r)
    B = torch.randn(d_out, r, generator=g, dtype=torch.float64)
    A = torch.randn(r, d_in, generator=g, dtype=torch.float64)
    scale = 2.0 / math.sqrt(r)
    fast = lora_update_singular_values(B, A, scale).double()
    dense = torch.linalg.svdvals(scale * B @ A)  # float64 reference
    k = fast.numel()
    assert k == min(r, d_out, d_in)
    torch.testing.assert_close(fast, dense[:k], rtol=1e-5, atol=1e-6 * float(dense[0]))
    # the rest of the dense spectrum is zero up to rounding
    if dense.numel() > k:
        assert float(dense[k:].max()) < 1e-9 * float(dense[0])
    # float32 dense path agrees too
    dense32 = dense_singular_values((scale * B @ A).float())
    torch.testing.assert_close(fast.float(), dense32[:k], rtol=1e-4, atol=1e-5 * float(dense[0]))


@pytest.mark.parametrize("r", [1, 2, 5, 8])
def test_rank_r_update_has_exactly_r_nonzero_singular_values(r):
    g = torch.Generator().manual_seed(r)
    B, A = torch.randn(80, r, generator=g), torch.randn(r, 60, generator=g)
    dense = dense_singular_values(B @ A)
    metrics = spectrum_metrics(dense, (80, 60))
    assert metrics["numerical_rank"] == r
    assert spectrum_metrics(lora_update_singular_values(B, A, 1.0), (80, 60))["numerical_rank"] == r
    # a rank-deficient pair of factors: B with duplicated columns has rank r - 1 (for r > 1)
    if r > 1:
        B2 = B.clone()
        B2[:, -1] = B2[:, 0]
        s = lora_update_singular_values(B2, A, 0.5)
        assert spectrum_metrics(s, (80, 60))["numerical_rank"] == r - 1


def test_zero_update_has_rank_zero_and_no_nan():
    for s, shape in [
        (lora_update_singular_values(torch.zeros(32, 4), torch.randn(4, 16), 2.0), (32, 16)),
        (dense_singular_values(torch.zeros(32, 16)), (32, 16)),
        (torch.zeros(0), (32, 16)),
    ]:
        metrics = spectrum_metrics(s, shape)
        assert all(math.isfinite(v) for v in metrics.values()), metrics
        assert all(v == 0.0 for v in metrics.values()), metrics


def test_metric_identities():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])
    m = spectrum_metrics(s, (10, 4), energy_ks=(1, 2, 8))
    assert m["frobenius_norm"] == pytest.approx(math.sqrt(14))
    assert m["spectral_norm"] == 3.0
    assert m["stable_rank"] == pytest.approx(14 / 9)
    assert m["numerical_rank"] == 3
    assert m["energy_top_1"] == pytest.approx(9 / 14)
    assert m["energy_top_2"] == pytest.approx(13 / 14)
    assert m["energy_top_8"] == pytest.approx(1.0)
    p = np.array([3, 2, 1]) / 6
    assert m["effective_rank"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    # equal singular values: effective rank = stable rank = number of them
    flat = spectrum_metrics(torch.ones(5), (5, 5))
    assert flat["effective_rank"] == pytest.approx(5.0)
    assert flat["stable_rank"] == pytest.approx(5.0)
    assert default_rtol((576, 1536)) == 1536 * float(np.finfo(np.float32).eps)


def test_frobenius_norm_matches_dense():
    g = torch.Generator().manual_seed(0)
    B, A = torch.randn(40, 6, generator=g), torch.randn(6, 30, generator=g)
    m = spectrum_metrics(lora_update_singular_values(B, A, 0.25), (40, 30))
    assert m["frobenius_norm"] == pytest.approx(float(torch.linalg.matrix_norm(0.25 * B @ A)), rel=1e-5)
    assert m["spectral_norm"] == pytest.approx(float(torch.linalg.matrix_norm(0.25 * B @ A, ord=2)), rel=1e-5)


def test_intruder_dimensions():
    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(32, 24, generator=g)
    # identical weights: everything aligned, no intruders
    max_cos, count = intruder_dimensions(W0, W0.clone(), k=10)
    assert count == 0 and torch.all(max_cos == 1)
    # a small update keeps the top directions
    max_cos, count = intruder_dimensions(W0, W0 + 1e-4 * torch.randn(32, 24, generator=g), k=5)
    assert count == 0 and float(max_cos.min()) > 0.9
    # a huge rank-1 update along a direction orthogonal to W0's column space is an intruder:
    # W0 is tall (32 x 24) so its left singular vectors span only 24 of 32 dims
    U = torch.linalg.svd(W0, full_matrices=True).U
    direction = U[:, -1]  # orthogonal to every left singular vector of W0
    W_ft = W0 + 1000 * torch.outer(direction, torch.randn(24, generator=g))
    max_cos, count = intruder_dimensions(W0, W_ft, k=3)
    assert count >= 1 and float(max_cos[0]) < 1e-3
    assert max_cos.shape == (3,)
    # scaling does not change singular vectors
    _, count = intruder_dimensions(W0, 3.0 * W0, k=10)
    assert count == 0


def test_module_names():
    assert canonical_module_name("base_model.model.model.layers.3.self_attn.q_proj") == "model.layers.3.self_attn.q_proj"
    assert canonical_module_name("model.layers.3.mlp.down_proj.base_layer") == "model.layers.3.mlp.down_proj"
    assert parse_module_name("base_model.model.model.layers.11.mlp.up_proj") == (11, "up_proj")
    assert parse_module_name("transformer.h.2.attn.c_attn") == (2, "c_attn")
    assert parse_module_name("lm_head") is None


@pytest.mark.parametrize("shape", [(40, 40), (60, 25), (25, 60)])
def test_top_left_singular_vectors_match_svd(shape):
    g = torch.Generator().manual_seed(sum(shape))
    d_out, d_in = shape
    m = min(shape)
    U, _ = torch.linalg.qr(torch.randn(d_out, m, generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(d_in, m, generator=g, dtype=torch.float64))
    s = 2.0 ** -torch.arange(m, dtype=torch.float64) * 10 + 0.01  # well separated at the top
    W = (U * s) @ V.T
    top = top_left_singular_vectors(W.float(), 5).double()
    assert top.shape == (d_out, 5)
    cos = (top * U[:, :5]).sum(0).abs()
    torch.testing.assert_close(cos, torch.ones(5, dtype=torch.float64), rtol=0, atol=1e-5)
