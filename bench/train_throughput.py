"""Training throughput: rankscope's loop vs transformers Trainer + PEFT as a careful user runs it.

Every side trains the same model (the default SmolLM2-135M-Instruct unless ``--model``) on the same
tokenized rows, with the same batch size, steps, learning rate, linear schedule with warm-up,
clipping, precision and optimizer (fused AdamW, the Trainer's default). Three Trainer baselines:

- ``default``: ``DataCollatorForSeq2Seq(padding="longest")``, the model's own loss; rows in
  rankscope's seeded order (a sequential sampler), so its per-step losses must equal rankscope's;
- ``grouped``: the same with ``train_sampling_strategy="group_by_length"`` (transformers 5's name
  for ``group_by_length``): the same rows, regrouped into batches of similar length by the
  Trainer's ``LengthGroupedSampler``, so its batches (and per-step losses) differ by design;
- ``padding-free``: ``DataCollatorWithFlattening``: each batch is one row of concatenated
  sequences with restarting ``position_ids`` and no padding at all; rankscope's order again, so
  its per-step losses must equal rankscope's. The model's ``use_cache`` is off for this side:
  transformers keeps the sequences of a flattened row apart
  (a mask from the restarting positions) only when the forward has no key/value cache, and with
  the default ``use_cache=True`` every sequence would attend to the ones before it. Run only where
  the model gives the padded loss on a flattened batch (checked on the first batch; otherwise
  skipped with the reason).

Timing: the end of every optimizer step is stamped (a global ``torch.optim`` step hook, the same
for every side); the first ``--warmup-steps`` steps and everything before them (model wrapping,
the Trainer's set-up, rankscope's one-time fast-path check) are excluded. The sides run
interleaved (A B C D A B C D ...) ``--repeats`` times; each side's median useful (non-padding)
tokens per second over the timed steps is printed with its min and max.

Utilisation, both against the matmul peak measured in the same run:

- **MFU** (model FLOPs utilization, Chowdhery et al. 2022, PaLM, appendix B): model FLOPs per
  trained token are ``6N + 12·L·H·Q·T`` (N: the weights of every matmul a token goes through, the
  output head included and the input embedding lookup excluded; L layers, H heads of width Q, T
  the row's own length). 6N = forward 2N + backward 4N (activation gradients 2N, weight gradients
  2N). For LoRA the frozen weights get no weight gradient, so N is split: ``4·N_frozen + 6·N_lora``
  (forward 2N and activation gradients 2N for frozen weights, the full 6N for the adapters). The
  same model FLOPs per token are credited to every side: work a side skips or wastes (padding,
  a prefix run once, logits only where a loss is taken) does not change them, so MFU ranks the
  sides exactly as useful tokens per second do.
- **HFU** (hardware FLOPs utilization): the FLOPs rankscope's steps actually execute (counted with
  ``torch.utils.flop_counter`` on the timed batches: its micro-batches with their own padding, the
  prefix once per batch, the output head only where an answer token is predicted) per second.

Data: GSM8K's train split from its upstream files through rankscope's data layer (``--targets``:
whatever targets the data layer gives; see ``gsm8k_spec``), else ``--dataset arith_chain``.

Prints per arm each side's useful tokens/s, MFU, rankscope's HFU, the losses, then
``speedup vs default Trainer: N.Nx`` and last ``speedup vs fastest baseline: N.Nx``: the minimum
over the arms of rankscope's median rate over the best baseline's median rate.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_backward_flop_count, sdpa_flop_count

from rankscope.config import DatasetSpec, LoraSpec, ModelSpec, TrainSpec
from rankscope.data.registry import load_dataset
from rankscope.models.arms import apply_lora, make_sft_copy, remove_lora
from rankscope.models.load import load_base_model
from rankscope.train.loop import accumulate_batch_gradient, batch_schedule, encode_examples, train_model
from rankscope.train.loss import EncodedExample, padded_answer_loss, pick_answer_loss

DEFAULT_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k"
BASELINES = ("default", "grouped", "padding-free")


# --- FLOPs ---------------------------------------------------------------------------------------

def _count_cpu_sdpa() -> None:
    """Teach the FLOP counter CPU's fused attention kernel (it knows only the CUDA ones)."""
    ops = torch.ops.aten
    if not hasattr(ops, "_scaled_dot_product_flash_attention_for_cpu"):
        return
    try:
        @register_flop_formula(ops._scaled_dot_product_flash_attention_for_cpu)
        def _forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
            return sdpa_flop_count(query, key, value)

        @register_flop_formula(ops._scaled_dot_product_flash_attention_for_cpu_backward)
        def _backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
            return sdpa_backward_flop_count(grad_out, query, key, value)
    except (RuntimeError, AttributeError):  # already registered (a second run in one process)
        pass


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


