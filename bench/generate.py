"""Greedy generation: rankscope's decoder vs transformers' ``generate``, on the same prompts.

Both sides decode the same prompts (the builtin ``arith_chain`` test set and GSM8K's test split
from its upstream files, through rankscope's data layer and chat template), in the same
length-sorted batches of ``--batch-size``, greedy, with left padding and the same end token. The
reference is ``model.generate`` (rankscope.evaluate.greedy.plain_greedy: what the evaluator ran
before, and still runs when the fast path fails its check). rankscope's decoder runs the shared
system turn once per batch and drops rows from the batch as they finish.

Timing: a warm-up batch on each side first (not timed), then the two sides interleaved
(A B A B ...) ``--repeats`` times; the median wall time is reported with min and max.

Outputs are compared token for token. For every differing output the top-2 logit gap at the first
divergence is printed (a plain forward over the prompt and the common tokens): a difference is
acceptable only as a near-tie (gap < 1e-3, float rounding decides it), counted apart; any other
difference stops the benchmark with an error. Prints ``outputs: N of M identical`` and last
``speedup vs transformers generate: N.Nx`` (total reference time over total rankscope time).

Work: each side's model forward passes per run and the token positions they compute (a forward
pre-hook on the model counts them), so the ratio can be read against the work each side does.
On a CPU a decode step's cost is mostly reading the weights once, whatever the number of rows, so
the forward passes bound the speedup: ``generate`` runs each batch until its longest row ends,
rankscope until every row has ended, and a row that reaches ``max_new_tokens`` holds both.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from rankscope.config import DatasetSpec, ModelSpec
from rankscope.data.prompts import render_prompt
from rankscope.data.registry import load_dataset
from rankscope.evaluate.generative import greedy_outputs
from rankscope.evaluate.greedy import Decoded
from rankscope.models.load import load_base_model

DEFAULT_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
NEAR_TIE = 1e-3


def top2_gap(model, prompt: list[int], common: list[int]) -> float:
    """Logit of the best token minus the second best, after ``prompt + common`` (one row, no padding)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + common], device=device), logits_to_keep=1).logits[0, -1]
    top = torch.topk(logits.float(), 2).values
    return float(top[0] - top[1])


def first_divergence(a: Decoded, b: Decoded) -> int:
    for index, (x, y) in enumerate(zip(a.tokens, b.tokens)):
        if x != y:
            return index
    return min(len(a.tokens), len(b.tokens))  # one stopped where the other went on


class ForwardCounter:
    """Counts the model's forward passes and the token positions they compute (input_ids.numel())."""

    def __init__(self, model) -> None:
        self.calls = self.positions = 0
        self.handle = model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls += 1
        self.positions += ids.numel() if ids is not None else 0


def time_side(model, tokenizer, prompts, batch_size, max_new_tokens, fast) -> tuple[float, list[Decoded], tuple]:
    counter = ForwardCounter(model)
    try:
        started = time.perf_counter()
        outputs = greedy_outputs(model, tokenizer, prompts, batch_size, max_new_tokens, fast=fast)
        wall = time.perf_counter() - started
    finally:
        counter.handle.remove()
    return wall, outputs, (counter.calls, counter.positions)


def compare_set(name, model, tokenizer, prompts, args, max_new_tokens) -> tuple[float, float, int, int, int]:
    """Returns (median reference s, median rankscope s, identical, near-ties, outputs)."""
    warm = prompts[:args.batch_size]
    for fast in (False, True):  # warm-up (kernels, caches) and the fast path's one-time check: not timed
        greedy_outputs(model, tokenizer, warm, args.batch_size, min(4, max_new_tokens), fast=fast)
    times: dict[bool, list[float]] = {False: [], True: []}
    outputs: dict[bool, list[Decoded]] = {}
    work: dict[bool, tuple] = {}
    for _ in range(args.repeats):
        for fast in (False, True):
            wall, outputs[fast], work[fast] = time_side(model, tokenizer, prompts, args.batch_size, max_new_tokens,
                                                        fast)
            times[fast].append(wall)
    plain, fast_out = outputs[False], outputs[True]
    identical = sum(a == b for a, b in zip(plain, fast_out))
    near_ties, real = 0, []
    for k, (a, b) in enumerate(zip(plain, fast_out)):
        if a == b:
            continue
        at = first_divergence(a, b)
        gap = top2_gap(model, prompts[k], a.tokens[:at])
        print(f"[{name}] prompt {k}: outputs differ at new token {at}; top-2 logit gap there {gap:.2e}")
        if gap < NEAR_TIE:
            near_ties += 1
        else:
            real.append(k)
    new_tokens = sum(len(d.tokens) for d in plain)
    limited = sum(d.hit_limit for d in plain)
    ref, ours = statistics.median(times[False]), statistics.median(times[True])
    print(f"[{name}] {len(prompts)} prompts, batch {args.batch_size}, max_new_tokens {max_new_tokens}: "
          f"{new_tokens} new tokens, {limited} rows hit the limit")
    print(f"[{name}] transformers generate: median {ref:6.1f} s (min {min(times[False]):.1f}, "
          f"max {max(times[False]):.1f}) over {args.repeats} runs")
    print(f"[{name}] rankscope            : median {ours:6.1f} s (min {min(times[True]):.1f}, "
          f"max {max(times[True]):.1f}) over {args.repeats} runs")
    print(f"[{name}] forward passes per run: generate {work[False][0]} ({work[False][1]} token positions), "
          f"rankscope {work[True][0]} ({work[True][1]}); ratio of passes {work[False][0] / work[True][0]:.2f}")
    print(f"[{name}] outputs: {identical} of {len(prompts)} identical, {near_ties} near-ties (gap < {NEAR_TIE:g}); "
          f"speedup {ref / ours:.2f}x")
    if real:
        raise SystemExit(f"[{name}] outputs differ beyond a near-tie for prompts {real}")
    return ref, ours, identical, near_ties, len(prompts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--gsm8k-path", default=str(DEFAULT_GSM8K),
                        help="GSM8K's upstream files (default: ../shared/data/gsm8k next to the repository); "
                             "skipped when absent")
    parser.add_argument("--n", type=int, default=32, help="prompts per set")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--arith-new-tokens", type=int, default=32, help="max_new_tokens on arith_chain")
    parser.add_argument("--gsm8k-new-tokens", type=int, default=256,
                        help="max_new_tokens on GSM8K (room for a worked solution)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    loaded = load_base_model(ModelSpec(id=args.model))
    model, tokenizer = loaded.model, loaded.tokenizer
    sets = [("arith_chain", None, args.arith_new_tokens)]
    if Path(args.gsm8k_path).exists():
        sets.append(("gsm8k", args.gsm8k_path, args.gsm8k_new_tokens))
    else:
        print(f"{args.gsm8k_path} not found: arith_chain only")
    print(f"device {loaded.device}, {torch.get_num_threads()} threads, dtype {loaded.dtype}")
    totals = [0.0, 0.0, 0, 0, 0]
    for name, path, max_new_tokens in sets:
        dataset = load_dataset(DatasetSpec(name=name, path=path, n_test=args.n), seed=0)
        prompts = [tokenizer(render_prompt(tokenizer, e.question), add_special_tokens=False)["input_ids"]
                   for e in dataset.test]
        for index, value in enumerate(compare_set(name, model, tokenizer, prompts, args, max_new_tokens)):
            totals[index] += value
    ref, ours, identical, near_ties, total = totals
    print(f"outputs: {identical} of {total} identical ({near_ties} near-ties)")
    print(f"speedup vs transformers generate: {ref / ours:.1f}x")


if __name__ == "__main__":
    main()
