"""An lm-eval task scored by rankscope gives lm-eval's own predictions, acc and acc_norm.

The task is lm-eval's real ``arc_easy`` YAML (read from the installed package, indexed alone so the
test stays fast) pointed at ~50 ARC-format rows generated here, through ``data_files``. The
reference is lm-evaluation-harness's ``simple_evaluate`` with its ``HFLM`` wrapping the same tiny
model, the task pointed at the same file the way lm-eval documents local data (a YAML that
``include``s the task and sets ``dataset_path: json``).
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pytest
from tokenizers import processors

from conftest import build_tiny_model, build_tokenizer
from rankscope.config import DatasetSpec, EvalSpec
from rankscope.data import lm_eval_bridge as bridge
from rankscope.data.registry import load_dataset
from rankscope.errors import DatasetError
from rankscope.evaluate.lm_eval_scoring import encode_pair, lm_eval_predictions
from rankscope.evaluate.multiple_choice import choice_logprobs
from rankscope.evaluate.suite import evaluate_dataset

lm_eval = pytest.importorskip("lm_eval")
datasets = pytest.importorskip("datasets")

WORDS = ("apples pens books coins cards shells box Paris France number largest capital Tom Ana Leo "
         "more left found lost gives away the of to in is are have has now").split()


def arc_rows(n: int, seed: int = 0) -> list[dict]:
    """ARC's hub schema: question, choices {text, label}, answerKey; 3-5 choices of unequal length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        k = rng.choice([3, 4, 4, 5])
        labels = ["A", "B", "C", "D", "E"][:k] if i % 5 else ["1", "2", "3", "4", "5"][:k]
        texts = [" ".join(rng.choices(WORDS, k=rng.randint(1, 6))) for _ in range(k)]
        question = " ".join(rng.choices(WORDS, k=rng.randint(4, 12))).capitalize() + "?"
        rows.append({"id": f"row-{i}", "question": question,
                     "choices": {"text": texts, "label": labels}, "answerKey": labels[rng.randrange(k)]})
    return rows


@pytest.fixture()
def arc_file(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))  # not ~/.cache
    path = tmp_path / "arc_easy_test.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in arc_rows(50)), encoding="utf-8")
    return path


@pytest.fixture()
def arc_only(monkeypatch) -> Path:
    """lm-eval's own ARC task folder, indexed alone (the full index takes ~15 s on 2 cores)."""
    folder = Path(lm_eval.__file__).parent / "tasks" / "arc"
    local = functools.partial(bridge.load_lmeval_task, include_path=folder, include_defaults=False)
    monkeypatch.setattr("rankscope.data.registry.load_lmeval_task", local)
    return folder