def matmul_weights(model: nn.Module) -> tuple[int, int]:
    """(frozen, trainable) weights of every linear map a token goes through, the output head included.

    The head counts even when its weight is tied to the input embedding: the lookup is no matmul,
    the head is one. Norms and biases are not matmul weights.
    """
    frozen = trainable = 0
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if module.weight.requires_grad:
                trainable += module.weight.numel()
            else:
                frozen += module.weight.numel()
    return frozen, trainable


def model_flops(model: nn.Module, lengths: list[int]) -> float:
    """PaLM's model FLOPs (appendix B) of training on rows of these lengths: see the module docstring."""
    config = model.config if hasattr(model, "config") else model.get_base_model().config
    frozen, trainable = matmul_weights(model)
    per_token = 4 * frozen + 6 * trainable  # sft: every weight trains, so this is 6N
    head_width = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention = 12 * config.num_hidden_layers * config.num_attention_heads * head_width  # x T per token
    return sum(per_token * n + attention * n * n for n in lengths)


def executed_flops(model: nn.Module, batches: list[list[EncodedExample]], pad_token_id: int) -> float:
    """FLOPs rankscope's training steps execute on ``batches`` (forward + backward, counted)."""
    answer_loss = pick_answer_loss(model, batches[0], pad_token_id, shared_prefix=True)
    counter = FlopCounterMode(display=False)
    with counter:
        for batch in batches:
            accumulate_batch_gradient(model, batch, pad_token_id, answer_loss)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


# --- timing --------------------------------------------------------------------------------------

class StepClock:
    """Stamps the end of every optimizer step of every optimizer (Trainer's and rankscope's alike)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self._handle = register_optimizer_step_post_hook(self._stamp)

    def _stamp(self, optimizer, args, kwargs) -> None:
        self.stamps.append(time.perf_counter())

    def reset(self) -> None:
        self.stamps.clear()

    def close(self) -> None:
        self._handle.remove()


@dataclass
class Run:
    seconds: float  # wall time of the timed steps
    useful_tokens: int  # non-padding tokens of the timed steps
    losses: list[float]  # per step, every step

    @property
    def rate(self) -> float:
        return self.useful_tokens / self.seconds


@dataclass
class Side:
    name: str
    run: Callable[[], Run]
    runs: list[Run] = field(default_factory=list)

    def rates(self) -> list[float]:
        return [r.rate for r in self.runs]


def timed(clock: StepClock, steps_tokens: list[int], warmup: int) -> tuple[float, int]:
    """Seconds from the end of step ``warmup`` to the end of the last step, and the tokens of those steps."""
    if len(clock.stamps) != len(steps_tokens):
        raise SystemExit(f"counted {len(clock.stamps)} optimizer steps for {len(steps_tokens)} batches")
    return clock.stamps[-1] - clock.stamps[warmup - 1], sum(steps_tokens[warmup:])


# --- the Trainer baselines -----------------------------------------------------------------------

class CountingCollator:
    """Wraps a collator and records each batch's useful tokens, in the order the Trainer asks for them."""

    def __init__(self, inner) -> None:
        self.inner, self.tokens = inner, []

    def __call__(self, features):
        self.tokens.append(sum(len(f["input_ids"]) for f in features))
        return self.inner(features)


