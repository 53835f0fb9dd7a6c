"""The benchmarks run end to end on the tiny model, and their references agree with rankscope.

``bench/train_throughput.py`` stops with an error when the Trainer + PEFT losses (default and
padding-free baselines) differ from rankscope's at any step, ``bench/eval_mc.py`` when
lm-evaluation-harness predicts a different choice for any item, and ``bench/generate.py`` when
transformers' ``generate`` gives a different output that is not a near-tie; so these runs check
the loss, the scores and the generations against the libraries users would otherwise use. Speed
ratios are not asserted here (bench/ prints them).
"""

from __future__ import annotations

import csv
import json
import re
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
        # padding-free runs for both arms (with the cache off, a flattened batch gives the padded loss)
        assert f"[{arm}] loss per answer token, padding-free" in out
        assert f"[{arm}] padding-free baseline skipped" not in out
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
                                    "--repeats", "1", "--ablate"], monkeypatch, capsys)
    assert "outputs: 6 of 6 identical" in out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("speedup vs transformers generate: ")
    assert any(line.startswith("speedup vs generate on packed linears: ") for line in lines)
    # the ablations ran and agree with generate too (a real difference would have stopped the run)
    for label in ("loop only", "- packed", "- slack"):
        assert any(f"rankscope {label}:" in line or f"rankscope, {label}:" in line for line in lines), label
    # the work counts: the shared prefix runs once and finished rows leave, so fewer positions are computed
    work = {label: (int(passes), int(positions)) for label, passes, positions in
            re.findall(r"\] (.+?)\s*: median .*?; (\d+) forward passes, (\d+) token positions", out)}
    generate_passes, generate_positions = work["transformers generate"]
    our_passes, our_positions = work["rankscope"]
    assert generate_passes >= 6 and our_passes >= 6  # at least one pass per new token
    assert our_positions < generate_positions
    assert work["generate, packed linears"] == work["transformers generate"]


def test_eval_mc_matches_lm_eval_predictions(tiny_model_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("lm_eval", reason="the reference is lm-evaluation-harness (extra: bench)")
    out = run_bench("eval_mc.py", ["--model", str(tiny_model_dir), "--path", str(tmp_path / "no-mmlu"),
                                   "--arc-path", str(tmp_path / "no-arc.jsonl"), "--n", "12"], monkeypatch, capsys)
    assert "predictions that differ: 0 of 12" in out
    assert out.strip().splitlines()[-1].startswith("speedup vs lm-eval cloze:")


def test_probe_cka_reads_finished_arms_of_a_run_directory(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """An sft arm saved with the base weights reads CKA exactly 1 in every layer; a LoRA arm with
    a nonzero update reads below 1 somewhere (the script really loads each arm's weights)."""
    import json

    import torch

    from rankscope.config import config_from_dict, dump_config
    from rankscope.models.weights import save_sft_weights
    from rankscope.models.arms import apply_lora
    from rankscope.models.load import load_base_model

    config = config_from_dict({"model": {"id": str(tiny_model_dir)},
                               "data": {"train": [{"name": "arith_chain", "n_train": 8, "n_test": 8}]},
                               "analysis": {"probe_size": 2, "probe_max_length": 48}})
    run = tmp_path / "run"
    (run / "arms" / "sft").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(config))
    base = load_base_model(config.model)
    save_sft_weights(base.model, run / "arms" / "sft" / "model.safetensors")  # an sft arm with the base's weights
    (run / "arms" / "sft" / "arm.json").write_text(json.dumps({"method": "sft", "rank": None, "status": "done"}))
    lora = apply_lora(base.model, config.arms.lora, 4, 0)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    lora.save_pretrained(run / "arms" / "r4" / "adapter", safe_serialization=True)
    (run / "arms" / "r4" / "arm.json").write_text(json.dumps({"method": "lora", "rank": 4, "status": "done"}))
    out = run_bench("probe_cka.py", [str(run), "--arms", "sft", "r4"], monkeypatch, capsys)
    lines = out.strip().splitlines()
    header = lines[1].split()
    table = [line.split() for line in lines[2:]]
    assert len(table) == 3  # embeddings + 2 blocks
    sft = [float(row[header.index("sft_cka")]) for row in table]
    assert sft == [1.0, 1.0, 1.0]
    r4 = [float(row[header.index("r4_cka")]) for row in table]
    assert min(r4) < 1.0


def test_gpu_check_skips_without_cuda_and_runs_its_path_on_cpu(tiny_model_dir, monkeypatch, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run bench/gpu_check.py itself")
    assert "no CUDA device here; skipped" in run_bench("gpu_check.py", [], monkeypatch, capsys)
    # --allow-cpu runs every step on the tiny model's config: the checks must find the fast paths kept.
    out = run_bench("gpu_check.py", ["--allow-cpu", "--shapes", str(tiny_model_dir / "config.json"), "--steps", "2",
                                     "--batch-size", "2", "--length", "32", "--prefix", "8", "--answer", "4"],
                    monkeypatch, capsys)
    assert "multiple-choice scoring fast path: kept" in out
    assert out.count("training fast path: kept") == 2 and out.count("precision bf16-mixed (master float32)") == 2
    assert out.count("measured/plan") == 2 and '{"ok": true}' in out


def test_eval_mc_runs_lm_evals_own_tasks(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """lm-eval's arc_easy and mmlu_<subject> tasks on generated local files: the same predictions both ways."""
    pytest.importorskip("lm_eval", reason="the reference is lm-evaluation-harness (extra: bench)")
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    words = "apples pens books coins cards shells box Paris France number capital Tom Ana Leo".split()
    arc = tmp_path / "arc.jsonl"
    arc.write_text("".join(json.dumps({"query": f"Question: Which {words[i]} is {words[-i]}?", "gold": i % 4,
                                       "choices": [" ".join(words[j:j + 1 + (i + j) % 3]) for j in range(4)]}) + "\n"
                           for i in range(1, 7)), encoding="utf-8")
    (tmp_path / "mmlu" / "test").mkdir(parents=True)
    for subject in ("anatomy", "astronomy", "high_school_geography", "world_religions"):
        with open(tmp_path / "mmlu" / "test" / f"{subject}_test.csv", "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([[f"Where is {words[i]}?", *words[i:i + 4], "ABCD"[i % 4]] for i in range(3)])
    out = run_bench("eval_mc.py", ["--model", str(tiny_model_dir), "--path", str(tmp_path / "mmlu"),
                                   "--arc-path", str(arc), "--n-task", "8", "--n", "4"], monkeypatch, capsys)
    assert "[lm-eval task arc_easy] 6 questions" in out and "predictions that agree: 6 of 6" in out
    assert out.count("predictions that agree: 2 of 2") == 4  # 8 MMLU questions over 4 subjects
    assert "'\\nA. " in out or "Answer:'" in out  # mmlu's lettered prompt
    assert "speedup vs lm-eval tasks (all of the above):" in out
    assert out.strip().splitlines()[-1].startswith("speedup vs lm-eval cloze:")


def test_multi_adapter_swap_scores_like_per_adapter_reload(tiny_model_dir, monkeypatch, capsys):
    """bench/multi_adapter.py stops when the swapped adapters score differently from reloading."""
    out = run_bench("multi_adapter.py", ["--model", str(tiny_model_dir), "--ranks", "2,4", "--n", "4",
                                          "--repeats", "1"], monkeypatch, capsys)
    assert "identical on both paths" in out and "'r2'" in out and "'r4'" in out
    assert out.strip().splitlines()[-1].startswith("speedup vs per-adapter reload: ")
