"""Training throughput: rankscope's loop vs the usual transformers Trainer + PEFT script.

Both sides train the same model (the default SmolLM2-135M-Instruct unless ``--model``), on the
same tokenized rows in the same order, with the same batch size, steps, learning rate, schedule,
clipping and optimizer (fused AdamW, Trainer's default). The reference is written the way most
users write it: ``get_peft_model`` (or all weights for the sft arm), ``Trainer`` with
``DataCollatorForSeq2Seq(padding="longest")`` and the model's own loss. Its only deviation from a
stock script is a sequential sampler over rankscope's seeded schedule, so that the per-step losses
can be compared one to one.

Data: GSM8K's train split from its upstream files (the study's in-domain reasoning set; prompts of
real, varied lengths) when found, else ``--dataset arith_chain``, the quick preset's builtin set,
whose rows are all 80-95 tokens long: there the padding and micro-batching gains vanish and only
the shared prefix and the answer-only output head remain (measured 1.2x LoRA, 1.3x sft).

Prints, per arm: useful (non-padding) tokens per second of each side, the loss per token of each
(mean over steps and largest per-step difference), and model FLOPs utilization against a matmul
peak measured on this machine in the same run. Model FLOPs are counted with
``torch.utils.flop_counter`` on the plain computation (each row alone, logits at every position),
so work that rankscope avoids still counts as useful work done. Prints last
``speedup (min over arms): N.Nx``.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import SequentialSampler
from torch.utils.flop_counter import FlopCounterMode

from rankscope.config import DatasetSpec, LoraSpec, ModelSpec, TrainSpec
from rankscope.data.registry import load_dataset
from rankscope.models.arms import apply_lora, make_sft_copy, remove_lora
from rankscope.models.load import load_base_model
from rankscope.train.loop import batch_schedule, encode_examples, train_model
from rankscope.train.loss import EncodedExample, padded_answer_loss

DEFAULT_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, seconds: float = 2.0) -> float:
    """Best FLOP/s of square matmuls of a few sizes: what this machine can do at all."""
    best = 0.0
    for size in (1024, 2048, 4096):
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        torch.mm(a, b)  # warm up kernels and caches
        runs, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3:
            torch.mm(a, b)
            runs += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - started
        best = max(best, 2 * size**3 * runs / elapsed)
    return best


def model_flops_per_token(model: torch.nn.Module, batch: list[EncodedExample], pad_token_id: int) -> float:
    """Forward + backward FLOPs of the plain computation, per token, counted on ``batch`` row by row."""
    counter = FlopCounterMode(display=False)
    with counter:
        for item in batch:
            padded_answer_loss(model, [item], pad_token_id).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / sum(len(item.input_ids) for item in batch)


def scheduled_trainer(**kwargs):
    """A stock Trainer that walks the rows in the order given (no shuffling)."""
    from transformers import Trainer

    class _ScheduledTrainer(Trainer):
        def _get_train_sampler(self, *args, **kw):
            return SequentialSampler(self.train_dataset)

    return _ScheduledTrainer(**kwargs)


def reference_train(model, tokenizer, rows: list[EncodedExample], spec: TrainSpec, lr: float, seed: int,
                    device: torch.device) -> tuple[float, list[float]]:
    """The usual script; returns (wall seconds of trainer.train(), per-step logged loss)."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, TrainingArguments

    dataset = Dataset.from_list([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir, per_device_train_batch_size=spec.batch_size, max_steps=spec.steps,
            learning_rate=lr, lr_scheduler_type="linear", warmup_steps=math.ceil(spec.warmup_ratio * spec.steps),
            weight_decay=spec.weight_decay, max_grad_norm=spec.grad_clip, logging_steps=1, save_strategy="no",
            report_to=[], seed=seed, use_cpu=device.type == "cpu", disable_tqdm=True,
            bf16=model.dtype == torch.bfloat16,
        )
        trainer = scheduled_trainer(
            model=model, args=args, train_dataset=dataset,
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100),
        )
        started = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - started
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return wall, losses


