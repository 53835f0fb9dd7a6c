"""Multiple-choice scoring: rankscope vs lm-evaluation-harness on the same items and model.

Two comparisons, each on the same model object in memory.

**lm-eval's own tasks** (``arc_easy`` with acc and acc_norm, and ``mmlu`` with its one-letter
answers after the lettered options): lm-eval builds and scores them through its API
(``simple_evaluate`` + ``HFLM``), on local copies of the shared files written in each task's hub
schema and read as lm-eval reads local data (a task YAML that includes the registered one with
``dataset_path: json``); rankscope scores the same tasks as ``lmeval:<task>`` datasets with
``data_files``, i.e. the same prompts and continuations. Zero-shot. Prints accuracies, agreeing
predictions and the time ratio per task.

**Cloze** (rankscope's own prompt): the first ``--n`` of MMLU's test split (the study's recall
set) when its upstream files are found (``--path``, default ``../shared/data/mmlu`` next to the
repository), else the builtin ``capitals`` set, each choice scored as a continuation of
rankscope's ``render_prompt``; the reference is lm-eval's ``HFLM.loglikelihood`` on the same
requests, which runs one sequence per (question, choice) and the output head at every position.
rankscope runs each prompt once and only the head positions a choice needs
(rankscope.evaluate.multiple_choice). Prints both accuracies, how many predictions differ, the
largest log-probability difference, both wall times, and last ``speedup vs lm-eval cloze: N.Nx``.

Any differing prediction stops the script with an error.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import torch

from rankscope.config import DatasetSpec, ModelSpec
from rankscope.data.prompts import continuation, render_prompt
from rankscope.data.lm_eval_tasks import task_manager
from rankscope.data.registry import load_dataset
from rankscope.evaluate.lm_eval_scoring import lm_eval_predictions
from rankscope.evaluate.multiple_choice import choice_logprobs, score_multiple_choice
from rankscope.models.load import load_base_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lm_eval_agreement import DEFAULT_ARC, arc_hub_rows, lm_eval_run, local_task, write_jsonl  # noqa: E402

DEFAULT_MMLU = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmlu"
MMLU_SUBJECTS = ("anatomy", "astronomy", "high_school_geography", "world_religions")


def mmlu_hub_rows(folder: Path, subject: str, n: int) -> list[dict]:
    """The first ``n`` rows of an upstream MMLU test CSV in the hub schema lm-eval's mmlu reads."""
    rows = []
    with open(folder / "test" / f"{subject}_test.csv", encoding="utf-8", newline="") as handle:
        for record in csv.reader(handle):
            if len(rows) == n:
                break
            question, *choices, answer = record
            rows.append({"question": question, "subject": subject, "choices": choices, "answer": "ABCD".index(answer)})
    return rows


def compare_task(loaded, lm, task: str, rows: list[dict], workdir: Path, batch_size: int) -> tuple[float, float]:
    """One lm-eval task on ``rows``: rankscope (``lmeval:<task>`` + data_files) vs lm-eval's simple_evaluate.

    Prints both sides' acc (and acc_norm where the task reports it) and how many predictions
    agree; stops on any differing prediction. Returns (rankscope seconds, lm-eval seconds).
    """
    data_file = write_jsonl(rows, workdir / f"{task}.jsonl")
    examples = load_dataset(DatasetSpec(name=f"{task}_lm", path=f"lmeval:{task}",
                                        kind="reasoning" if task.startswith("arc") else "recall",
                                        data_files=str(data_file))).test
    started = time.perf_counter()
    ours = choice_logprobs(loaded.model, loaded.tokenizer, examples, batch_size=batch_size)
    ours_s = time.perf_counter() - started
    registered = Path(task_manager().task_index[task].yaml_path)
    samples, theirs_s = lm_eval_run(lm, local_task(registered, task, data_file, workdir / "tasks", "bench"),
                                    workdir / "tasks")
    preds, preds_norm = lm_eval_predictions(examples, ours)
    their_preds = [max(range(len(s["filtered_resps"])), key=lambda j, s=s: float(s["filtered_resps"][j][0]))
                   for s in samples]
    n = len(examples)
    agree = sum(a == b for a, b in zip(preds, their_preds))
    ours_line = f"acc {sum(p == e.gold for p, e in zip(preds, examples)) / n:.1%}"
    theirs_line = f"acc {sum(s['acc'] for s in samples) / n:.1%}"
    if "acc_norm" in samples[0]:
        ours_line += f"  acc_norm {sum(p == e.gold for p, e in zip(preds_norm, examples)) / n:.1%}"
        theirs_line += f"  acc_norm {sum(s['acc_norm'] for s in samples) / n:.1%}"
        agree_norm = sum(float(p == e.gold) == s["acc_norm"] for p, e, s in zip(preds_norm, examples, samples))
        if agree_norm != n:
            raise SystemExit(f"{task}: acc_norm correctness differs on {n - agree_norm} items")
    print(f"[lm-eval task {task}] {n} questions; first prompt ends {examples[0].prompt[-40:]!r}")
    print(f"  lm-eval simple_evaluate: {theirs_line}  {theirs_s:6.1f} s")
    print(f"  rankscope lmeval:{task}: {ours_line}  {ours_s:6.1f} s")
    print(f"  predictions that agree: {agree} of {n}; speedup vs lm-eval {task}: {theirs_s / ours_s:.1f}x")
    if agree != n:
        raise SystemExit(f"{task}: the two scorers disagree on some predictions")
    return ours_s, theirs_s


