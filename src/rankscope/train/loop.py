"""The one training loop every arm goes through.

Arms differ only in which parameters require grad (LoRA factors or all weights) and in the
learning rate set per method; data order, number of steps, batch size, prompt format and loss
masking (loss on the answer tokens only) are identical. A comparison made with two different
loops would be confounded (docs/architecture.md, "One pipeline").
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, get_scheduler

from rankscope.config import TrainSpec
from rankscope.data.prompts import prompt_ids as prompt_token_ids
from rankscope.data.prompts import training_target
from rankscope.data.types import Example
from rankscope.train.loss import (
    DEFAULT_OVERHEAD_TOKENS,
    IGNORE_INDEX,
    MICRO_BATCH_OVERHEAD_TOKENS,
    AnswerLoss,
    EncodedExample,
    micro_batches,
    padded_answer_loss,
    pick_answer_loss,
)
from rankscope.train.memory import PeakMemory
from rankscope.train.precision import FP32, PrecisionRecipe

log = logging.getLogger(__name__)  # step/loss lines: RUN_DIR/run.log (the CLI's file handler)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the arm is recorded as failed with this message."""


@dataclass
class TrainResult:
    trainable_params: int
    total_params: int
    steps: int
    wall_time_s: float
    tokens_per_s: float  # non-padding tokens processed per second (prompt + answer)
    peak_memory_total_mb: float  # the process's (CPU: resident set; CUDA: allocator) peak during the arm
    peak_memory_arm_mb: float  # the arm's own: that peak minus what was resident when the arm began
    final_loss: float
    loss_curve: list[tuple[int, float]] = field(default_factory=list)
    precision: dict = field(default_factory=FP32.to_json)  # the recipe (rankscope.train.precision)
    gradient_checkpointing: bool = False

    @property
    def peak_memory_mb(self) -> float:
        """The name older run directories use for peak_memory_total_mb."""
        return self.peak_memory_total_mb

    def to_json(self) -> dict:
        return {**asdict(self), "peak_memory_mb": self.peak_memory_total_mb}


def encode_example(tokenizer: PreTrainedTokenizerBase, example: Example, max_length: int) -> EncodedExample:
    """Prompt and answer are tokenized separately so the label mask falls exactly on the answer.

    Truncation keeps the answer: the prompt is cut from the left when too long (after its BOS,
    which stays first).
    """
    prompt_ids = prompt_token_ids(tokenizer, example.question)
    answer_ids = tokenizer(training_target(tokenizer, example.training_text), add_special_tokens=False)["input_ids"]
    head = prompt_ids[:1] if prompt_ids and prompt_ids[0] == tokenizer.bos_token_id else []
    answer_ids = answer_ids[:max_length - len(head)]
    body = prompt_ids[len(head):]
    prompt_ids = head + body[max(0, len(head) + len(body) + len(answer_ids) - max_length):]
    return EncodedExample(
        input_ids=prompt_ids + answer_ids,
        labels=[IGNORE_INDEX] * len(prompt_ids) + answer_ids,
    )


def encode_examples(tokenizer: PreTrainedTokenizerBase, examples: list[Example], max_length: int) -> list[EncodedExample]:
    return [encode_example(tokenizer, example, max_length) for example in examples]


