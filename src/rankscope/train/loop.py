"""The one training loop every arm goes through.

Arms differ only in which parameters require grad (LoRA factors or all weights) and in the
learning rate set per method; data order, number of steps, batch size, prompt format and loss
masking (loss on the answer tokens only) are identical. A comparison made with two different
loops would be confounded (DESIGN.md, "One pipeline").
"""

from __future__ import annotations

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
    pick_answer_loss,
)
from rankscope.train.memory import PeakMemory


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the arm is recorded as failed with this message."""


@dataclass
class TrainResult:
    trainable_params: int
    total_params: int
    steps: int
    wall_time_s: float
    tokens_per_s: float  # non-padding tokens processed per second (prompt + answer)
    peak_memory_mb: float
    final_loss: float
    loss_curve: list[tuple[int, float]] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


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
                              answer_loss: AnswerLoss) -> float:
    """Backpropagate the batch's mean answer-token loss, one length-grouped micro-batch at a time.

    Each micro-batch's mean is weighted by its share of the batch's answer tokens, so the summed
    loss and gradient equal the whole batch's; returns that loss.
    """
    total = sum(item.n_predicted for item in batch)
    if total == 0:
        return float("nan")
    loss_value = 0.0
    device = next(model.parameters()).device
    overhead = MICRO_BATCH_OVERHEAD_TOKENS.get(device.type, DEFAULT_OVERHEAD_TOKENS)
    for micro in micro_batches(batch, overhead):
        share = sum(item.n_predicted for item in micro) / total
        if share == 0:
            continue
        loss = answer_loss(model, micro, pad_token_id) * share
        loss.backward()
        loss_value += loss.item()
    return loss_value


def count_parameters(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def train_model(
    model: nn.Module,
    encoded: list[EncodedExample],
    spec: TrainSpec,
    lr: float,
    seed: int,
    pad_token_id: int,
    description: str = "train",
) -> TrainResult:
    """Train the parameters that require grad; return costs and the loss curve."""
    device = next(model.parameters()).device
    trainable, total = count_parameters(model)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters: the arm would not change the model")
    with PeakMemory(device) as memory:  # optimizer state included: AdamW allocates it on the first step
        # The fused kernel (one pass over all parameters) is what transformers' Trainer defaults to as well.
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=spec.weight_decay, fused=device.type in ("cpu", "cuda"))
        scheduler = get_scheduler("linear", optimizer, num_warmup_steps=math.ceil(spec.warmup_ratio * spec.steps),
                                  num_training_steps=spec.steps)
        schedule = batch_schedule(len(encoded), spec.steps, spec.batch_size, seed)
        curve: list[tuple[int, float]] = []
        tokens = 0
        loss_value = float("nan")
        started = time.perf_counter()
        model.eval()  # the check compares two forwards, so dropout must be off
        answer_loss = pick_answer_loss(model, [encoded[i] for i in schedule[0]], pad_token_id, spec.shared_prefix)
        torch.manual_seed(seed)  # dropout masks
        model.train()
        progress = tqdm(schedule, desc=description, leave=False, dynamic_ncols=True, disable=None)
        for step, indices in enumerate(progress, start=1):
            batch = [encoded[i] for i in indices]
            loss_value = accumulate_batch_gradient(model, batch, pad_token_id, answer_loss)
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
        wall = time.perf_counter() - started
    model.eval()
    return TrainResult(
        trainable_params=trainable,
        total_params=total,
        steps=spec.steps,
        wall_time_s=round(wall, 3),
        tokens_per_s=round(tokens / wall, 2) if wall > 0 else 0.0,
        peak_memory_mb=round(memory.mb, 1),
        final_loss=round(loss_value, 6),
        loss_curve=curve,
    )