def trainer_run(kind: str, model, tokenizer, rows: list[EncodedExample], spec: TrainSpec, lr: float, seed: int,
                device: torch.device, clock: StepClock, warmup: int) -> Run:
    """One Trainer + PEFT training run as a careful user configures it (``kind`` in BASELINES)."""
    from datasets import Dataset
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    dataset = Dataset.from_list([{"input_ids": r.input_ids, "labels": r.labels} for r in rows])
    if kind == "padding-free":
        collator = CountingCollator(DataCollatorWithFlattening())
    else:
        collator = CountingCollator(DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100))
    use_cache = model.config.use_cache
    if kind == "padding-free":
        model.config.use_cache = False  # see the module docstring: packed rows need a cache-free forward
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir, per_device_train_batch_size=spec.batch_size, max_steps=spec.steps,
            learning_rate=lr, lr_scheduler_type="linear", warmup_steps=math.ceil(spec.warmup_ratio * spec.steps),
            weight_decay=spec.weight_decay, max_grad_norm=spec.grad_clip, logging_steps=1, save_strategy="no",
            report_to=[], seed=seed, use_cpu=device.type == "cpu", disable_tqdm=True,
            bf16=model.dtype == torch.bfloat16, dataloader_num_workers=0,
            # sequential: rankscope's order, so the per-step losses can be compared one to one
            train_sampling_strategy="group_by_length" if kind == "grouped" else "sequential",
        )
        trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
        trainer.remove_callback(PrinterCallback)  # the per-step log dicts; the losses are read from log_history
        clock.reset()
        try:
            trainer.train()
        finally:
            model.config.use_cache = use_cache  # a PEFT model shares its config with the base model
    seconds, tokens = timed(clock, collator.tokens, warmup)
    return Run(seconds, tokens, [entry["loss"] for entry in trainer.state.log_history if "loss" in entry])


def flattening_supported(model, rows: list[EncodedExample], pad_token_id: int) -> str | None:
    """None when the model's loss on a flattened batch equals the padded loss, else why not."""
    from transformers import DataCollatorWithFlattening

    sample = rows[:4]
    features = [{"input_ids": r.input_ids, "labels": r.labels} for r in sample]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            batch = {k: v.to(device) for k, v in DataCollatorWithFlattening(return_tensors="pt")(features).items()}
            flat = model(**batch, use_cache=False).loss.item()  # as the padding-free side trains
            padded = padded_answer_loss(model, sample, pad_token_id).item()
    except (TypeError, ValueError, RuntimeError) as error:
        return f"the model does not take a flattened batch ({error})"
    if not math.isclose(flat, padded, rel_tol=1e-4):
        return f"its loss on a flattened batch {flat:.6f} differs from the padded {padded:.6f}"
    return None


# --- one arm -------------------------------------------------------------------------------------

