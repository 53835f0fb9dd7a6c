"""Scoring many adapters on one resident base vs loading the model once per adapter.

rankscope's path (rankscope.evaluate.adapters, what a sweep and `rankscope compare` do for imported
adapters): load the base once, then for each adapter ``load_adapter`` + ``set_adapter`` +
``delete_adapter`` the previous, and score it. The reference is what a script looping over
adapter folders does: per adapter, load the base model, wrap it with ``PeftModel.from_pretrained``,
score it. Both sides score the same adapters on the same items with the same scorer, so the
difference is the loading; both must give identical accuracies (checked, or the run stops).

The adapters are made on the spot by peft (``init_lora_weights=False``: B is random, so each
adapter changes the model) at a few ranks on every linear module. Rounds alternate the two sides
(ABAB...) so drift in machine load hits both; each prints its median with min/max, and last
``speedup vs per-adapter reload: N.Nx``. It does not cover training or the analysis, and on a
small model the load is short, so the ratio grows with model size (a 7B base takes minutes to
load, an adapter stays a few MB).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch

from rankscope.config import DatasetSpec, EvalSpec, ModelSpec
from rankscope.data.registry import load_dataset
from rankscope.evaluate.adapters import AdapterSwap
from rankscope.evaluate.suite import evaluate_model
from rankscope.models.arms import resolve_targets
from rankscope.models.load import load_base_model


def make_adapters(spec: ModelSpec, ranks: list[int], folder: Path) -> dict[str, Path]:
    """One random-B adapter per rank, saved as safetensors (stands for adapters trained elsewhere)."""
    from peft import LoraConfig, get_peft_model

    loaded = load_base_model(spec)
    targets = sorted({m.short_name for m in resolve_targets(loaded.model, "all-linear")})
    out = {}
    for rank in ranks:
        torch.manual_seed(rank)
        config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False,
                            task_type="CAUSAL_LM")
        model = get_peft_model(loaded.model, config)
        with torch.no_grad():  # peft's random B is large; keep the model's answers sensible
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.mul_(0.01)
        out[f"r{rank}"] = folder / f"r{rank}"
        model.save_pretrained(out[f"r{rank}"], safe_serialization=True, save_embedding_layers=False)
        loaded.model = model.unload()
    return out


def accuracies(evaluation: dict) -> dict[str, float]:
    return {name: scores["metrics"]["accuracy"]["value"] for name, scores in evaluation["datasets"].items()}


def swap_round(spec: ModelSpec, adapters: dict[str, Path], datasets, eval_spec) -> tuple[float, dict]:
    """rankscope: one base load, then every adapter swapped in on it."""
    started = time.perf_counter()
    loaded = load_base_model(spec)
    swap = AdapterSwap(loaded.model)
    scores = {}
    for name, path in adapters.items():
        model = swap.activate(path, name)
        scores[name] = accuracies(evaluate_model(model, loaded.tokenizer, datasets, eval_spec))
    swap.close()
    return time.perf_counter() - started, scores


def reload_round(spec: ModelSpec, adapters: dict[str, Path], datasets, eval_spec) -> tuple[float, dict]:
    """Reference: the base loaded again for every adapter."""
    from peft import PeftModel

    started = time.perf_counter()
    scores = {}
    for name, path in adapters.items():
        loaded = load_base_model(spec)
        model = PeftModel.from_pretrained(loaded.model, str(path)).eval()
        scores[name] = accuracies(evaluate_model(model, loaded.tokenizer, datasets, eval_spec))
        del model, loaded
    return time.perf_counter() - started, scores


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}) over {len(times)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="default", help="base model (default: the offline SmolLM2-135M)")
    parser.add_argument("--ranks", default="4,16,64", help="one adapter per rank")
    parser.add_argument("--dataset", default="capitals")
    parser.add_argument("--n", type=int, default=20, help="items scored per adapter")
    parser.add_argument("--repeats", type=int, default=2, help="rounds per side, interleaved")
    args = parser.parse_args()
    spec = ModelSpec(id=args.model)
    ranks = [int(r) for r in args.ranks.split(",")]
    datasets = {args.dataset: load_dataset(DatasetSpec(name=args.dataset, n_test=args.n), seed=0)}
    eval_spec = EvalSpec(batch_size=16, max_new_tokens=8, nll={"enabled": False})
    folder = Path(tempfile.mkdtemp(prefix="rankscope-bench-adapters-"))
    try:
        adapters = make_adapters(spec, ranks, folder)
        load_base_model(spec)  # warm: a first GGUF load writes the cache outside the timed rounds
        ours, reference = [], []
        for _ in range(args.repeats):  # ABAB
            t_ours, s_ours = swap_round(spec, adapters, datasets, eval_spec)
            t_ref, s_ref = reload_round(spec, adapters, datasets, eval_spec)
            if s_ours != s_ref:
                raise SystemExit(f"the two paths disagree: swap {s_ours} vs reload {s_ref}")
            ours.append(t_ours)
            reference.append(t_ref)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"{len(adapters)} adapters (r={args.ranks}) x {args.n} {args.dataset} items on {args.model}; "
          f"accuracies {s_ours} (identical on both paths)")
    print(f"per-adapter reload (reference): {summary(reference)}")
    print(f"one base, adapters swapped (rankscope): {summary(ours)}")
    print(f"speedup vs per-adapter reload: {statistics.median(reference) / statistics.median(ours):.1f}x")


if __name__ == "__main__":
    main()
