"""`rankscope plan`: per-arm memory and verdicts from the config alone, and the sweep's pre-flight refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rankscope.cli import main
from rankscope.config import config_from_dict
from rankscope.errors import RankscopeError
from rankscope.models.arms import apply_lora, lora_parameter_count, resolve_targets
from rankscope.plan import model_shape, plan_sweep
from rankscope.plan.devices import GIB, NAMED_GPUS
from rankscope.plan.estimate import activation_bytes
from rankscope.sweep.plan import plan_arms
from rankscope.sweep.runner import run_sweep

LLAMA_8B = Path(__file__).parent / "fixtures" / "llama-3.1-8b"


def paper_like(model_id, **sections):
    raw = {
        "name": "paper-like",
        "model": {"id": str(model_id)},
        "data": {"train": [{"name": "arith_chain", "n_train": 24, "n_test": 6}]},
        "arms": {"sft": True, "lora": {"ranks": [8, 256]}, "seeds": [0]},
        "train": {"steps": 2, "batch_size": 16, "max_length": 256},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def llama_shape():
    return model_shape(paper_like(LLAMA_8B).model)


def by_method(estimates):
    return {(e.method, e.rank): e for e in estimates}


def test_llama_8b_shape_matches_the_published_architecture(llama_shape):
    assert llama_shape.n_params == pytest.approx(8.03e9, rel=1e-3)
    assert (llama_shape.n_layers, llama_shape.hidden, llama_shape.kv_dim, llama_shape.vocab) == (32, 4096, 1024, 128256)


def test_full_fine_tuning_is_16_bytes_per_parameter_plus_activations(llama_shape):
    config = paper_like(LLAMA_8B)
    sft = by_method(plan_sweep(config, llama_shape, NAMED_GPUS["h200"], plan_arms(config), 0.0))[("sft", None)]
    parts = sft.memory_parts
    assert parts["weights"] + parts["gradients"] + parts["optimizer"] == pytest.approx(
        16 * llama_shape.n_params / GIB, abs=0.01)
    assert sft.memory_gib == pytest.approx(16 * llama_shape.n_params / GIB + parts["activations"] + parts["runtime"]
                                           + parts["base"], abs=0.01)
    # On an H200 it fits once the base is not kept beside it; checkpointing keeps activations small.
    assert sft.verdict == "fits" and not sft.base_resident and sft.gradient_checkpointing


def test_verdicts_name_the_fix_for_an_80gb_gpu(llama_shape):
    config = paper_like(LLAMA_8B)
    estimates = by_method(plan_sweep(config, llama_shape, NAMED_GPUS["h100"], plan_arms(config), 0.0))
    sft = estimates[("sft", None)]
    assert sft.verdict == "needs-gpus" and sft.fix == "sweep.sft_gpus=2"
    assert estimates[("lora", 8)].verdict == "fits"
    sharded = paper_like(LLAMA_8B, sweep={"sft_gpus": 2})
    sft2 = by_method(plan_sweep(sharded, llama_shape, NAMED_GPUS["h100"], plan_arms(sharded), 0.0))[("sft", None)]
    assert sft2.verdict == "fits" and sft2.per_gpu_gib < sft2.memory_gib
    # Forbidding checkpointing turns a LoRA arm that fits only with it into one that names it.
    no_ckpt = paper_like(LLAMA_8B, train={"gradient_checkpointing": False, "batch_size": 32})
    lora = by_method(plan_sweep(no_ckpt, llama_shape, NAMED_GPUS["h100"], plan_arms(no_ckpt), 0.0))[("lora", 256)]
    assert lora.verdict == "needs-checkpointing" and lora.fix == "train.gradient_checkpointing=auto"


def test_activation_properties(llama_shape):
    full = activation_bytes(llama_shape, 4096, 2, 4, checkpointing=False)
    kept = activation_bytes(llama_shape, 4096, 2, 4, checkpointing=True)
    assert kept < full / 3
    assert activation_bytes(llama_shape, 8192, 2, 4, False) == 2 * full  # linear in tokens
    config = paper_like(LLAMA_8B)
    estimates = plan_sweep(config, llama_shape, NAMED_GPUS["h200"], plan_arms(config), 0.0)
    lora = [e for e in estimates if e.method == "lora"]
    assert lora[0].trainable_params < lora[1].trainable_params
    assert lora[0].step_tflop < by_method(estimates)[("sft", None)].step_tflop


def test_lora_parameter_count_equals_the_real_adapter(tiny_model_dir, tiny):
    config = paper_like(tiny_model_dir, arms={"lora": {"ranks": [4], "targets": "attention"}})
    shape = model_shape(config.model)
    assert shape.n_params == sum(p.numel() for p in tiny.model.parameters())
    counted = lora_parameter_count(resolve_targets(tiny.model, "attention"), 4)
    peft_model = apply_lora(tiny.model, config.arms.lora, 4, 0)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert shape.lora_params(config.arms.lora, 4) == trainable == counted
    peft_model.unload()


def test_plan_json_lists_every_arm(capsys):
    code = main(["plan", str(Path("src/rankscope/presets/paper.yaml")), "--device", "a100-80gb", "--json",
                 f"model.id={LLAMA_8B}"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 1 + 3 * (1 + 9)  # base + per seed: sft and nine ranks
    for row in rows:
        assert {"arm_id", "method", "rank", "trainable_params", "memory_gib", "memory_parts", "verdict"} <= set(row)
        assert sum(row["memory_parts"].values()) == pytest.approx(row["memory_gib"], abs=0.01)


def test_sweep_refuses_an_arm_that_cannot_fit_before_loading_weights(tmp_path, capsys):
    # The 8B fixture has no weights: reaching a load would fail differently.
    config = paper_like(LLAMA_8B, sweep={"sft_base_copy": "keep"})
    with pytest.raises(RankscopeError) as caught:
        run_sweep(config, tmp_path / "run", announce=lambda *_: None)
    assert "fix:" in str(caught.value) and "rankscope plan" in str(caught.value)
    path = tmp_path / "c.yaml"
    path.write_text(f"model: {{id: {LLAMA_8B}}}\ndata: {{train: [{{name: arith_chain, n_train: 8, n_test: 4}}]}}\n")
    assert main(["run", str(path), "--out", str(tmp_path / "run2"), "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fix:" in err
