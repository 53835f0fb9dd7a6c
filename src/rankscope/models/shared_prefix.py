"""Run a shared prefix once, then many continuations on top of its key/value cache.

Sequences that start with the same tokens do the same work for those tokens. Two places in a
sweep are full of such prefixes:

- training batches: every row starts with the chat template's system turn (24 of ~90 tokens for
  SmolLM2 on ``arith_chain``), so the prefix is run once per batch instead of once per row and
  its keys and values are broadcast to every row (gradients flow back through the cache);
- multiple-choice scoring: the question's prompt is shared by all its choices, so it is run once
  per question instead of once per choice (lm-evaluation-harness runs it once per choice).

The continuation attends to the cached prefix through the ordinary ``past_key_values`` +
2D ``attention_mask`` + explicit ``position_ids`` path that generation with padding uses, so the
result equals a plain forward over the concatenated sequence (``tests/test_shared_prefix.py``
checks the identity on Llama- and Qwen2-style models). Only the logits at the positions asked for
are computed (``logits_to_keep``): the output head over a 49k vocabulary is a fifth of a small
model's FLOPs, and the loss or score needs it only where an answer token is predicted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)

_VERIFIED: dict[tuple[str, str, str], bool] = {}  # (use, model class, checkpoint) -> fast path is exact


def common_prefix_length(sequences: list[list[int]]) -> int:
    """Length of the longest token prefix shared by every sequence."""
    if not sequences:
        return 0
    shortest = min(len(sequence) for sequence in sequences)
    first = sequences[0]
    for position in range(shortest):
        token = first[position]
        if any(sequence[position] != token for sequence in sequences[1:]):
            return position
    return shortest


def right_pad(rows: list[list[int]], pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded on the right to the longest; returns (values [b, n], mask [b, n])."""
    width = max(len(row) for row in rows)
    values = torch.full((len(rows), width), pad_value, dtype=torch.long)  # [b, n]
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # [b, n]
    for index, row in enumerate(rows):
        values[index, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[index, :len(row)] = 1
    return values, mask


def forward_after_prefix(
    model: nn.Module,
    prefixes: list[list[int]],
    prefix_of_row: list[int],
    continuations: list[list[int]],
    keep: torch.Tensor,
    pad_token_id: int,
) -> torch.Tensor:
    """Logits for ``continuations[i]`` read after ``prefixes[prefix_of_row[i]]``.

    prefixes: token ids run once each (right-padded together; each must be non-empty).
    prefix_of_row: for every continuation row, the index of its prefix.
    continuations: token ids of every row (non-empty); right-padded together.
    keep: positions within the continuation whose logits are returned, shape [k].
    Returns logits of shape [rows, k, vocab]: ``logits[i, j]`` predicts the token after position
    ``keep[j]`` of row i. Positions past a row's end hold padding logits the caller ignores.
    """
    device = next(model.parameters()).device
    prefix_ids, prefix_mask = right_pad(prefixes, pad_token_id)  # [p, P]
    rest_ids, rest_mask = right_pad(continuations, pad_token_id)  # [b, R]
    rows = torch.tensor(prefix_of_row, dtype=torch.long)  # [b]
    prefix_lengths = prefix_mask.sum(dim=1)  # [p]
    # A continuation token's position counts from the end of its own prefix, not the padded one.
    positions = prefix_lengths[rows][:, None] + torch.arange(rest_ids.shape[1])[None, :]  # [b, R]
    prefix_out = model(
        input_ids=prefix_ids.to(device),
        attention_mask=prefix_mask.to(device),
        use_cache=True,
        logits_to_keep=1,
    )
    cache = prefix_out.past_key_values
    cache.reorder_cache(rows.to(device))  # [p, ...] -> [b, ...]; differentiable index_select
    attention_mask = torch.cat([prefix_mask[rows], rest_mask], dim=1)  # [b, P + R]
    out = model(
        input_ids=rest_ids.to(device),
        attention_mask=attention_mask.to(device),
        position_ids=positions.to(device),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=keep.to(device),
    )
    return out.logits  # [b, k, V]


def verified_for_model(model: nn.Module, use: str, agrees: Callable[[], bool]) -> bool:
    """Whether the shared-prefix path may be used for ``use`` with this model.

    ``agrees`` compares the fast path with the plain one on real inputs; it runs once per model
    class and checkpoint in this process (a sweep checks once, not once per arm). An exception
    from the fast path (an architecture whose forward takes no cache or ``logits_to_keep``)
    counts as disagreement: such a model costs speed, never correctness.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    checkpoint = str(getattr(getattr(inner, "config", None), "_name_or_path", "")) or str(id(inner))
    key = (use, type(inner).__qualname__, checkpoint)
    if key not in _VERIFIED:
        try:
            with torch.no_grad():
                _VERIFIED[key] = bool(agrees())
        except (TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
            log.warning("%s: the shared-prefix path does not work with this model (%s); using the plain path",
                        use, error)
            _VERIFIED[key] = False
        else:
            if not _VERIFIED[key]:
                log.warning("%s: the shared-prefix path disagrees with the plain one for this model; using the plain path",
                            use)
    return _VERIFIED[key]
