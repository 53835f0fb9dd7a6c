"""An lm-eval task scored by rankscope vs lm-evaluation-harness's own run: same predictions?

rankscope side: the dataset ``{name: ..., path: "lmeval:<task>", data_files: FILE}`` (lm-eval's
TaskManager builds the task and its requests; rankscope's multiple-choice scorer scores them).
lm-eval side: ``lm_eval.simple_evaluate`` with ``HFLM`` wrapping the same model object, the task
pointed at the same local file the way lm-eval documents local data (a task YAML that
``include``s the registered one and sets ``dataset_path: json``). Zero-shot on both sides.

Default: lm-eval's ``arc_easy`` on the whole shared ARC-Easy file (2376 test questions; that
file is a reformatted copy, ``{query: "Question: ...", choices: [...], gold: i}``, mapped here
back to the hub schema lm-eval's task reads: question, choices {text, label}, answerKey).
``--n`` scores a prefix. Prints acc and acc_norm of both, how many predictions agree, the largest
log-likelihood difference and both wall times.

    python bench/lm_eval_agreement.py                  # default model, whole file (long on CPU)
    python bench/lm_eval_agreement.py --n 200          # a prefix
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from rankscope.config import DatasetSpec, ModelSpec
from rankscope.data.lm_eval_tasks import task_manager
from rankscope.data.registry import load_dataset
from rankscope.evaluate.lm_eval_scoring import lm_eval_predictions
from rankscope.evaluate.multiple_choice import choice_logprobs
from rankscope.models.load import load_base_model

DEFAULT_ARC = Path(__file__).resolve().parents[2] / "shared" / "data" / "arc_easy" / "arc_easy.jsonl"


def arc_hub_rows(path: Path, n: int | None) -> list[dict]:
    """The reformatted ARC-Easy file as rows of the hub schema lm-eval's arc_easy reads."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for i, line in enumerate(handle):
            if n is not None and i >= n:
                break
            row = json.loads(line)
            labels = [chr(ord("A") + j) for j in range(len(row["choices"]))]
            question = row["query"].removeprefix("Question: ")
            rows.append({"id": f"arc_easy-{i}", "question": question,
                         "choices": {"text": row["choices"], "label": labels}, "answerKey": labels[row["gold"]]})
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


def local_task(registered: Path, task: str, data_file: Path, folder: Path, suffix: str) -> str:
    """A task YAML that includes lm-eval's registered ``task`` (its YAML file) and reads ``data_file``."""
    local = f"{task}_local_{suffix}"
    folder.mkdir(exist_ok=True)
    (folder / f"{local}.yaml").write_text(
        f"include: {registered}\ntask: {local}\ntag: []\ndataset_path: json\ndataset_name: null\n"
        f"dataset_kwargs: {{data_files: {{test: {data_file}}}}}\n"
        "training_split: null\nvalidation_split: null\nfewshot_split: null\ntest_split: test\n", encoding="utf-8")
    return local