def compare_arm(name: str, make_model, release, tokenizer, encoded, spec: TrainSpec, lr: float, args, peak: float,
                device: torch.device, clock: StepClock) -> tuple[float, float]:
    """Runs every side interleaved; returns (speedup vs default Trainer, speedup vs the fastest baseline)."""
    seed, warmup = 0, args.warmup_steps
    schedule = batch_schedule(len(encoded), spec.steps, spec.batch_size, seed)
    rows = [encoded[i] for step in schedule for i in step]
    step_tokens = [sum(len(encoded[i].input_ids) for i in step) for step in schedule]
    padded = sum(max(len(encoded[i].input_ids) for i in step) * len(step) for step in schedule)
    predicted = sum(r.n_predicted for r in rows)

    probe = make_model()
    per_token = model_flops(probe, [len(r.input_ids) for r in rows]) / sum(len(r.input_ids) for r in rows)
    timed_batches = [[encoded[i] for i in step] for step in schedule[warmup:]]
    hardware = executed_flops(probe, timed_batches, tokenizer.pad_token_id)
    skip_flat = flattening_supported(probe, rows, tokenizer.pad_token_id)
    release(probe)

    def trainer_side(kind: str) -> Callable[[], Run]:
        def run() -> Run:
            model = make_model()
            try:
                return trainer_run(kind, model, tokenizer, rows, spec, lr, seed, device, clock, warmup)
            finally:
                release(model)
        return run

    def rankscope_side() -> Run:
        model = make_model()
        try:
            clock.reset()
            result = train_model(model, encoded, spec, lr=lr, seed=seed, pad_token_id=tokenizer.pad_token_id,
                                 description=f"rankscope {name}")
        finally:
            release(model)
        seconds, tokens = timed(clock, step_tokens, warmup)
        return Run(seconds, tokens, [loss for _, loss in result.loss_curve])

    sides = [Side(kind, trainer_side(kind)) for kind in BASELINES if not (kind == "padding-free" and skip_flat)]
    ours = Side("rankscope", rankscope_side)
    for _ in range(args.repeats):  # interleaved: A B C D A B C D ...
        for side in [*sides, ours]:
            side.runs.append(side.run())

    timed_tokens = ours.runs[0].useful_tokens
    print(f"[{name}] {spec.steps} steps x batch {spec.batch_size} ({warmup} warm-up steps not timed): "
          f"{sum(step_tokens)} useful tokens, {sum(step_tokens) / padded:.0%} of the padded batches; "
          f"{predicted / sum(step_tokens):.1%} of tokens are predicted (answer targets)")
    if skip_flat:
        print(f"[{name}] padding-free baseline skipped: {skip_flat}")
    for side in [*sides, ours]:
        rates = side.rates()
        median = statistics.median(rates)
        line = (f"[{name}] {'Trainer+PEFT ' + side.name if side is not ours else 'rankscope':27s}: "
                f"median {median:7.1f} useful tok/s (min {min(rates):.1f}, max {max(rates):.1f}; "
                f"{args.repeats} runs)  MFU {per_token * median / peak:.1%}")
        if side is ours:
            hfu = hardware / statistics.median(r.seconds for r in side.runs)
            line += f"  HFU {hfu / peak:.1%}"
        print(line)
    print(f"[{name}] model FLOPs per trained token {per_token / 1e6:.1f} M (PaLM 6N + attention; "
          f"LoRA: 4N frozen + 6N adapters); rankscope executes {hardware / timed_tokens / 1e6:.1f} M per token")

    ours_losses = ours.runs[0].losses
    for side in sides:
        losses = side.runs[0].losses
        mean_line = (f"[{name}] loss per answer token, {side.name}: mean {statistics.mean(losses):.4f} "
                     f"vs rankscope {statistics.mean(ours_losses):.4f}")
        if side.name == "grouped":  # other batches by design: only the means are comparable
            print(mean_line + " (its batches differ by design)")
            continue
        worst = max(abs(a - b) / max(abs(a), 1e-8) for a, b in zip(losses, ours_losses))
        print(mean_line + f"; largest per-step relative difference {worst:.1e} (Trainer logs 4 significant digits)")
        if len(losses) != len(ours_losses) or worst > 0.02:
            raise SystemExit(f"[{name}] the losses disagree: {side.name} {losses} vs rankscope {ours_losses}")

    ours_rate = statistics.median(ours.rates())
    by_name = {side.name: statistics.median(side.rates()) for side in sides}
    fastest = max(by_name, key=by_name.get)
    vs_default, vs_fastest = ours_rate / by_name["default"], ours_rate / by_name[fastest]
    print(f"[{name}] speedup vs default Trainer {vs_default:.2f}x; vs the fastest baseline ({fastest}) "
          f"{vs_fastest:.2f}x")
    return vs_default, vs_fastest


# --- data ----------------------------------------------------------------------------------------

