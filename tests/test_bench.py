"""The benchmarks run end to end on the tiny model, and their references agree with rankscope.

``bench/train_throughput.py`` stops with an error when the Trainer + PEFT losses (default and
padding-free baselines) differ from rankscope's at any step, ``bench/eval_mc.py`` when
lm-evaluation-harness predicts a different choice for any item, and ``bench/generate.py`` when
transformers' ``generate`` gives a different output that is not a near-tie; so these runs check
the loss, the scores and the generations against the libraries users would otherwise use. Speed
ratios are not asserted here (bench/ prints them).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_bench(name: str, args: list[str], monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [name, *args])
    runpy.run_path(str(BENCH / name), run_name="__main__")
    return capsys.readouterr().out


def test_train_throughput_matches_trainer_and_peft_step_by_step(tiny_model_dir, monkeypatch, capsys):
    pytest.importorskip("datasets", reason="the Trainer reference needs the `datasets` package (extra: bench)")
    out = run_bench("train_throughput.py", ["--model", str(tiny_model_dir), "--dataset", "arith_chain",
                                            "--steps", "3", "--warmup-steps", "1", "--repeats", "1",
                                            "--batch-size", "4", "--rank", "4", "--peak-seconds", "0.3"],
                    monkeypatch, capsys)
    for arm in ("lora r=4", "sft"):
        for side in ("default", "grouped"):
            assert f"[{arm}] Trainer+PEFT {side}" in out and f"[{arm}] loss per answer token, {side}" in out
        assert f"[{arm}] rankscope" in out and "HFU" in out
        # padding-free runs (and its losses are checked) or says why not
        assert (f"[{arm}] loss per answer token, padding-free" in out
                or f"[{arm}] padding-free baseline skipped" in out)
    lines = out.strip().splitlines()
    assert lines[-2].startswith("speedup vs default Trainer: ") and lines[-2].endswith("x")
    assert lines[-1].startswith("speedup vs fastest baseline: ") and lines[-1].endswith("x")


def test_train_throughput_model_flops_follow_palm(monkeypatch):
    """6N per token for full training, 4N frozen + 6N trainable for adapters, plus 12·L·H·Q·T attention."""
    import importlib.util

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    spec = importlib.util.spec_from_file_location("train_throughput", BENCH / "train_throughput.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    # every projection of both layers plus the (tied) output head; embeddings and norms are no matmul
    per_layer = 16 * 16 * 2 + 16 * 8 * 2 + 16 * 32 * 3
    assert linear == 2 * per_layer + 50 * 16
    attention = 12 * 2 * 2 * 8
    assert bench.model_flops(model, [5, 3]) == 6 * linear * 8 + attention * (25 + 9)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.lm_head.weight.requires_grad_(False)
    model.model.layers[0].mlp.down_proj.weight.requires_grad_(True)
    trained = 32 * 16
    assert bench.model_flops(model, [4]) == (4 * (linear - trained) + 6 * trained) * 4 + attention * 16


def test_generate_outputs_equal_transformers_generate(tiny_model_dir, tmp_path, monkeypatch, capsys):
    out = run_bench("generate.py", ["--model", str(tiny_model_dir), "--gsm8k-path", str(tmp_path / "no-gsm8k"),
                                    "--n", "6", "--batch-size", "4", "--arith-new-tokens", "6",
                                    "--repeats", "1"], monkeypatch, capsys)
    assert "outputs: 6 of 6 identical" in out
    assert out.strip().splitlines()[-1].startswith("speedup vs transformers generate: ")


def test_eval_mc_matches_lm_eval_predictions(tiny_model_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("lm_eval", reason="the reference is lm-evaluation-harness (extra: bench)")
    out = run_bench("eval_mc.py", ["--model", str(tiny_model_dir), "--path", str(tmp_path / "no-mmlu"),
                                   "--n", "12"], monkeypatch, capsys)
    assert "predictions that differ: 0 of 12" in out
    assert out.strip().splitlines()[-1].startswith("speedup:")