def lm_eval_run(lm, task: str, folder: Path) -> tuple[list[dict], float]:
    """lm-eval's own run (simple_evaluate) of a local task: its per-doc samples (by doc_id) and wall time."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(folder), include_defaults=False)
    started = time.perf_counter()
    results = simple_evaluate(model=lm, tasks=[task], task_manager=manager, num_fewshot=0,
                              bootstrap_iters=0, log_samples=True)
    return sorted(results["samples"][task], key=lambda s: s["doc_id"]), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--path", default=str(DEFAULT_ARC), help="the reformatted ARC-Easy JSONL")
    parser.add_argument("--n", type=int, default=None, help="score the first N questions (default: all)")
    parser.add_argument("--chunk", type=int, default=200,
                        help="questions per round (both sides); running totals are printed after each")
    parser.add_argument("--batch-size", type=int, default=16, help="rankscope: questions per forward")
    parser.add_argument("--lm-eval-batch-size", type=int, default=32, help="lm-eval: sequences per forward")
    args = parser.parse_args()

    import lm_eval
    from lm_eval.models.huggingface import HFLM

    loaded = load_base_model(ModelSpec(id=args.model))
    lm = HFLM(pretrained=loaded.model, tokenizer=loaded.tokenizer, batch_size=args.lm_eval_batch_size,
              device=str(loaded.device))
    rows = arc_hub_rows(Path(args.path), args.n)
    totals = {"n": 0, "acc": 0, "acc_norm": 0, "their_acc": 0.0, "their_acc_norm": 0.0, "agree": 0,
              "agree_norm": 0, "ours_s": 0.0, "theirs_s": 0.0, "largest": 0.0}
    print(f"arc_easy: {len(rows)} questions; model {args.model}, device {loaded.device}, "
          f"{torch.get_num_threads()} threads, dtype {loaded.dtype}; lm-eval {lm_eval.__version__}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        spec = DatasetSpec(name="arc_easy_lm", path="lmeval:arc_easy",
                           data_files=str(write_jsonl(rows, workdir / "arc_easy.jsonl")))
        dataset = load_dataset(spec).test  # rankscope: lm-eval builds the task and its requests
        registered = Path(task_manager().task_index["arc_easy"].yaml_path)
        for start in range(0, len(rows), args.chunk):
            examples = dataset[start:start + args.chunk]
            data_file = write_jsonl(rows[start:start + args.chunk], workdir / f"arc_easy_{start}.jsonl")

            started = time.perf_counter()
            ours = choice_logprobs(loaded.model, loaded.tokenizer, examples, batch_size=args.batch_size)
            totals["ours_s"] += time.perf_counter() - started
            task = local_task(registered, "arc_easy", data_file, workdir / "tasks", str(start))
            samples, seconds = lm_eval_run(lm, task, workdir / "tasks")
            totals["theirs_s"] += seconds

            if [s["doc"]["question"] for s in samples] != [r["question"] for r in rows[start:start + args.chunk]] or \
                    [e.uid for e in examples] != [f"test-{i}" for i in range(start, start + len(examples))]:
                raise SystemExit("the two sides are not scoring the same questions in the same order")
            theirs = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]
            preds, preds_norm = lm_eval_predictions(examples, ours)
            their_preds = [max(range(len(row)), key=row.__getitem__) for row in theirs]
            totals["n"] += len(examples)
            totals["acc"] += sum(p == e.gold for p, e in zip(preds, examples))
            totals["acc_norm"] += sum(p == e.gold for p, e in zip(preds_norm, examples))
            totals["their_acc"] += sum(s["acc"] for s in samples)
            totals["their_acc_norm"] += sum(s["acc_norm"] for s in samples)
            totals["agree"] += sum(a == b for a, b in zip(preds, their_preds))
            totals["agree_norm"] += sum(float(p == e.gold) == s["acc_norm"]
                                        for p, e, s in zip(preds_norm, examples, samples))
            totals["largest"] = max([totals["largest"]] + [abs(a - b) for mine, ref in zip(ours, theirs)
                                                           for a, b in zip(mine, ref)])
            report(totals, args, final=start + args.chunk >= len(rows))


def report(t: dict, args: argparse.Namespace, final: bool) -> None:
    n = t["n"]
    acc, acc_norm = t["acc"] / n, t["acc_norm"] / n
    their_acc, their_acc_norm = t["their_acc"] / n, t["their_acc_norm"] / n
    print(f"--- first {n} questions{' (all)' if final else ''}", flush=True)
    print(f"lm-eval simple_evaluate (HFLM batch {args.lm_eval_batch_size}): acc {their_acc:.2%}  "
          f"acc_norm {their_acc_norm:.2%}  {t['theirs_s']:7.1f} s")
    print(f"rankscope lmeval:arc_easy (batch {args.batch_size} questions): acc {acc:.2%}  "
          f"acc_norm {acc_norm:.2%}  {t['ours_s']:7.1f} s")
    print(f"predictions that agree: {t['agree']} of {n} (acc); acc_norm correctness agrees on {t['agree_norm']} "
          f"of {n}; largest |log-likelihood difference| {t['largest']:.2e}")
    print(f"accuracy difference: {100 * abs(acc - their_acc):.2f} points (acc), "
          f"{100 * abs(acc_norm - their_acc_norm):.2f} points (acc_norm)", flush=True)
    if final and (abs(acc - their_acc) > 0.01 or abs(acc_norm - their_acc_norm) > 0.01):
        raise SystemExit("rankscope and lm-eval differ by more than 1 point")


if __name__ == "__main__":
    main()