def gsm8k_spec(path: str, targets: str | None) -> DatasetSpec:
    """GSM8K's train split through rankscope's data layer, which alone decides what a training
    target is (``DatasetSpec.target``, rankscope.data.solutions): by default the worked solution
    ending in ``#### N``; ``bare`` asks it for the final numbers only."""
    target = {None: "auto", "solution": "solution", "bare": "answer"}[targets]
    return DatasetSpec(name="gsm8k", path=path, n_train=1000, n_test=10, target=target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--dataset", default="gsm8k",
                        help="gsm8k (the study's reasoning set; real lengths) or arith_chain (the quick preset's, "
                             "near-uniform lengths: the least padding to save)")
    parser.add_argument("--path", default=str(DEFAULT_GSM8K),
                        help="local upstream files for --dataset (default: ../shared/data/gsm8k next to the repository)")
    parser.add_argument("--targets", choices=["bare", "solution"], default=None,
                        help="GSM8K training targets, asked of rankscope's data layer (default: the data layer's own)")
    parser.add_argument("--steps", type=int, default=3, help="steps per run, warm-up included")
    parser.add_argument("--warmup-steps", type=int, default=1,
                        help="steps per run not timed (the first allocates the optimizer state)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs of every side")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--arms", default="lora,sft")
    parser.add_argument("--peak-seconds", type=float, default=2.0, help="time spent measuring the matmul peak")
    args = parser.parse_args()
    if not 1 <= args.warmup_steps < args.steps:
        raise SystemExit("--warmup-steps must be at least 1 and below --steps")

    path = args.path if args.dataset == "gsm8k" else None
    if args.dataset == "gsm8k" and not Path(path).exists():
        print(f"{path} not found: using the builtin arith_chain set")
        args.dataset, path = "arith_chain", None
    loaded = load_base_model(ModelSpec(id=args.model))
    base, tokenizer, device = loaded.model, loaded.tokenizer, loaded.device
    spec_data = (gsm8k_spec(path, args.targets) if args.dataset == "gsm8k"
                 else DatasetSpec(name=args.dataset, n_train=1000, n_test=10))
    dataset = load_dataset(spec_data, seed=0, for_training=True)
    print(f"training set {args.dataset}: {len(dataset.train)} rows; first target: {dataset.train[0].training_text[:60]!r}")
    spec = TrainSpec(steps=args.steps, batch_size=args.batch_size, max_length=args.max_length, log_every=1)
    encoded = encode_examples(tokenizer, dataset.train, spec.max_length)
    _count_cpu_sdpa()
    peak = matmul_peak_flops(device, loaded.dtype, args.peak_seconds)
    print(f"device {device}, {torch.get_num_threads()} threads, dtype {loaded.dtype}; "
          f"measured matmul peak {peak / 1e9:.1f} GFLOP/s")

    lora = LoraSpec(ranks=[args.rank], alpha="2r", targets="all-linear")
    clock = StepClock()
    results = []
    try:
        for arm in args.arms.split(","):
            if arm == "lora":
                def make_lora():
                    from peft import get_peft_model

                    # the same adapter settings and initialisation as rankscope's apply_lora
                    own = apply_lora(base, lora, args.rank, seed=0)
                    config = copy.deepcopy(own.peft_config["default"])
                    remove_lora(own)
                    torch.manual_seed(0)
                    return get_peft_model(base, config)

                results.append(compare_arm(f"lora r={args.rank}", make_lora, remove_lora, tokenizer, encoded, spec,
                                           spec.lr.lora, args, peak, device, clock))
            elif arm == "sft":
                results.append(compare_arm("sft", lambda: make_sft_copy(base), lambda model: None, tokenizer,
                                           encoded, spec, spec.lr.sft, args, peak, device, clock))
            else:
                raise SystemExit(f"--arms: unknown arm {arm!r}; use lora and/or sft")
    finally:
        clock.close()
    print(f"speedup vs default Trainer: {min(r[0] for r in results):.1f}x")
    print(f"speedup vs fastest baseline: {min(r[1] for r in results):.1f}x")


if __name__ == "__main__":
    main()
