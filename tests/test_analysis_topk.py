"""Top-k SVD with its residual check, precision-aware ranks, the streamed base reference and the
agreement of the ``topk`` and ``exact`` weight passes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rankscope.analysis import weight_spectra
from rankscope.analysis.base_cache import BaseWeightCache, MANIFEST
from rankscope.analysis.ranks import default_rtol, dtype_eps, roundoff_rtol, spectrum_metrics
from rankscope.analysis.topk import TopKSettings, relative_residuals, top_singular_triplets
from rankscope.analysis.weight_spectra import SpectralSettings, build_base_reference, weight_update_spectra


RANDOMIZED = TopKSettings(dense_below=0)  # small test matrices still take the randomized path


def decaying(m: int, n: int, seed: int = 0, decay: float = 0.8) -> torch.Tensor:
    """``U diag(s) V^T`` with ``s_i = i^-decay`` plus a small Gaussian bulk."""
    g = torch.Generator().manual_seed(seed)
    r = min(m, n)
    U = torch.linalg.qr(torch.randn(m, r, generator=g)).Q
    V = torch.linalg.qr(torch.randn(n, r, generator=g)).Q
    s = torch.arange(1, r + 1, dtype=torch.float32) ** -decay
    return (U * s) @ V.T + 1e-4 * torch.randn(m, n, generator=g) / math.sqrt(n)


def test_topk_matches_the_exact_svd_and_passes_its_check():
    A = decaying(300, 520)
    top = top_singular_triplets(A, 10, TopKSettings(oversample=10, n_iter=4, tol=1e-3, dense_below=0))
    assert top.method == "randomized" and top.residual <= 1e-3
    U, S, Vh = torch.linalg.svd(A.double(), full_matrices=False)
    torch.testing.assert_close(top.S.double(), S[:10], rtol=1e-4, atol=0)
    cos = (U[:, :10] * top.U.double()).sum(0).abs()
    assert float((1 - cos).max()) < 1e-4
    # the stated check is what it says: residuals of the returned triplets
    assert float(relative_residuals(A, top.U, top.S, top.V).max()) == pytest.approx(top.residual, rel=1e-5)
    again = top_singular_triplets(A, 10, TopKSettings(oversample=10, n_iter=4, tol=1e-3, dense_below=0))
    assert torch.equal(top.U, again.U)  # fixed seed: reproducible


def test_failed_check_refines_then_falls_back_to_exact():
    g = torch.Generator().manual_seed(1)
    flat = torch.randn(200, 600, generator=g)  # Marchenko-Pastur: no gap, slow convergence
    top = top_singular_triplets(flat, 8, TopKSettings(oversample=4, n_iter=0, tol=1e-9, max_refine=1, dense_below=0))
    assert top.method == "exact"
    torch.testing.assert_close(top.S, torch.linalg.svdvals(flat)[:8])
    # refinement alone can be enough: more power iterations on a decaying spectrum
    top = top_singular_triplets(decaying(200, 600, decay=3.0), 8, TopKSettings(oversample=4, n_iter=0, tol=1e-3, max_refine=3, dense_below=0))
    assert top.method == "randomized" and top.n_iter > 0 and top.residual <= 1e-3


def test_small_matrices_and_zero_go_dense():
    assert top_singular_triplets(torch.randn(30, 40), 10, TopKSettings(dense_below=0)).method == "dense"
    assert top_singular_triplets(decaying(300, 520), 10).method == "dense"  # below dense_below
    zero = top_singular_triplets(torch.zeros(300, 500), 5)
    assert zero.method == "dense" and float(zero.S.abs().max()) == 0.0


def test_bf16_noise_moves_fp32_rank_but_not_energy_or_dtype_ranks():
    g = torch.Generator().manual_seed(0)
    r, shape = 6, (256, 384)
    dW = torch.randn(shape[0], r, generator=g) @ torch.randn(r, shape[1], generator=g)
    noisy = dW.to(torch.bfloat16).float()  # rounding a bf16-trained update
    assert float((noisy - dW).abs().max()) > 0
    clean = spectrum_metrics(torch.linalg.svdvals(dW.double()), shape, dtype=torch.bfloat16)
    rough = spectrum_metrics(torch.linalg.svdvals(noisy.double()), shape, dtype=torch.bfloat16)
    assert clean["numerical_rank"] == r  # fp32 tolerance, exact update
    assert rough["numerical_rank"] > 10 * r  # the same tolerance after rounding: noise counts
    for name in ("numerical_rank_dtype", "energy_rank_90", "energy_rank_99"):
        assert rough[name] == clean[name], name
    assert clean["numerical_rank_dtype"] == r and clean["energy_rank_99"] <= r
    assert default_rtol(shape, torch.bfloat16) == 384 * dtype_eps("bfloat16") == 384 * 2**-7 > 1  # numpy's: useless
    assert roundoff_rtol(shape, "bfloat16") == pytest.approx(2**-8 * math.sqrt(256 + 384 + 1))


def test_topk_metrics_equal_full_ones_where_determinable_and_are_absent_otherwise():
    s = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05])
    full = spectrum_metrics(s, (100, 80), energy_ks=(1, 2))
    top = spectrum_metrics(s[:4], (100, 80), energy_ks=(1, 2), frobenius_norm=float(s.norm()), complete=False)
    for name in ("frobenius_norm", "spectral_norm", "stable_rank", "energy_rank_90", "energy_top_1", "energy_top_2"):
        assert top[name] == pytest.approx(full[name]), name
    assert "effective_rank" not in top  # needs every value
    assert "energy_rank_99" not in top  # 99% of the energy is not within the top 4
    assert "numerical_rank" not in top  # s_4 is above the tolerance: the rank is >= 4, unknown
    assert top["energy_captured"] == pytest.approx(float((s[:4] ** 2).sum() / (s**2).sum()))
    # a gap below the tolerance inside the top-k makes the numerical rank determinable
    gapped = spectrum_metrics(torch.tensor([1.0, 0.5, 0.0]), (10, 10), frobenius_norm=math.sqrt(1.25), complete=False)
    assert gapped["numerical_rank"] == 2 and gapped["energy_rank_99"] == 2


# --------------------------------------------------------------------------- models


def one_module_model(W: torch.Tensor, name: str = "down_proj") -> nn.Module:
    linear = nn.Linear(W.shape[1], W.shape[0], bias=False)
    linear.weight = nn.Parameter(W.clone(), requires_grad=False)
    block = nn.Module()
    setattr(block, name, linear)
    model = nn.Module()
    model.layers = nn.ModuleList([block])
    return model


def pair(m: int = 200, n: int = 700, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    W0 = decaying(m, n, seed)
    new = torch.randn(m, 3, generator=g) / math.sqrt(m) @ (torch.randn(3, n, generator=g) / math.sqrt(n))
    return W0, W0 + 0.7 * new + 1e-4 * torch.randn(m, n, generator=g) / math.sqrt(n)


def test_topk_and_exact_passes_agree_on_intruders_and_values(tmp_path):
    W0, W_ft = pair()
    results = {}
    for method in ("topk", "exact"):
        settings = SpectralSettings(method=method, device="cpu", spectrum_k=20, reference_k=40, topk=RANDOMIZED)
        cache = build_base_reference(one_module_model(W0), tmp_path / method, settings, intruder_k=10)
        results[method] = weight_update_spectra("sft", one_module_model(W_ft), cache, intruder_k=10, settings=settings)
    rows = {m: {r.metric: r.value for r in res.rows} for m, res in results.items()}
    assert rows["topk"]["intruder_dimensions"] == rows["exact"]["intruder_dimensions"] > 0
    s_top = torch.from_numpy(results["topk"].singular_values["sft/0/down_proj"])
    s_exact = torch.from_numpy(results["exact"].singular_values["sft/0/down_proj"])
    assert s_top.numel() == 20 and s_exact.numel() == 200
    assert float((s_top - s_exact[:20]).abs().max() / s_exact[0]) < 1e-2
    for name in ("frobenius_norm", "spectral_norm", "stable_rank", "energy_rank_90"):
        assert rows["topk"][name] == pytest.approx(rows["exact"][name], rel=1e-3), name
    assert "effective_rank" in rows["exact"] and "effective_rank" not in rows["topk"]
    full = SpectralSettings(method="topk", device="cpu", spectrum_k=20, reference_k=40, full_spectrum=True,
                            topk=RANDOMIZED)
    cache = build_base_reference(one_module_model(W0), tmp_path / "full", full, intruder_k=10)
    with_full = weight_update_spectra("sft", one_module_model(W_ft), cache, intruder_k=10, settings=full)
    assert {r.metric: r.value for r in with_full.rows}["effective_rank"] == pytest.approx(
        rows["exact"]["effective_rank"], rel=1e-4)


def test_base_reference_is_cached_per_module_and_resumed_only_for_the_same_base(tmp_path, monkeypatch):
    W0, _ = pair(seed=2)
    settings = SpectralSettings(device="cpu", reference_k=16, topk=RANDOMIZED)
    calls: list[int] = []
    real = weight_spectra.base_entry
    monkeypatch.setattr(weight_spectra, "base_entry", lambda *a, **k: calls.append(1) or real(*a, **k))
    model = one_module_model(W0)
    first = build_base_reference(model, tmp_path, settings, intruder_k=4)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == sorted([MANIFEST, "layers.0.down_proj.safetensors"]) and len(calls) == 1
    entry = first.get("layers.0.down_proj")
    assert torch.equal(entry.weight, W0) and entry.left_vectors.shape == (200, 16)
    build_base_reference(one_module_model(W0), tmp_path, settings, intruder_k=4)  # same base: reused
    assert len(calls) == 1
    other = build_base_reference(one_module_model(W0 * 1.01), tmp_path, settings, intruder_k=4)  # another base
    assert len(calls) == 2 and other.fingerprint != first.fingerprint
    assert torch.equal(other.get("layers.0.down_proj").weight, W0 * 1.01)
    assert not BaseWeightCache(tmp_path, first.fingerprint).has("layers.0.down_proj")  # overwritten
    # an interrupted reference (module file but no manifest) resumes without recomputing the file
    (tmp_path / MANIFEST).unlink()
    build_base_reference(one_module_model(W0 * 1.01), tmp_path, settings, intruder_k=4)
    assert len(calls) == 2 and (tmp_path / MANIFEST).exists()
    # a torn file is recomputed, not trusted
    (tmp_path / "layers.0.down_proj.safetensors").write_bytes(b"torn")
    (tmp_path / MANIFEST).unlink()
    build_base_reference(one_module_model(W0 * 1.01), tmp_path, settings, intruder_k=4)
    assert len(calls) == 3


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="analysis.method"):
        SpectralSettings(method="fast")


def test_in_memory_reference_is_a_copy():
    W0, _ = pair(seed=3)
    model = one_module_model(W0)
    cache = build_base_reference(model, None, SpectralSettings(device="cpu", reference_k=8), intruder_k=4)
    with torch.no_grad():
        model.layers[0].down_proj.weight.add_(1.0)  # training the base in place afterwards
    assert torch.equal(cache.get("layers.0.down_proj").weight, W0)
