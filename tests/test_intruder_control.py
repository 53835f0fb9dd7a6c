"""The intruder control (issue 18): edits remove what they say, match norms, and are undone exactly."""

from __future__ import annotations

import math

import pytest
import torch

from rankscope.analysis.intruder_control import edited_weight, intruder_parts, intruders_scaled
from rankscope.analysis.weight_spectra import SpectralSettings, build_base_reference
from conftest import one_linear_model


def _planted():
    """W_0 [48, 40] and an update: a small spread part plus one huge direction outside W_0's columns."""
    g = torch.Generator().manual_seed(0)
    Q = torch.linalg.qr(torch.randn(48, 48, generator=g)).Q
    W0 = Q[:, :40] @ torch.diag(torch.linspace(4, 1, 40)) @ torch.linalg.qr(torch.randn(40, 40, generator=g)).Q
    v = torch.randn(40, generator=g)
    dW = 50.0 * torch.outer(Q[:, 44], v / v.norm()) + 0.3 * torch.randn(48, 40, generator=g)
    return W0, dW


def test_edits_remove_the_intruder_part_or_the_same_norm_uniformly():
    W0, dW = _planted()
    cache = build_base_reference(one_linear_model(W0), None, SpectralSettings(method="exact", device="cpu"), intruder_k=4)
    model = one_linear_model(W0 + dW)
    parts = intruder_parts(model, cache, k=4, threshold=0.5)
    assert len(parts) == 1 and parts[0].U_I.shape[1] >= 1
    W_ft = W0 + dW
    same, removed, _ = edited_weight(parts[0], 1.0, "intruder")
    assert removed == 0.0 and torch.allclose(same, W_ft)
    for lam in (0.75, 0.5, 0.0):
        W_int, r_int, _ = edited_weight(parts[0], lam, "intruder")
        W_uni, r_uni, clipped = edited_weight(parts[0], lam, "uniform")
        assert r_int == pytest.approx(float(torch.linalg.matrix_norm(W_ft - W_int)), rel=1e-4)
        assert not clipped and r_uni == pytest.approx(r_int, rel=1e-4)  # same norm removed
        assert torch.allclose(W_uni - W0, (1 - r_uni / float(torch.linalg.matrix_norm(dW))) * dW, atol=1e-4)
    W_zero, _, _ = edited_weight(parts[0], 0.0, "intruder")
    # with the intruder removed, W_ft's top direction is no longer the planted one
    top = torch.linalg.svd(W_zero).U[:, 0]
    assert abs(float(top @ parts[0].U_I[:, 0])) < 0.1
    with pytest.raises(ValueError, match="variant"):
        edited_weight(parts[0], 0.5, "random")


def test_in_place_edit_is_undone_exactly_and_clipping_is_counted():
    W0, dW = _planted()
    cache = build_base_reference(one_linear_model(W0), None, SpectralSettings(method="exact", device="cpu"), intruder_k=4)
    model = one_linear_model(W0 + dW)
    before = model.model.layers[0].proj.weight.detach().clone()
    parts = intruder_parts(model, cache, k=4, threshold=0.5)
    with torch.no_grad(), intruders_scaled(parts, 0.0, "intruder") as stats:
        assert not torch.equal(model.model.layers[0].proj.weight, before)
        assert stats.modules_with_intruders == 1 and 0 < stats.removed_frobenius <= stats.update_frobenius * 1.01
    assert torch.equal(model.model.layers[0].proj.weight, before)
    # uniform at lambda 0 cannot remove more than the update: the intruder part (W_0 has some of it) is
    # at most ||dW|| here, so nothing is clipped; a tiny update with the same intruder would be
    assert stats.clipped == 0


def test_no_intruder_no_part():
    W0, _ = _planted()
    cache = build_base_reference(one_linear_model(W0), None, SpectralSettings(method="exact", device="cpu"), intruder_k=4)
    assert intruder_parts(one_linear_model(W0 * 1.01), cache, k=4, threshold=0.5) == []


def test_lora_arm_edit_goes_through_the_base_layer(tiny):
    """A LoRA arm: the edit is written into the base layer so base + adapter is the edited weight,
    and the shared base weights are restored after."""
    from rankscope.config import LoraSpec
    from rankscope.models.arms import apply_lora, remove_lora

    base = tiny.model
    cache = build_base_reference(base, None, SpectralSettings(method="exact", device="cpu"), intruder_k=4)
    snapshot = {k: v.clone() for k, v in base.state_dict().items()}
    model = apply_lora(base, LoraSpec(ranks=[2], targets=["q_proj"]), 2, seed=0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(20.0 * torch.randn_like(param))
    parts = intruder_parts(model, cache, k=4, threshold=0.5)
    assert parts and all(p.lora for p in parts)
    layer = next(m for n, m in model.named_modules() if n.endswith("layers.0.self_attn.q_proj") and hasattr(m, "lora_A"))
    part = next(p for p in parts if p.name.endswith("layers.0.self_attn.q_proj"))
    with torch.no_grad(), intruders_scaled(parts, 0.0, "intruder"):
        x = torch.randn(3, part.delta.shape[1])
        expected, _, _ = edited_weight(part, 0.0, "intruder")
        assert torch.allclose(layer(x), x @ expected.T, atol=1e-3)
    restored = remove_lora(model)
    for k, v in restored.state_dict().items():
        assert torch.equal(v, snapshot[k]), k
    assert math.isfinite(float(parts[0].intruder_norm()))


def test_sweep_with_control_writes_rows_and_the_report_shows_them(tiny_model_dir, tmp_path):
    """analysis.intruder_control: true on a tiny sweep trained hard enough to have intruders."""
    from rankscope.config.loading import config_from_dict
    from rankscope.report.build import build_run_report
    from rankscope.runstore.analysis_files import read_control
    from rankscope.runstore.reader import load_run
    from rankscope.sweep.runner import run_sweep

    config = config_from_dict({
        "name": "tiny", "model": {"id": str(tiny_model_dir)},
        "data": {"train": [{"name": "arith_mc", "n_train": 16, "n_test": 6}], "eval": [{"name": "capitals", "n_test": 6}]},
        "arms": {"sft": True, "lora": {"ranks": [2], "targets": ["q_proj", "v_proj"]}, "seeds": [0]},
        "train": {"steps": 4, "batch_size": 4, "max_length": 48, "lr": {"lora": 0.5, "sft": 0.05}},
        "eval": {"batch_size": 8, "max_new_tokens": 4, "nll": {"max_tokens": 64, "chunk_tokens": 32}},
        "analysis": {"enabled": True, "probe_size": 2, "probe_max_length": 16, "intruder_k": 4,
                     "intruder_grid_k": [1, 4], "intruder_control": True},
    })
    run_sweep(config, tmp_path / "run", announce=lambda *_: None)
    rows = read_control(tmp_path / "run")
    trained = {r.arm_id for r in rows}
    assert len(trained) == 2 and not any(a.startswith("base") for a in trained)
    for arm in trained:
        mine = [r for r in rows if r.arm_id == arm]
        assert {(r.variant, r.lam) for r in mine} == {(v, l) for v in ("intruder", "uniform") for l in (1.0, 0.75, 0.5, 0.0)}
        own = {(r.dataset, r.metric): r.value for r in mine if r.lam == 1.0 and r.variant == "intruder"}
        assert ("generic_text", "nll") in own and ("capitals", "acc_norm") in own or ("capitals", "accuracy") in own
    titles = [t.title for t in build_run_report(load_run(tmp_path / "run")).tables]
    assert any(t.startswith("Intruder control") for t in titles)
