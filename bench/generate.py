"""Greedy generation: rankscope's decoder vs transformers' ``generate``, on the same prompts.

Both sides decode the same prompts (the builtin ``arith_chain`` test set and GSM8K's test split
from its upstream files, through rankscope's data layer and chat template), in the same
length-sorted batches of ``--batch-size``, greedy, with left padding and the same end token. The
reference is ``model.generate`` (rankscope.evaluate.greedy.plain_greedy: what the evaluator ran
before, and still runs when the fast path fails its check). rankscope's decoder runs the shared
system turn once per batch, replaces finished rows by waiting prompts, and adds two kernel-level
speedups (a key/value cache written in place, and oneDNN packed linear layers on a CPU;
rankscope.evaluate.greedy.Speedups).

A second reference, ``generate, packed linears``, is ``generate`` on the same packed linear layers
as rankscope: the strongest reference a user could build from rankscope's parts, so that the
ratio against it (``speedup vs generate on packed linears``) shows what the decoding loop and the
in-place cache add beyond the faster kernels. ``--ablate`` also times rankscope with each speedup
off and with both off (the loop alone).

Timing: a warm-up batch on each side first (not timed), then the sides interleaved
(A B C A B C ...) ``--repeats`` times; the median wall time is reported with min and max.

Outputs are compared token for token with ``generate``'s. For every differing output the top-2
logit gap at the first divergence is printed (a plain forward over the prompt and the common
tokens): a difference is acceptable only as a near-tie (gap < 1e-3, float rounding decides it),
counted apart; any other difference stops the benchmark with an error. Prints ``outputs: N of M
identical`` and last ``speedup vs transformers generate: N.Nx`` (total reference time over total
rankscope time, both sets).

Work: each side's forward passes per run and the token positions they compute (a forward
pre-hook on the model's decoder counts them), so the ratio can be read against the work each side
does: ``generate`` runs each batch until its longest row ends, rankscope until every row has
ended, and a row that reaches ``max_new_tokens`` holds both.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from rankscope.config import DatasetSpec, ModelSpec
from rankscope.data.prompts import render_prompt
from rankscope.data.registry import load_dataset
from rankscope.evaluate.generative import greedy_outputs
from rankscope.evaluate.greedy import Decoded, Speedups
from rankscope.evaluate.packed_linear import packed_linears
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
    """Counts forward passes and the token positions they compute (input_ids.numel()).

    It hooks the model's decoder (the stack of layers), which both sides run on every pass:
    ``generate`` and rankscope both call the whole model, which calls its decoder once per pass.
    """

    def __init__(self, model) -> None:
        self.calls = self.positions = 0
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
        self.handle = decoder.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls += 1
        self.positions += ids.numel() if ids is not None else 0


@dataclass(frozen=True)
class Side:
    """One way of decoding the prompts: the reference, rankscope, or a variant of either."""

    label: str
    fast: bool  # rankscope's loop (else transformers' generate)
    speedups: Speedups = Speedups()
    packed_reference: bool = False  # generate with rankscope's packed linear layers (a stronger reference)

    def decode(self, model, tokenizer, prompts, batch_size, max_new_tokens) -> list[Decoded]:
        with packed_linears(model, enabled=self.packed_reference):
            return greedy_outputs(model, tokenizer, prompts, batch_size, max_new_tokens, fast=self.fast,
                                  speedups=self.speedups)


REFERENCE = Side("transformers generate", fast=False)
PACKED_REFERENCE = Side("generate, packed linears", fast=False, packed_reference=True)
RANKSCOPE = Side("rankscope", fast=True)
ABLATIONS = [
    Side("rankscope, loop only", fast=True, speedups=Speedups(packed_linears=False, slack_cache=False)),
    Side("rankscope - packed", fast=True, speedups=Speedups(packed_linears=False)),
    Side("rankscope - slack", fast=True, speedups=Speedups(slack_cache=False)),
]


def time_side(side: Side, model, tokenizer, prompts, batch_size, max_new_tokens) -> tuple[float, list[Decoded], tuple]:
    counter = ForwardCounter(model)
    try:
        started = time.perf_counter()
        outputs = side.decode(model, tokenizer, prompts, batch_size, max_new_tokens)
        wall = time.perf_counter() - started
    finally:
        counter.handle.remove()
    return wall, outputs, (counter.calls, counter.positions)


def count_differences(name, side, model, prompts, reference, outputs) -> tuple[int, int, list[int]]:
    """(identical, near-ties, prompts that differ beyond a near-tie) of ``outputs`` against ``reference``."""
    identical, near_ties, real = 0, 0, []
    for k, (a, b) in enumerate(zip(reference, outputs)):
        if a == b:
            identical += 1
            continue
        at = first_divergence(a, b)
        gap = top2_gap(model, prompts[k], a.tokens[:at])
        print(f"[{name}] {side.label}, prompt {k}: outputs differ at new token {at}; top-2 logit gap there {gap:.2e}")
        if gap < NEAR_TIE:
            near_ties += 1
        else:
            real.append(k)
    return identical, near_ties, real


def compare_set(name, model, tokenizer, prompts, args, max_new_tokens, sides) -> dict:
    """Times every side, interleaved; returns per side label its median time and, for rankscope, the agreement."""
    warm = prompts[:args.batch_size]
    for side in sides:  # warm-up (kernels, caches) and the fast path's one-time check: not timed
        side.decode(model, tokenizer, warm, args.batch_size, min(4, max_new_tokens))
    times: dict[str, list[float]] = {side.label: [] for side in sides}
    outputs: dict[str, list[Decoded]] = {}
    work: dict[str, tuple] = {}
    for _ in range(args.repeats):
        for side in sides:
            wall, outputs[side.label], work[side.label] = time_side(side, model, tokenizer, prompts, args.batch_size,
                                                                    max_new_tokens)
            times[side.label].append(wall)
    reference = outputs[REFERENCE.label]
    print(f"[{name}] {len(prompts)} prompts, batch {args.batch_size}, max_new_tokens {max_new_tokens}: "
          f"{sum(len(d.tokens) for d in reference)} new tokens, {sum(d.hit_limit for d in reference)} rows hit the limit")
    result: dict = {}
    failures = []
    for side in sides:
        median = statistics.median(times[side.label])
        result[side.label] = median
        calls, positions = work[side.label]
        line = (f"[{name}] {side.label:<25}: median {median:6.1f} s (min {min(times[side.label]):.1f}, "
                f"max {max(times[side.label]):.1f}) over {args.repeats} runs; {calls} forward passes, "
                f"{positions} token positions")
        if side is not REFERENCE:
            identical, near_ties, real = count_differences(name, side, model, prompts, reference, outputs[side.label])
            line += f"; {identical} of {len(prompts)} outputs identical, {near_ties} near-ties"
            failures += [(side.label, k) for k in real]
            if side is RANKSCOPE:
                result["identical"], result["near_ties"] = identical, near_ties
        print(line)
    ref, ours = result[REFERENCE.label], result[RANKSCOPE.label]
    print(f"[{name}] outputs: {result['identical']} of {len(prompts)} identical, {result['near_ties']} near-ties "
          f"(gap < {NEAR_TIE:g}); speedup {ref / ours:.2f}x")
    if failures:
        raise SystemExit(f"[{name}] outputs differ beyond a near-tie: {failures}")
    result["outputs"] = len(prompts)
    return result


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
    parser.add_argument("--ablate", action="store_true",
                        help="also time rankscope with each kernel-level speedup off, and with all of them off")
    args = parser.parse_args()

    loaded = load_base_model(ModelSpec(id=args.model))
    model, tokenizer = loaded.model, loaded.tokenizer
    sets = [("arith_chain", None, args.arith_new_tokens)]
    if Path(args.gsm8k_path).exists():
        sets.append(("gsm8k", args.gsm8k_path, args.gsm8k_new_tokens))
    else:
        print(f"{args.gsm8k_path} not found: arith_chain only")
    print(f"device {loaded.device}, {torch.get_num_threads()} threads, dtype {loaded.dtype}")
    sides = [REFERENCE, PACKED_REFERENCE, RANKSCOPE] + (ABLATIONS if args.ablate else [])
    totals: dict = {}
    for name, path, max_new_tokens in sets:
        dataset = load_dataset(DatasetSpec(name=name, path=path, n_test=args.n), seed=0)
        prompts = [tokenizer(render_prompt(tokenizer, e.question), add_special_tokens=False)["input_ids"]
                   for e in dataset.test]
        for key, value in compare_set(name, model, tokenizer, prompts, args, max_new_tokens, sides).items():
            totals[key] = totals.get(key, 0) + value
    ours = totals[RANKSCOPE.label]
    for side in sides[3:]:
        print(f"{side.label}: {totals[side.label] / ours:.2f}x the time of rankscope")
    print(f"speedup vs generate on packed linears: {totals[PACKED_REFERENCE.label] / ours:.1f}x")
    print(f"outputs: {totals['identical']} of {totals['outputs']} identical ({totals['near_ties']} near-ties)")
    print(f"speedup vs transformers generate: {totals[REFERENCE.label] / ours:.1f}x")


if __name__ == "__main__":
    main()