def lm_eval_tasks(loaded, args) -> None:
    """lm-eval's arc_easy and mmlu (letters) on local copies of the shared files, both ways."""
    from lm_eval.models.huggingface import HFLM

    arc, mmlu = Path(args.arc_path), Path(args.path)
    if not arc.is_file() and not (mmlu / "test").is_dir():
        print(f"{arc} and {mmlu} not found: skipping lm-eval's own tasks")
        return
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=args.lm_eval_batch_size,
              device=str(loaded.device))
    ours = theirs = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if arc.is_file():
            o, t = compare_task(loaded, lm, "arc_easy", arc_hub_rows(arc, args.n_task), workdir, args.batch_size)
            ours, theirs = ours + o, theirs + t
        if (mmlu / "test").is_dir():
            per_subject = max(1, args.n_task // len(MMLU_SUBJECTS))
            for subject in MMLU_SUBJECTS:
                o, t = compare_task(loaded, lm, f"mmlu_{subject}", mmlu_hub_rows(mmlu, subject, per_subject),
                                    workdir, args.batch_size)
                ours, theirs = ours + o, theirs + t
    print(f"speedup vs lm-eval tasks (all of the above): {theirs / ours:.1f}x")


def lm_eval_logprobs(model, tokenizer, examples, batch_size: int, device: torch.device) -> list[list[float]]:
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size, device=str(device))
    requests, index = [], []
    for i, example in enumerate(examples):
        context = render_prompt(tokenizer, example.question)
        for j, choice in enumerate(example.choices):
            requests.append(Instance(request_type="loglikelihood", doc={}, arguments=(context, continuation(tokenizer, choice)),
                                     idx=j, metadata=("bench", i, 1)))
            index.append((i, j))
    results = lm.loglikelihood(requests, disable_tqdm=True)
    logprobs = [[0.0] * len(example.choices) for example in examples]
    for (i, j), (logprob, _) in zip(index, results):
        logprobs[i][j] = logprob
    return logprobs


def accuracy(examples, logprobs) -> tuple[float, list[int]]:
    predictions = [max(range(len(row)), key=row.__getitem__) for row in logprobs]
    return sum(p == e.gold for p, e in zip(predictions, examples)) / len(examples), predictions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--path", default=str(DEFAULT_MMLU), help="MMLU upstream folder")
    parser.add_argument("--n", type=int, default=200, help="cloze comparison: questions")
    parser.add_argument("--arc-path", default=str(DEFAULT_ARC), help="the reformatted ARC-Easy JSONL")
    parser.add_argument("--n-task", type=int, default=100,
                        help="lm-eval's own tasks: ARC-Easy questions, and MMLU questions over 4 subjects")
    parser.add_argument("--batch-size", type=int, default=16, help="rankscope: questions per forward")
    parser.add_argument("--lm-eval-batch-size", type=int, default=32, help="lm-eval: sequences per forward")
    args = parser.parse_args()

    loaded = load_base_model(ModelSpec(id=args.model))
    lm_eval_tasks(loaded, args)
    if Path(args.path).exists():
        spec = DatasetSpec(name="mmlu", path=args.path, n_test=args.n)
    else:
        print(f"{args.path} not found: using the builtin capitals set")
        spec = DatasetSpec(name="capitals", n_test=args.n)
    examples = load_dataset(spec, seed=0).test[:args.n]
    n_choices = sum(len(e.choices) for e in examples)
    print(f"{spec.name}: {len(examples)} questions, {n_choices} choices; device {loaded.device}, "
          f"{torch.get_num_threads()} threads, dtype {loaded.dtype}")

    started = time.perf_counter()
    reference = lm_eval_logprobs(loaded.model, loaded.tokenizer, examples, args.lm_eval_batch_size, loaded.device)
    reference_s = time.perf_counter() - started
    started = time.perf_counter()
    ours = score_multiple_choice(loaded.model, loaded.tokenizer, examples, batch_size=args.batch_size).choice_logprobs
    ours_s = time.perf_counter() - started

    reference_acc, reference_pred = accuracy(examples, reference)
    ours_acc, ours_pred = accuracy(examples, ours)
    differ = sum(a != b for a, b in zip(reference_pred, ours_pred))
    largest = max(abs(a - b) for ref_row, our_row in zip(reference, ours) for a, b in zip(ref_row, our_row))
    print(f"lm-eval HFLM (batch {args.lm_eval_batch_size}): accuracy {reference_acc:.1%}  {reference_s:6.1f} s")
    print(f"rankscope (batch {args.batch_size} questions): accuracy {ours_acc:.1%}  {ours_s:6.1f} s")
    print(f"predictions that differ: {differ} of {len(examples)}; largest |log-prob difference| {largest:.2e}")
    if differ:
        raise SystemExit("the two scorers disagree on some predictions")
    print(f"speedup vs lm-eval cloze: {reference_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
