"""A prepared check for one GPU: precision recipe, fast paths, tokens/s, MFU, memory vs `rankscope plan`.

For a CUDA machine reached as it is: no network, its own torch and transformers (written
against torch 2.11 / transformers 5.17 and this repo's versions), no gguf. It runs from source:

    PYTHONPATH=src python bench/gpu_check.py            # about 1-2 minutes on one H100/H200

Models are built with random weights from the shipped configs in bench/configs
(SmolLM2-135M-shaped, and a Llama-3.2-1B-shaped one for memory and MFU), so nothing is
downloaded. Pure-Python packages the machine lacks (pydantic and pydantic-core, pyyaml, peft,
safetensors, tqdm) are carried as an installed folder: on a machine with the same Python,
``pip install --target .gpu-deps pydantic==2.* peft`` and pass ``--deps .gpu-deps`` (the folder is
prepended to sys.path). Missing ones are named, with that command, before anything runs.

Per shape it trains a LoRA arm and an sft arm in bf16 with the precision recipe (fp32 master
weights and AdamW state, rankscope.train.precision), printing as it goes:
- that the fast training path (shared prefix, rankscope.train.loss) and the fast multiple-choice
  scoring path were verified for the model, i.e. did not fall back to the plain ones;
- useful tokens/s and MFU, by bench/train_throughput.py's definitions: model FLOPs per token
  counted with torch.utils.flop_counter on the plain computation, against a bf16 matmul peak
  measured in the same run;
- the arm's measured peak memory (CUDA allocator, resident base included, as train.json's
  peak_memory_total_mb) beside `rankscope plan`'s estimate for the same batch and length (the
  estimate adds the CUDA context, which the allocator does not see: both are printed).
Without CUDA it prints a line saying so and exits 0 (``--allow-cpu`` runs it on the CPU anyway,
which is how the code is tested).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = Path(__file__).resolve().parent / "configs"
NEEDED = ("torch", "transformers", "peft", "pydantic", "yaml", "safetensors", "tqdm")


def say(text: str) -> None:
    print(text, flush=True)


def missing_modules() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


def matmul_peak_tflops(device, dtype, seconds: float = 1.5) -> float:
    """Best throughput of square matmuls of a few sizes (bench/train_throughput.py's definition)."""
    import torch

    best = 0.0
    for size in (2048, 4096, 8192) if device.type == "cuda" else (512, 1024):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        torch.mm(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3:
            torch.mm(a, b)
            runs += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = max(best, 2 * size**3 * runs / (time.perf_counter() - started))
    return best / 1e12


def random_rows(vocab: int, n: int, length: int, prefix: int, answer: int, seed: int):
    """Rows sharing a ``prefix``-token system turn (as chat-templated prompts do), answer at the end."""
    import torch

    from rankscope.train.loss import IGNORE_INDEX, EncodedExample

    generator = torch.Generator().manual_seed(seed)
    shared = torch.randint(5, vocab, (prefix,), generator=generator).tolist()
    rows = []
    for _ in range(n):
        rest = torch.randint(5, vocab, (length - prefix,), generator=generator).tolist()
        ids = shared + rest
        rows.append(EncodedExample(input_ids=ids, labels=[IGNORE_INDEX] * (length - answer) + ids[-answer:]))
    return rows


def flops_per_token(model, rows, pad_id: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    from rankscope.train.loss import padded_answer_loss

    counter = FlopCounterMode(display=False)
    with counter:
        for item in rows:
            padded_answer_loss(model, [item], pad_id).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / sum(len(item.input_ids) for item in rows)


def fast_paths_verified() -> dict[str, bool]:
    from rankscope.models import shared_prefix

    return {use: ok for (use, _, _), ok in shared_prefix._VERIFIED.items()}


def check_mc_scoring(model, device) -> bool:
    """Score a few multiple-choice items with a throwaway tokenizer: was the shared-prompt path kept?"""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from rankscope.data.types import Example
    from rankscope.evaluate.multiple_choice import choice_logprobs

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(["Which is the capital of France? Paris Rome Berlin Madrid"] * 8, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        eos_token="<unk>")
    examples = [Example(question=f"Question {i}: which is the capital of France?", answer="Paris",
                        choices=("Paris", "Rome", "Berlin", "Madrid"), gold=0) for i in range(8)]
    choice_logprobs(model, tokenizer, examples, batch_size=4)
    return fast_paths_verified().get("multiple-choice scoring", False)


def plan_estimate(config_path: Path, method: str, rank: int | None, args, device_name: str, memory_gib: float,
                  peak: float) -> tuple[float, float]:
    """`rankscope plan`'s memory for this arm: (memory_gib, its runtime part)."""
    from rankscope.config import config_from_dict
    from rankscope.plan.devices import Device
    from rankscope.plan.estimate import estimate_arm
    from rankscope.plan.shapes import model_shape
    from rankscope.sweep.plan import ArmPlan

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "config.json").write_text(config_path.read_text())
        config = config_from_dict({
            "model": {"id": folder}, "data": {"train": [{"name": "arith_chain"}]},
            "arms": {"sft": True, "lora": {"ranks": [rank or 16]}},
            "train": {"batch_size": args.batch_size, "max_length": args.length, "gradient_checkpointing": False,
                      "precision": "bf16-mixed"},
            "sweep": {"sft_base_copy": "keep"},
        })
        shape = model_shape(config.model)
    kind = "cuda" if device_name != "cpu" else "cpu"
    device = Device(device_name, kind, memory_gib, peak, "measured")
    estimate = estimate_arm(ArmPlan(arm_id=method, method=method, rank=rank), shape, config, device, 0.0)
    return estimate.memory_gib, estimate.memory_parts["runtime"]


def run_shape(config_path: Path, args, device, peak: float) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from rankscope.config import LoraSpec, TrainSpec
    from rankscope.models.arms import apply_lora, make_sft_copy, remove_lora
    from rankscope.train.loop import train_model
    from rankscope.train.memory import PeakMemory
    from rankscope.train.precision import BF16_MIXED

    name = config_path.stem
    config = AutoConfig.from_pretrained(config_path)
    storage = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        base = AutoModelForCausalLM.from_config(config, dtype=storage).eval()
    n_params = sum(p.numel() for p in base.parameters())
    say(f"[{name}] {n_params / 1e6:.0f}M parameters, random weights, stored in {str(storage).removeprefix('torch.')}")
    rows = random_rows(config.vocab_size, 4 * args.batch_size, args.length, args.prefix, args.answer, seed=0)
    pad = 0
    with BF16_MIXED.autocast(device):
        mc_fast = check_mc_scoring(base, device)
    say(f"[{name}] multiple-choice scoring fast path: {'kept' if mc_fast else 'FELL BACK to the plain path'}")
    memory_gib = (torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else 64.0)
    for method, rank in (("lora", args.rank), ("sft", None)):
        spec = TrainSpec(steps=args.steps, batch_size=args.batch_size, max_length=args.length, log_every=1,
                         warmup_ratio=0.0)
        lr = 1e-4 if method == "lora" else 2e-5
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        with PeakMemory(device) as memory:
            model = apply_lora(base, LoraSpec(ranks=[rank]), rank, 0) if method == "lora" else make_sft_copy(base)
            result = train_model(model, rows, spec, lr=lr, seed=0, pad_token_id=pad, description=f"{name} {method}",
                                 precision=BF16_MIXED)
        train_fast = fast_paths_verified().get("training", False)
        with BF16_MIXED.autocast(device):
            fpt = flops_per_token(model, rows[:2], pad)
        mfu = fpt * result.tokens_per_s / (peak * 1e12)
        planned, runtime = plan_estimate(config_path, method, rank, args, "gpu" if device.type == "cuda" else "cpu",
                                         memory_gib, peak)
        measured = memory.mb / 1024
        label = f"lora r={rank}" if method == "lora" else "sft"
        say(f"[{name} {label}] precision {result.precision['recipe']} (master {result.precision['master_weights']}); "
            f"training fast path: {'kept' if train_fast else 'FELL BACK'}; loss {result.loss_curve[0][1]:.3f} -> "
            f"{result.final_loss:.3f}")
        say(f"[{name} {label}] {result.tokens_per_s:,.0f} tok/s; {fpt / 1e9:.2f} GFLOP/token; MFU {mfu:.1%} "
            f"of the measured {peak:.3g} TFLOP/s")
        say(f"[{name} {label}] peak memory {measured:.2f} GiB measured (arm's own {memory.arm_mb / 1024:.2f}); "
            f"plan {planned:.2f} GiB ({planned - runtime:.2f} without the {runtime:.2f} GiB runtime part); "
            f"measured/plan {measured / max(planned - runtime, 1e-9):.2f}")
        if method == "lora":
            base = remove_lora(model)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    del base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deps", help="folder of carried packages, prepended to sys.path")
    parser.add_argument("--shapes", nargs="+", default=["smollm2-135m", "llama-1b"],
                        help="names of configs in bench/configs, or paths to config.json files")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--prefix", type=int, default=32, help="shared prompt tokens per row")
    parser.add_argument("--answer", type=int, default=64, help="answer tokens per row (the loss is on these)")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no GPU (tests)")
    args = parser.parse_args(argv)
    if args.deps:
        sys.path.insert(0, str(Path(args.deps).resolve()))
    started = time.perf_counter()
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        say("gpu_check: no CUDA device here; skipped (nothing measured)")
        return 0
    missing = missing_modules()
    if missing:
        say(f"gpu_check: missing {', '.join(missing)}; carry them: pip install --target .gpu-deps "
            f"{' '.join(missing)} (same Python as the GPU machine), then --deps .gpu-deps")
        return 3
    import transformers

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    say(f"gpu_check: {name}; torch {torch.__version__}, transformers {transformers.__version__}")
    peak = matmul_peak_tflops(device, torch.bfloat16 if device.type == "cuda" else torch.float32)
    say(f"gpu_check: measured matmul peak {peak:.3g} TFLOP/s")
    for shape in args.shapes:
        path = Path(shape) if shape.endswith(".json") else CONFIGS / f"{shape}.json"
        run_shape(path, args, device, peak)
    say(f"gpu_check: done in {time.perf_counter() - started:.0f} s")
    say(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    code = main()
    if code:  # a clean run returns normally (so runpy-based tests see its output)
        sys.exit(code)