def lm_eval_reference(model, tokenizer, arc_file: Path, folder: Path, tmp_path: Path) -> list[dict]:
    """lm-eval's own run: simple_evaluate + HFLM on arc_easy pointed at the local file; its samples by doc_id."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tasks = tmp_path / "lm_eval_tasks"
    tasks.mkdir()
    (tasks / "arc_easy_local.yaml").write_text(
        f"include: {folder / 'arc_easy.yaml'}\ntask: arc_easy_local\ntag: []\ndataset_path: json\n"
        f"dataset_name: null\ndataset_kwargs: {{data_files: {{test: {arc_file}}}}}\n"
        "training_split: null\nvalidation_split: null\ntest_split: test\n", encoding="utf-8")
    manager = TaskManager(include_path=str(tasks), include_defaults=False)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=8, device="cpu")
    results = simple_evaluate(model=lm, tasks=["arc_easy_local"], task_manager=manager, num_fewshot=0,
                              bootstrap_iters=0, log_samples=True)
    return sorted(results["samples"]["arc_easy_local"], key=lambda s: s["doc_id"])


def test_lmeval_arc_easy_matches_lm_evals_own_run(arc_file, arc_only, tmp_path):
    tokenizer = build_tokenizer()  # with a chat template: the task's own prompt must not use it
    model = build_tiny_model(len(tokenizer), seed=3)
    dataset = load_dataset(DatasetSpec(name="arc_lm", path="lmeval:arc_easy", data_files=str(arc_file)))
    assert dataset.info.format == "mc" and dataset.info.kind == "reasoning" and len(dataset.test) == 50
    first = dataset.test[0]
    assert first.prompt == f"Question: {arc_rows(1)[0]['question']}\nAnswer:"  # arc_easy's doc_to_text, no template
    assert first.continuations == tuple(" " + c for c in first.choices)  # its target_delimiter

    ours = choice_logprobs(model, tokenizer, dataset.test, batch_size=8)
    preds, preds_norm = lm_eval_predictions(dataset.test, ours)
    samples = lm_eval_reference(model, tokenizer, arc_file, arc_only, tmp_path)
    assert [s["doc_id"] for s in samples] == list(range(50))
    theirs = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
    for mine, ref in zip(ours, theirs, strict=True):
        assert mine == pytest.approx(ref, abs=1e-4)  # the same tokens are scored
    their_preds = [max(range(len(ll)), key=ll.__getitem__) for ll in theirs]
    assert preds == their_preds
    assert [float(p == e.gold) for p, e in zip(preds, dataset.test)] == [s["acc"] for s in samples]
    assert [float(p == e.gold) for p, e in zip(preds_norm, dataset.test)] == [s["acc_norm"] for s in samples]
    assert preds != preds_norm  # unequal lengths: the two metrics are not the same number by construction

    metrics = evaluate_dataset(model, tokenizer, dataset, EvalSpec(batch_size=8))["metrics"]
    assert metrics["accuracy"]["value"] == pytest.approx(sum(s["acc"] for s in samples) / 50)
    assert metrics["acc_norm"]["value"] == pytest.approx(sum(s["acc_norm"] for s in samples) / 50)


def with_bos(tokenizer):
    """The tiny tokenizer made Llama-like: it prepends BOS when encoding."""
    backend = tokenizer.backend_tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", pair="<|im_start|> $A $B", special_tokens=[("<|im_start|>", tokenizer.bos_token_id)])
    return tokenizer


@pytest.mark.parametrize("bos", [False, True])
def test_encode_pair_is_lm_evals(bos):
    from lm_eval.models.huggingface import HFLM

    tokenizer = build_tokenizer()
    tokenizer = with_bos(tokenizer) if bos else tokenizer
    assert (tokenizer.encode("Tom")[0] == tokenizer.bos_token_id) is bos
    lm = HFLM(pretrained=build_tiny_model(len(tokenizer)), tokenizer=tokenizer, batch_size=1, device="cpu")
    cases = [("Question: Tom has 12 apples\nAnswer:", " 12"), ("Answer: ", "Paris"), ("the box ", " is left"),
             ("<|im_start|>Tom", " Ana"), ("What is", "n't")]
    for context, continuation in cases:
        assert encode_pair(tokenizer, context, continuation) == tuple(lm._encode_pair(context, continuation))
    # an empty context starts from lm-eval's prefix token
    assert encode_pair(tokenizer, "", " Paris")[0] == [lm.prefix_token_id]


def test_lmeval_offline_error_names_data_files(arc_only, monkeypatch, tmp_path):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(DatasetError, match=r"from the hub .*fix: offline, give data_files:"):
        load_dataset(DatasetSpec(name="arc_lm", path="lmeval:arc_easy"))


def test_data_files_errors(arc_file, arc_only):
    with pytest.raises(DatasetError, match="data_files.test: no such file"):
        load_dataset(DatasetSpec(name="arc_lm", path="lmeval:arc_easy", data_files={"test": str(arc_file) + ".x"}))
    with pytest.raises(DatasetError, match="is a tag entry, not a YAML task"):
        load_dataset(DatasetSpec(name="arc_lm", path="lmeval:ai2_arc", kind="reasoning", data_files=str(arc_file)))
    with pytest.raises(DatasetError, match="data_files: applies to lm-eval tasks only"):
        load_dataset(DatasetSpec(name="capitals", data_files=str(arc_file)))


def test_num_fewshot_puts_lm_evals_examples_in_the_prompt(tmp_path, arc_only, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    rows = arc_rows(12, seed=1)
    files = {}
    for split, part in (("train", rows[:8]), ("test", rows[8:])):
        files[split] = str(tmp_path / f"{split}.jsonl")
        Path(files[split]).write_text("".join(json.dumps(r) + "\n" for r in part), encoding="utf-8")
    spec = DatasetSpec(name="arc_lm", path="lmeval:arc_easy", data_files=files, num_fewshot=2)
    dataset = load_dataset(spec)
    assert len(dataset.test) == 4
    for example in dataset.test:
        shots = example.prompt.split("\n\n")  # arc_easy's fewshot_delimiter
        assert len(shots) == 3 and shots[-1] == f"Question: {example.question}\nAnswer:"
        assert all(any(shot.startswith(f"Question: {r['question']}\nAnswer:") for r in rows[:8]) for shot in shots[:2])


def test_relative_data_files_resolve_against_the_datasets_file(tmp_path):
    from rankscope.evaluate.standalone import read_dataset_list

    listing = tmp_path / "sets" / "datasets.yaml"
    listing.parent.mkdir()
    listing.write_text('- {name: a, path: "lmeval:arc_easy", data_files: arc.jsonl}\n'
                       '- {name: b, path: "lmeval:arc_easy", data_files: {test: ../b.jsonl, train: /abs/t.jsonl}}\n')
    a, b = read_dataset_list(listing)
    assert a.data_files == str(tmp_path / "sets" / "arc.jsonl") and a.path == "lmeval:arc_easy"
    assert b.data_files == {"test": str(tmp_path / "b.jsonl"), "train": "/abs/t.jsonl"}
