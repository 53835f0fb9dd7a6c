"""The intruder grid, its null and the energy share (Shuttleworth et al. 2024; issue 18).

The null rate formulas are checked against a seeded simulation; the weight pass against planted
intruders whose count, energy and null are known by construction."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from rankscope.analysis.intruder_null import (
    null_rate,
    null_rate_approx,
    null_rate_simulated,
    null_rate_single,
)
from rankscope.analysis.weight_spectra import SpectralSettings, grid_name, null_name, weight_update_spectra
from conftest import one_linear_model


@pytest.mark.parametrize("d,eps", [(8, 0.3), (64, 0.1), (64, 0.2), (576, 0.05)])
def test_single_vector_null_is_the_incomplete_beta(d, eps):
    """m = 1: u_1^2 ~ Beta(1/2, (d-1)/2) exactly; the simulation lands within 4 standard errors."""
    exact = null_rate_single(d, eps)
    draws = 20_000
    simulated = null_rate_simulated(d, 1, eps, draws=draws, seed=1)
    se = math.sqrt(max(exact * (1 - exact), 1e-4) / draws)
    assert abs(simulated - exact) < 4 * se


def test_independence_approximation_holds_when_m_is_small_and_fails_when_m_is_d():
    d = 256
    for m, eps in ((4, 0.15), (16, 0.2)):
        assert null_rate_simulated(d, m, eps, draws=20_000, seed=2) == pytest.approx(null_rate_approx(d, m, eps), abs=0.02)
    # a complete basis: max |u_j| >= 1 / sqrt(d) always, so no direction is flagged below it ...
    assert null_rate_simulated(d, d, 0.9 / math.sqrt(d), draws=2000) == 0.0
    # ... and the independent product (which ignores sum u_j^2 = 1) is not that
    assert null_rate_approx(d, d, 0.9 / math.sqrt(d)) == 0.0 or null_rate_approx(d, d, 0.9 / math.sqrt(d)) < 1e-6


def test_null_is_one_at_the_headline_threshold_in_wide_spaces():
    """At epsilon = 0.5 a random direction in 576 (or 4096) dimensions is an intruder against
    64 reference vectors with probability ~1: the count at one threshold needs its null."""
    assert null_rate(576, 64, 0.5) == 1.0
    assert null_rate_approx(4096, 256, 0.5) > 0.999
    assert null_rate(576, 64, 0.05) < 0.01  # and a tight threshold flags almost none


def test_bad_null_input_is_one_clear_error():
    with pytest.raises(ValueError, match="1 <= m <= d"):
        null_rate_simulated(4, 5, 0.5)
    with pytest.raises(ValueError, match="epsilon"):
        null_rate_single(4, 0.0)


def _rows(result) -> dict[str, float]:
    return {r.metric: r.value for r in result.rows}


def test_planted_intruder_counts_energy_and_null():
    """W_0 [48, 40] (column space: 40 of 48 dims) plus one huge rank-1 update orthogonal to it: the
    top direction of W_ft is an intruder at every epsilon, it holds ~all of the update's energy,
    and the null row is the simulated rate for (d_out, m) of the test."""
    g = torch.Generator().manual_seed(0)
    d_out, d_in = 48, 40
    Q = torch.linalg.qr(torch.randn(d_out, d_out, generator=g)).Q
    W0 = Q[:, :d_in] @ torch.diag(torch.linspace(4, 1, d_in)) @ torch.linalg.qr(torch.randn(d_in, d_in, generator=g)).Q
    v = torch.randn(d_in, generator=g)
    dW = 50.0 * torch.outer(Q[:, 44], v / v.norm())  # [d_out, d_in], orthogonal to every left vector of W_0
    base = {"model.layers.0.proj.weight": W0}
    eps_grid = (0.1, 0.5, 0.9)
    result = weight_update_spectra("sft", one_linear_model(W0 + dW), base, intruder_k=5, intruder_threshold=0.5,
                                   settings=SpectralSettings(method="exact", device="cpu"),
                                   intruder_grid_k=(1, 5), intruder_grid_eps=eps_grid)
    rows = _rows(result)
    for eps in eps_grid:
        assert rows[grid_name(1, eps)] == 1.0  # the planted direction is the top one, unaligned with W_0
        assert rows[grid_name(5, eps)] >= rows[grid_name(1, eps)]
        # exact method: W_0's left vectors are all min(d_out, d_in) of them
        assert rows[null_name(eps)] == pytest.approx(null_rate(d_out, min(d_out, d_in), eps))
    counts = [rows[grid_name(5, eps)] for eps in eps_grid]
    assert counts == sorted(counts)  # a looser threshold never flags fewer
    assert rows["intruder_dimensions"] == rows[grid_name(5, 0.5)]
    assert rows["intruder_energy_share"] > 0.99


def test_no_update_gives_zero_grid_and_no_energy():
    W0 = torch.randn(16, 12, generator=torch.Generator().manual_seed(3))
    result = weight_update_spectra("base", one_linear_model(W0), {"model.layers.0.proj.weight": W0}, intruder_k=4,
                                   intruder_grid_k=(1, 4), intruder_grid_eps=(0.5,))
    rows = _rows(result)
    assert rows[grid_name(4, 0.5)] == 0.0 and rows["intruder_energy_share"] == 0.0


def test_report_table_sets_counts_beside_their_null(tmp_path):
    from fixtures_report import build_run_store

    from rankscope.report.intruder_table import intruder_grid_table
    from rankscope.runstore.reader import load_run

    root = build_run_store(tmp_path / "run")
    store = load_run(root)
    assert intruder_grid_table(store) is None  # no grid rows: no table
    lora = next(a.arm_id for a in store.arms.values() if a.method == "lora")
    with (root / "analysis" / "spectral.csv").open("a", newline="") as handle:
        writer = csv.writer(handle)
        for layer, (count, null) in enumerate(((2.0, 0.5), (4.0, 0.7))):
            writer.writerow([lora, layer, "q_proj", grid_name(10, 0.5), count])
            writer.writerow([lora, layer, "q_proj", null_name(0.5), null])
            writer.writerow([lora, layer, "q_proj", "intruder_energy_share", 0.25])
    table = intruder_grid_table(load_run(root))
    assert table is not None and "k=10" in table.title
    row = next(r for r in table.rows if r[0] != "null: random directions")
    assert row[1] == f"{np.mean([2, 4]):.2f} ({10 * 0.6:.2f})" and row[2] == "25.0"
    assert table.rows[-1][1] == "6.00"
