"""Multiple-choice scoring: rankscope vs lm-evaluation-harness on the same items and model.

Both sides score the same questions with the same prompt and choice strings (rankscope's
``render_prompt`` / ``continuation``) by summed log-likelihood of each choice, on the same model
object in memory: the reference is lm-eval's ``HFLM(pretrained=model)`` answering
``loglikelihood`` requests, which runs one sequence per (question, choice) and the output head at
every position. rankscope runs each prompt once and only the head positions a choice needs
(rankscope.evaluate.multiple_choice).

Items: the first ``--n`` of MMLU's test split (the study's recall set) when its upstream files are
found (``--path``, default ``../shared/data/mmlu`` next to the repository), else the builtin
``capitals`` set. Prints both accuracies, how many predictions differ, the largest log-probability
difference, both wall times, and last ``speedup: N.Nx``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from rankscope.config import DatasetSpec, ModelSpec
from rankscope.data.prompts import continuation, render_prompt
from rankscope.data.registry import load_dataset
from rankscope.evaluate.multiple_choice import score_multiple_choice
from rankscope.models.load import load_base_model

DEFAULT_MMLU = Path(__file__).resolve().parents[2] / "shared" / "data" / "mmlu"


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
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16, help="rankscope: questions per forward")
    parser.add_argument("--lm-eval-batch-size", type=int, default=32, help="lm-eval: sequences per forward")
    args = parser.parse_args()

    loaded = load_base_model(ModelSpec(id=args.model))
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
    print(f"speedup: {reference_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
