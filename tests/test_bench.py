"""The benchmarks run end to end on the tiny model, and their references agree with rankscope.

``bench/train_throughput.py`` stops with an error when the Trainer + PEFT losses differ from
rankscope's at any step, and ``bench/eval_mc.py`` when lm-evaluation-harness predicts a different
choice for any item; so these runs check the loss and the scores against the libraries users
would otherwise use. Speed ratios are not asserted here (bench/ prints them).
"""

from __future__ import annotations

import csv
import json
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
                                            "--steps", "3", "--batch-size", "4", "--rank", "4",
                                            "--peak-seconds", "0.3"], monkeypatch, capsys)
    assert "[lora r=4] loss per answer token" in out and "[sft] loss per answer token" in out
    assert out.strip().splitlines()[-1].endswith("x")


def test_eval_mc_matches_lm_eval_predictions(tiny_model_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("lm_eval", reason="the reference is lm-evaluation-harness (extra: bench)")
    out = run_bench("eval_mc.py", ["--model", str(tiny_model_dir), "--path", str(tmp_path / "no-mmlu"),
                                   "--arc-path", str(tmp_path / "no-arc.jsonl"), "--n", "12"], monkeypatch, capsys)
    assert "predictions that differ: 0 of 12" in out
    assert out.strip().splitlines()[-1].startswith("speedup vs lm-eval cloze:")


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