def batch_schedule(n_examples: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """Example indices for every step: seeded epochs of shuffled indices, shared by every arm."""
    if n_examples == 0:
        raise ValueError("the training set is empty")
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        epoch = list(range(n_examples))
        rng.shuffle(epoch)
        order.extend(epoch)
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def accumulate_batch_gradient(model: nn.Module, batch: list[EncodedExample], pad_token_id: int,
                              answer_loss: AnswerLoss, precision: PrecisionRecipe = FP32,
                              total_predicted: int | None = None, scale: float = 1.0,
                              split: bool = True) -> float:
    """Backpropagate the batch's mean answer-token loss, one length-grouped micro-batch at a time.

    Each micro-batch's mean is weighted by its share of the batch's answer tokens, so the summed
    loss and gradient equal the whole batch's; returns that loss. A data-parallel rank passes
    the whole batch's ``total_predicted`` and ``scale`` = world size, so that the ranks' averaged
    gradients equal the single-process one (rankscope.train.fsdp); ``split=False`` keeps the
    batch one micro-batch, so every rank runs the same number of (collective) forwards.
    """
    total = sum(item.n_predicted for item in batch) if total_predicted is None else total_predicted
    if total == 0:
        return float("nan")
    loss_value = 0.0
    device = next(model.parameters()).device
    overhead = MICRO_BATCH_OVERHEAD_TOKENS.get(device.type, DEFAULT_OVERHEAD_TOKENS)
    for micro in (micro_batches(batch, overhead) if split else [batch]) if batch else []:
        share = sum(item.n_predicted for item in micro) / total
        if share == 0:
            continue
        with precision.autocast(device):
            loss = answer_loss(model, micro, pad_token_id) * share
        (loss * scale).backward()
        loss_value += loss.item()
    return loss_value


@dataclass(frozen=True)
class DataShard:
    """One rank of a data-parallel job: rows rank, rank + world, ... of every batch."""

    rank: int
    world: int
    device: str = "cpu"  # where the collective's tensor lives (cuda under NCCL)

    def local(self, batch: list[EncodedExample]) -> list[EncodedExample]:
        return batch[self.rank::self.world]

    def sum(self, value: float) -> float:
        import torch.distributed as dist

        total = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return float(total)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def set_gradient_checkpointing(model: nn.Module, enabled: bool) -> None:
    """Recompute each decoder layer's activations in the backward pass (transformers' own hook).

    Non-reentrant checkpointing needs no input that requires grad, so it works under LoRA too.
    """
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not getattr(target, "supports_gradient_checkpointing", False):
        return
    # transformers >= 5.2x names it activation checkpointing; older 5.x only gradient checkpointing.
    if enabled:
        if hasattr(target, "activation_checkpointing_enable"):
            target.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            target.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    elif any(getattr(module, "gradient_checkpointing", False) for module in target.modules()):
        (getattr(target, "activation_checkpointing_disable", None) or target.gradient_checkpointing_disable)()


def train_model(
    model: nn.Module,
    encoded: list[EncodedExample],
    spec: TrainSpec,
    lr: float,
    seed: int,
    pad_token_id: int,
    description: str = "train",
    precision: PrecisionRecipe = FP32,
    gradient_checkpointing: bool = False,
    shard: DataShard | None = None,
) -> TrainResult:
    """Train the parameters that require grad; return costs and the loss curve.

    ``precision`` holds the trainable parameters in its master dtype (fp32) and runs the
    forwards under autocast; ``gradient_checkpointing`` trades recomputation for activation
    memory and uses padded batches (the shared-prefix path runs a KV cache, which checkpointed
    layers do not keep). ``shard``: this process is one rank of a data-parallel (FSDP) job; it
    takes its slice of every batch and the loss curve is summed over ranks.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: the arm would not change the model")
    precision.prepare(params)
    set_gradient_checkpointing(model, gradient_checkpointing)
    try:
        return _train(model, params, encoded, spec, lr, seed, pad_token_id, description, precision,
                      gradient_checkpointing, shard)
    finally:
        set_gradient_checkpointing(model, False)


def _train(model: nn.Module, params: list[nn.Parameter], encoded: list[EncodedExample], spec: TrainSpec,
           lr: float, seed: int, pad_token_id: int, description: str, precision: PrecisionRecipe,
           gradient_checkpointing: bool, shard: DataShard | None) -> TrainResult:
    device = params[0].device
    trainable, total = count_parameters(model)
    with PeakMemory(device) as memory:  # optimizer state included: AdamW allocates it on the first step
        # The fused kernel (one pass over all parameters) is what transformers' Trainer defaults to as well.
        # (Sharded DTensor parameters take the default implementation.)
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=spec.weight_decay,
                                      fused=device.type in ("cpu", "cuda") and shard is None)
        scheduler = get_scheduler("linear", optimizer, num_warmup_steps=math.ceil(spec.warmup_ratio * spec.steps),
                                  num_training_steps=spec.steps)
        schedule = batch_schedule(len(encoded), spec.steps, spec.batch_size, seed)
        curve: list[tuple[int, float]] = []
        tokens = 0
        loss_value = float("nan")
        started = time.perf_counter()
        model.eval()  # the check compares two forwards, so dropout must be off
        with precision.autocast(device):
            answer_loss = padded_answer_loss if shard is not None else pick_answer_loss(
                model, [encoded[i] for i in schedule[0]], pad_token_id, spec.shared_prefix and not gradient_checkpointing)
        torch.manual_seed(seed)  # dropout masks
        model.train()
        progress = tqdm(schedule, desc=description, leave=False, dynamic_ncols=True, disable=None)
        for step, indices in enumerate(progress, start=1):
            batch = [encoded[i] for i in indices]
            if shard is None:
                loss_value = accumulate_batch_gradient(model, batch, pad_token_id, answer_loss, precision)
            else:
                loss_value = shard.sum(accumulate_batch_gradient(
                    model, shard.local(batch), pad_token_id, answer_loss, precision,
                    total_predicted=sum(item.n_predicted for item in batch), scale=shard.world, split=False))
            if not math.isfinite(loss_value):
                raise TrainingDiverged(f"loss is {loss_value} at step {step}; lower the learning rate or check the data")
            torch.nn.utils.clip_grad_norm_(params, spec.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            tokens += sum(len(item.input_ids) for item in batch)
            if step == 1 or step % spec.log_every == 0 or step == spec.steps:
                curve.append((step, round(loss_value, 6)))
                progress.set_postfix(loss=f"{loss_value:.3f}")
                log.info("%s step %d/%d loss %.4f", description, step, spec.steps, loss_value)
        wall = time.perf_counter() - started
    model.eval()
    return TrainResult(
        trainable_params=trainable,
        total_params=total,
        steps=spec.steps,
        wall_time_s=round(wall, 3),
        tokens_per_s=round(tokens / wall, 2) if wall > 0 else 0.0,
        peak_memory_total_mb=round(memory.mb, 1),
        peak_memory_arm_mb=round(memory.arm_mb, 1),
        final_loss=round(loss_value, 6),
        loss_curve=curve,
        precision=precision.to_json(),
        gradient_checkpointing=gradient_checkpointing,
    )
