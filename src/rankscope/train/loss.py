"""The training loss on answer tokens, computed two ways that must agree.

``padded_answer_loss`` is the textbook computation: right-pad the batch, logits at every
position, cross-entropy where the label is an answer token. ``shared_prefix_answer_loss`` gives
the same number with less work: the batch's common prefix (the chat template's system turn) runs
once and every row continues from its cache, and the output head runs only at positions that
predict an answer token (rankscope.models.shared_prefix). ``pick_answer_loss`` checks on the
first batch that the fast path reproduces the padded loss for this model and falls back to the
padded path if it does not (an architecture whose cache or ``logits_to_keep`` behaves
differently must cost speed, never correctness). ``micro_batches`` splits a batch of uneven
lengths into length-grouped micro-batches whose weighted losses sum to the batch's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from rankscope.models.shared_prefix import common_prefix_length, forward_after_prefix, right_pad, verified_for_model

IGNORE_INDEX = -100
MIN_SHARED_PREFIX = 4  # below this the second forward costs more than the prefix saves
# The fixed cost of one more forward/backward, in padded-token equivalents. CPU: measured on 2
# cores with SmolLM2-135M (~0.1 s of per-op overhead against ~2.5 ms per token). CUDA: kernel
# launches dominate a small model's step and tokens are nearly free, so splitting must save far
# more; an estimate, not yet measured on a GPU.
MICRO_BATCH_OVERHEAD_TOKENS = {"cpu": 48, "cuda": 1024}
DEFAULT_OVERHEAD_TOKENS = 256


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX on prompt tokens: the loss is on the answer only

    @property
    def n_predicted(self) -> int:
        """Answer tokens the loss is taken on (the first token has nothing before it to predict it)."""
        return sum(1 for label in self.labels[1:] if label != IGNORE_INDEX)

    @property
    def first_target(self) -> int:
        """Position of the first answer token (len(input_ids) when there is none)."""
        return next((i for i, label in enumerate(self.labels) if label != IGNORE_INDEX), len(self.labels))


AnswerLoss = Callable[[nn.Module, list[EncodedExample], int], torch.Tensor]


def micro_batches(batch: list[EncodedExample], overhead_tokens: int = MICRO_BATCH_OVERHEAD_TOKENS["cpu"],
                  ) -> list[list[EncodedExample]]:
    """Split a batch into length-sorted micro-batches that waste the fewest padded tokens.

    The optimizer step is unchanged: the training loop weighs each micro-batch's mean loss by
    its share of the batch's answer tokens, so the summed gradient is the full batch's. Only the
    padding differs: rows of similar length share a forward, each padded to its own longest
    (the padding-free idea of length grouping, without changing which rows form a step).
    Dynamic programming over the rows sorted longest first; cost = padded tokens + a fixed
    overhead per forward.
    """
    rows = sorted(batch, key=lambda item: len(item.input_ids), reverse=True)
    lengths = [len(item.input_ids) for item in rows]
    n = len(rows)
    best = [0.0] + [math.inf] * n  # best[j]: cheapest split of rows[:j]
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        for i in range(j):  # rows[i:j] form one micro-batch, padded to lengths[i]
            cost = best[i] + (j - i) * lengths[i] + overhead_tokens
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups, j = [], n
    while j > 0:
        groups.append(rows[cut[j]:j])
        j = cut[j]
    return groups[::-1]


def collate(batch: list[EncodedExample], pad_token_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence in the batch."""
    input_ids, attention_mask = right_pad([item.input_ids for item in batch], pad_token_id)  # [b, n]
    labels, _ = right_pad([item.labels for item in batch], IGNORE_INDEX)  # [b, n]
    return {"input_ids": input_ids.to(device), "labels": labels.to(device), "attention_mask": attention_mask.to(device)}


def answer_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over answer tokens: logits [b, n, V] predict labels shifted by one."""
    shift_logits = logits[:, :-1, :].float()  # [b, n-1, V]
    shift_labels = labels[:, 1:]  # [b, n-1]
    return nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


def padded_answer_loss(model: nn.Module, batch: list[EncodedExample], pad_token_id: int) -> torch.Tensor:
    device = next(model.parameters()).device
    tensors = collate(batch, pad_token_id, device)
    logits = model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"], use_cache=False).logits
    return answer_token_loss(logits, tensors["labels"])


def shared_prefix_answer_loss(model: nn.Module, batch: list[EncodedExample], pad_token_id: int) -> torch.Tensor:
    """The padded loss, with the common prefix run once and logits only where answers are predicted."""
    # The prefix may not reach the token before the first answer token: that token's logits
    # predict an answer token and must come from the continuation forward.
    shared = min(common_prefix_length([item.input_ids for item in batch]),
                 min(item.first_target for item in batch) - 1)
    if shared < MIN_SHARED_PREFIX:
        return padded_answer_loss(model, batch, pad_token_id)
    rest_labels = [item.labels[shared:] for item in batch]
    # A label at continuation position t is predicted by the logits at t - 1.
    keep = torch.tensor(sorted({t - 1 for labels in rest_labels for t, label in enumerate(labels)
                                if label != IGNORE_INDEX}), dtype=torch.long)  # [k]
    labels, _ = right_pad(rest_labels, IGNORE_INDEX)  # [b, R]
    targets = labels[:, keep + 1]  # [b, k]
    logits = forward_after_prefix(
        model,
        prefixes=[batch[0].input_ids[:shared]],
        prefix_of_row=[0] * len(batch),
        continuations=[item.input_ids[shared:] for item in batch],
        keep=keep,
        pad_token_id=pad_token_id,
    )  # [b, k, V]
    return nn.functional.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), targets.to(logits.device).reshape(-1), ignore_index=IGNORE_INDEX
    )


def pick_answer_loss(model: nn.Module, first_batch: list[EncodedExample], pad_token_id: int,
                     shared_prefix: bool) -> AnswerLoss:
    """The fast loss when it reproduces the padded loss on ``first_batch`` for this model, else the padded one."""
    if not shared_prefix:
        return padded_answer_loss

    def agrees() -> bool:
        sample = first_batch[:3]  # enough rows to exercise padding and the broadcast cache
        reference = padded_answer_loss(model, sample, pad_token_id).item()
        fast = shared_prefix_answer_loss(model, sample, pad_token_id).item()
        return math.isfinite(reference) and math.isclose(fast, reference, rel_tol=1e-4, abs_tol=1e-5)

    return shared_prefix_answer_loss if verified_for_model(model, "training", agrees) else padded_answer_loss