def compare_arm(name, make_reference, make_ours, release, tokenizer, encoded, spec, lr, seed, flops_per_token,
                peak, device) -> float:
    schedule = batch_schedule(len(encoded), spec.steps, spec.batch_size, seed)
    rows = [encoded[i] for step in schedule for i in step]
    useful = sum(len(r.input_ids) for r in rows)
    padded = sum(max(len(encoded[i].input_ids) for i in step) * len(step) for step in schedule)

    model = make_reference()
    ref_wall, ref_losses = reference_train(model, tokenizer, rows, spec, lr, seed, device)
    release(model)
    model = make_ours()
    result = train_model(model, encoded, spec, lr=lr, seed=seed, pad_token_id=tokenizer.pad_token_id,
                         description=f"rankscope {name}")
    release(model)
    our_losses = [loss for _, loss in result.loss_curve]

    ref_rate, our_rate = useful / ref_wall, useful / result.wall_time_s
    worst = max(abs(a - b) / max(abs(a), 1e-8) for a, b in zip(ref_losses, our_losses))
    print(f"[{name}] {spec.steps} steps x batch {spec.batch_size}: {useful} useful tokens "
          f"({useful / padded:.0%} of the padded batches)")
    print(f"[{name}] Trainer+PEFT (reference): {ref_wall:7.1f} s  {ref_rate:8.1f} useful tok/s  "
          f"MFU {flops_per_token * ref_rate / peak:.1%}")
    print(f"[{name}] rankscope               : {result.wall_time_s:7.1f} s  {our_rate:8.1f} useful tok/s  "
          f"MFU {flops_per_token * our_rate / peak:.1%}")
    print(f"[{name}] loss per answer token: reference mean {statistics.mean(ref_losses):.4f}, "
          f"rankscope mean {statistics.mean(our_losses):.4f}; step 1 {ref_losses[0]:.4f} vs {our_losses[0]:.4f}; "
          f"largest per-step relative difference {worst:.1e} (Trainer logs 4 significant digits)")
    if len(ref_losses) != len(our_losses) or worst > 0.02:
        raise SystemExit(f"[{name}] the losses disagree: reference {ref_losses} vs rankscope {our_losses}")
    ratio = our_rate / ref_rate
    print(f"[{name}] speedup: {ratio:.2f}x")
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--dataset", default="gsm8k",
                        help="gsm8k (the study's reasoning set; real lengths) or arith_chain (the quick preset's, "
                             "near-uniform lengths: the least padding to save)")
    parser.add_argument("--path", default=str(DEFAULT_GSM8K),
                        help="local upstream files for --dataset (default: ../shared/data/gsm8k next to the repository)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--arms", default="lora,sft")
    parser.add_argument("--peak-seconds", type=float, default=2.0, help="time spent measuring the matmul peak")
    args = parser.parse_args()

    path = args.path if args.dataset == "gsm8k" else None
    if args.dataset == "gsm8k" and not Path(path).exists():
        print(f"{path} not found: using the builtin arith_chain set")
        args.dataset, path = "arith_chain", None
    loaded = load_base_model(ModelSpec(id=args.model))
    base, tokenizer, device = loaded.model, loaded.tokenizer, loaded.device
    dataset = load_dataset(DatasetSpec(name=args.dataset, path=path, n_train=1000, n_test=10), seed=0,
                           for_training=True)
    print(f"training set {args.dataset}: {len(dataset.train)} rows")
    spec = TrainSpec(steps=args.steps, batch_size=args.batch_size, max_length=256, log_every=1)
    encoded = encode_examples(tokenizer, dataset.train, spec.max_length)
    peak = matmul_peak_flops(device, loaded.dtype, args.peak_seconds)
    print(f"device {device}, {torch.get_num_threads()} threads, dtype {loaded.dtype}; "
          f"measured matmul peak {peak / 1e9:.1f} GFLOP/s")

    lora = LoraSpec(ranks=[args.rank], alpha="2r", targets="all-linear")
    ratios = []
    for arm in args.arms.split(","):
        if arm == "lora":
            probe = apply_lora(base, lora, args.rank, seed=0)
            flops = model_flops_per_token(probe, encoded[:args.batch_size], tokenizer.pad_token_id)
            remove_lora(probe)

            def make_reference():
                from peft import get_peft_model

                # the same adapter settings and initialisation as rankscope's apply_lora
                own = apply_lora(base, lora, args.rank, seed=0)
                config = copy.deepcopy(own.peft_config["default"])
                remove_lora(own)
                torch.manual_seed(0)
                return get_peft_model(base, config)

            ratios.append(compare_arm(
                f"lora r={args.rank}", make_reference, lambda: apply_lora(base, lora, args.rank, seed=0),
                lambda model: remove_lora(model), tokenizer, encoded, spec, spec.lr.lora, 0, flops, peak, device))
        elif arm == "sft":
            probe = make_sft_copy(base)
            flops = model_flops_per_token(probe, encoded[:args.batch_size], tokenizer.pad_token_id)
            del probe
            ratios.append(compare_arm(
                "sft", lambda: make_sft_copy(base), lambda: make_sft_copy(base), lambda model: None,
                tokenizer, encoded, spec, spec.lr.sft, 0, flops, peak, device))
        else:
            raise SystemExit(f"--arms: unknown arm {arm!r}; use lora and/or sft")
    print(f"useful tokens/s speedup on {args.dataset} (min over arms {args.arms}): {min(ratios):.1f}x")


if __name__ == "__main__":
    main()
