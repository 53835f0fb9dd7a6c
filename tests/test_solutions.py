"""Worked-solution targets (GSM8K, MathQA), per-dataset lengths, and the `truncated` flag."""

from __future__ import annotations

import csv
import json
import re

import pytest
import torch

from rankscope.config import DatasetSpec, EvalSpec, NllSpec
from rankscope.data import schemas
from rankscope.data.answers import extract_number, is_correct
from rankscope.data.lm_eval_bridge import NUMBER_REGEX, task_rows
from rankscope.data.registry import load_dataset
from rankscope.data.solutions import apply_target_policy, clean_gsm8k_solution, target_reads_back
from rankscope.data.types import Example, LoadedDataset, TaskInfo
from rankscope.evaluate.generative import score_generative
from rankscope.evaluate.suite import evaluate_dataset
from rankscope.train.loop import encode_example
from test_data_benchmarks import shared

ROW = {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                   "How many clips did Natalia sell altogether in April and May?",
       "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
                 "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"}


def test_gsm8k_target_is_the_clean_worked_solution():
    example = schemas.gsm8k(ROW, "u")
    assert example.answer == "72"
    assert example.target == ("Natalia sold 48/2 = 24 clips in May.\n"
                              "Natalia sold 48+24 = 72 clips altogether in April and May.\n#### 72")
    assert example.training_text == example.target


def test_every_shared_gsm8k_target_reads_back_its_answer():
    """On every upstream row: no calculator annotation is left, '####' only ends it, rankscope's extractor and the
    exported lm-eval task's regex both read the final answer, and a prediction equal to the target scores."""
    folder = shared("gsm8k")
    rows = [json.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_text().splitlines() if line]
    assert len(rows) > 1000
    regex = re.compile(NUMBER_REGEX)
    for i, row in enumerate(rows):
        example = schemas.gsm8k(row, str(i))
        assert "<<" not in example.target and example.target.count("####") == 1
        assert example.target.endswith(f"\n#### {example.answer}")
        assert target_reads_back(example), example.target
        assert is_correct(example.target, example, "number")
        groups = regex.findall(example.target)[0]
        assert extract_number(next(g for g in groups if g)) == example.answer


def test_export_target_column_is_the_number_not_the_solution():
    example = schemas.gsm8k(ROW, "u")
    info = TaskInfo("gsm8k", "reasoning", "generative", "number")
    assert task_rows([example], info)[0]["target"] == "72"


def test_clean_keeps_text_without_annotations():
    assert clean_gsm8k_solution("He has 3 + 4 = 7 apples.\n#### 7") == "He has 3 + 4 = 7 apples."


def test_mathqa_rationale_only_on_request():
    row = {"Problem": "what is 2 + 3 ?", "options": "a ) 4 , b ) 5 , c ) 6", "correct": "b",
           "Rationale": '"2 + 3 = 5 answer : b"'}
    example = schemas.mathqa(row, "m")
    assert example.answer == "5" and example.target.endswith("The answer is 5.")
    assert apply_target_policy([example], "mc", "auto")[0].training_text == "5"
    assert apply_target_policy([example], "mc", "solution")[0].training_text == example.target
    gsm = schemas.gsm8k(ROW, "g")
    assert apply_target_policy([gsm], "generative", "auto")[0].target == gsm.target
    assert apply_target_policy([gsm], "generative", "answer")[0].training_text == "72"


def test_gsm8k_lengths_default_and_override():
    folder = shared("gsm8k")
    info = load_dataset(DatasetSpec(name="gsm8k", path=str(folder), n_test=2)).info
    assert info.max_new_tokens >= 256 and info.max_length >= 384
    assert info.new_tokens(24) == info.max_new_tokens
    spec = DatasetSpec(name="gsm8k", path=str(folder), n_test=2, max_new_tokens=40, max_length=200)
    info = load_dataset(spec).info
    assert (info.max_new_tokens, info.max_length) == (40, 200)
    bare = load_dataset(DatasetSpec(name="gsm8k", path=str(folder), n_test=2, n_train=2, target="answer"),
                        for_training=True)
    assert bare.info.new_tokens(24) == 24 and all(e.training_text == e.answer for e in bare.train)
    other = load_dataset(DatasetSpec(name="arith_chain", n_test=2)).info
    assert other.new_tokens(24) == 24 and other.train_length(128) == 128


def test_training_teaches_the_worked_solution(tiny):
    example = schemas.gsm8k(ROW, "u")
    encoded = encode_example(tiny.tokenizer, example, max_length=384)
    answer_ids = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != -100]
    text = tiny.tokenizer.decode(answer_ids, skip_special_tokens=True)
    assert text.strip() == example.target


class _ScriptedGenerate:
    """Stands in for model.generate: appends scripted new tokens to each (left-padded) prompt row."""

    def __init__(self, model, rows: list[list[int]]):
        self.model, self.rows = model, rows

    def __call__(self, input_ids, **kwargs):
        width = max(len(r) for r in self.rows)
        config = kwargs.get("generation_config")
        pad = kwargs["pad_token_id"] if "pad_token_id" in kwargs else config.pad_token_id
        new = torch.tensor([r + [pad] * (width - len(r)) for r in self.rows[:len(input_ids)]])
        self.rows = self.rows[len(input_ids):]
        return torch.cat([input_ids, new], dim=1)


def test_truncated_flags_rows_without_an_end_token(tiny, monkeypatch):
    tokenizer, model = tiny.tokenizer, tiny.model
    eos, digit = tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("7")
    examples = [Example(question="Q?", answer="7", uid="a"), Example(question="Q?", answer="7", uid="b")]
    # row a stops after one token; row b runs to the limit of 3 new tokens
    monkeypatch.setattr(model, "generate", _ScriptedGenerate(model, [[digit, eos], [digit, digit, digit]]))
    # the scripted generate is the plain (reference) decoder; the fast decoder's truncation flag is
    # checked against it in tests/test_generation.py
    scores = score_generative(model, tokenizer, examples, "number", batch_size=2, max_new_tokens=3, fast=False)
    assert scores.truncated == [False, True]
    assert scores.correct == [True, False]  # "777" is not 7


def test_truncated_metric_is_the_mean_of_the_flags(tiny):
    examples = [Example(question=f"What is {i} + 1?", answer=str(i + 1), uid=str(i)) for i in range(5)]
    dataset = LoadedDataset(TaskInfo("t", "reasoning", "generative", "number", max_new_tokens=2), test=examples)
    result = evaluate_dataset(tiny.model, tiny.tokenizer, dataset, EvalSpec(batch_size=2, nll=NllSpec(enabled=False)))
    assert result["max_new_tokens"] == 2
    flags = [s["truncated"] for s in result["samples"]]
    assert result["metrics"]["truncated"]["value"] == pytest.approx(sum(flags) / len(flags))
    assert result["metrics"]["truncated"]["n"] == 5


def test_exported_task_generates_as_many_tokens_as_rankscope():
    from rankscope.data.lm_eval_bridge import task_config

    info = TaskInfo("gsm8k", "reasoning", "generative", "number", max_new_tokens=256)
    assert task_config(info, "gsm8k", "x.jsonl")["generation_kwargs"]["max_gen_toks"] == 256
    plain = TaskInfo("t", "reasoning", "generative", "number")
    assert "max_gen_toks" not in task_config(plain, "t", "x.jsonl")["generation_kwargs"]


def test_a_sweep_trained_on_gsm8k_records_truncated_per_arm(tiny_model_dir, tmp_path):
    """Tiny model, two steps on GSM8K's worked solutions: every arm has a `truncated` row for the set,
    generated with the set's own length (here 6 new tokens: an untrained model never stops, so 1.0)."""
    from rankscope.config import config_from_dict
    from rankscope.sweep.runner import run_sweep

    config = config_from_dict({
        "name": "gsm8k-tiny", "model": {"id": str(tiny_model_dir)},
        "data": {"train": [{"name": "gsm8k", "path": str(shared("gsm8k")), "n_train": 8, "n_test": 4,
                            "max_new_tokens": 6, "max_length": 96}]},
        "arms": {"sft": True, "lora": {"ranks": [2]}, "seeds": [0]},
        "train": {"steps": 2, "batch_size": 4},
        "eval": {"batch_size": 4, "nll": {"max_tokens": 64, "chunk_tokens": 32}},
        "analysis": {"enabled": False},
    })
    outcome = run_sweep(config, tmp_path / "run", announce=lambda *_: None)
    assert not outcome.failed
    rows = [r for r in csv.DictReader((tmp_path / "run" / "results.csv").open()) if r["metric"] == "truncated"]
    assert {r["arm_id"] for r in rows} == {a.arm_id for a in outcome.arms} and len(rows) == 3
    for row in rows:
        assert row["dataset"] == "gsm8k" and row["n"] == "4" and 0.0 <= float(row["value"]) <= 1.0
    for arm in outcome.arms:
        evaluation = json.loads((tmp_path / "run" / "arms" / arm.arm_id / "eval.json").read_text())
        assert evaluation["datasets"]["gsm8k"]["max_new_tokens"] == 6
