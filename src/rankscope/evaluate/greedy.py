"""Greedy decoding two ways that must give the same tokens: transformers' ``generate`` and a lean loop.

``plain_greedy`` is the reference: ``model.generate`` on left-padded batches, greedy, stopping at
the given end tokens. A finished row keeps riding along (fed padding) until every row of its batch
has finished or the token limit is reached, and the shared chat-template system turn is run once
per row.

``fast_greedy`` computes the same tokens with less work:

- the batch's common prompt prefix (the chat template's system turn) runs once and its key/value
  cache is broadcast to every row (as training and multiple-choice scoring do, see
  rankscope.models.shared_prefix); the rest of each prompt is left-padded *after* the prefix, so
  every row's last prompt token sits at the right edge and positions count real tokens only;
- a row leaves the batch when it produces an end token: its cache rows are dropped, so the
  remaining rows' steps cost less (``generate`` computes finished rows until the batch ends);
- the caller sorts prompts by length, so a batch's rows pad little.

Both return, per prompt, the new tokens (end token excluded) and whether the row stopped at the
token limit rather than at an end token (``hit_limit``: the answer may be cut off).
``tests/test_generation.py`` checks that the two agree token for token on Llama- and Qwen2-style
models; ``bench/generate.py`` compares them on real prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import GenerationConfig

from rankscope.models.shared_prefix import common_prefix_length

MIN_SHARED_PREFIX = 4  # below this a separate prefix forward costs more than it saves


@dataclass(frozen=True)
class Decoded:
    tokens: list[int]  # generated ids, the end token excluded
    hit_limit: bool  # stopped by max_new_tokens, not by an end token


def _cut(row: list[int], stop_ids: set[int]) -> Decoded:
    """New tokens up to the first end token; a row without one ran to the limit."""
    for index, token in enumerate(row):
        if token in stop_ids:
            return Decoded(tokens=row[:index], hit_limit=False)
    return Decoded(tokens=row, hit_limit=True)


def left_pad(rows: list[list[int]], pad_value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows padded on the left to the longest; returns (values [b, n], mask [b, n])."""
    width = max(len(row) for row in rows)
    values = torch.full((len(rows), width), pad_value, dtype=torch.long)  # [b, n]
    mask = torch.zeros((len(rows), width), dtype=torch.long)  # [b, n]
    for index, row in enumerate(rows):
        if row:
            values[index, width - len(row):] = torch.tensor(row, dtype=torch.long)
            mask[index, width - len(row):] = 1
    return values, mask


@torch.no_grad()
def plain_greedy(model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int, stop_ids: set[int],
                 pad_token_id: int, batch_size: int) -> list[Decoded]:
    """transformers' ``generate``: greedy, left padding, batches of ``batch_size`` in the order given."""
    device = next(model.parameters()).device
    # An explicit config: greedy and nothing else, whatever the checkpoint's generation_config says.
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              pad_token_id=pad_token_id, eos_token_id=sorted(stop_ids) or None)
    decoded: list[Decoded] = []
    for start in range(0, len(prompts), batch_size):
        input_ids, attention_mask = left_pad(prompts[start:start + batch_size], pad_token_id)  # [b, n]
        output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                generation_config=config)
        new_tokens = output[:, input_ids.shape[1]:].tolist()  # [b, <= max_new_tokens]
        decoded.extend(_cut(row, stop_ids) for row in new_tokens)
    return decoded


def _prefill(model: torch.nn.Module, rows: list[list[int]], pad_token_id: int, device: torch.device):
    """Run the prompts of one batch; returns (last-position logits [b, V], cache, mask [b, n], last positions [b])."""
    # The prefix may not take a row's last prompt token: its logits predict the first new token.
    shared = min(common_prefix_length(rows), min(len(row) for row in rows) - 1)
    if shared < MIN_SHARED_PREFIX:
        shared = 0
    suffix_ids, suffix_mask = left_pad([row[shared:] for row in rows], pad_token_id)  # [b, S]
    # Positions count a row's real tokens: prefix 0..shared-1, then its own suffix tokens.
    positions = shared + (suffix_mask.cumsum(dim=1) - 1).clamp(min=0)  # [b, S]; pads reuse a real position
    cache = None
    mask = suffix_mask
    if shared:
        prefix = model(input_ids=torch.tensor([rows[0][:shared]], device=device), use_cache=True, logits_to_keep=1)
        cache = prefix.past_key_values
        cache.reorder_cache(torch.zeros(len(rows), dtype=torch.long, device=device))  # [1, ...] -> [b, ...]
        mask = torch.cat([torch.ones((len(rows), shared), dtype=torch.long), suffix_mask], dim=1)  # [b, shared + S]
    out = model(input_ids=suffix_ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device),
                past_key_values=cache, use_cache=True, logits_to_keep=1)
    return out.logits[:, -1], out.past_key_values, mask.to(device), positions[:, -1].to(device)


@torch.no_grad()
def fast_greedy(model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int, stop_ids: set[int],
                pad_token_id: int, batch_size: int) -> list[Decoded]:
    """The tokens ``plain_greedy`` gives, with the shared prefix run once and finished rows dropped."""
    device = next(model.parameters()).device
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)  # [s]
    decoded: list[Decoded] = []
    for start in range(0, len(prompts), batch_size):
        rows = prompts[start:start + batch_size]
        logits, cache, mask, last_position = _prefill(model, rows, pad_token_id, device)
        tokens: list[list[int]] = [[] for _ in rows]
        ended = [False] * len(rows)
        alive = list(range(len(rows)))  # batch row of each cache row
        for step in range(max_new_tokens):
            chosen = logits.argmax(dim=-1)  # [a]
            stopped = torch.isin(chosen, stops)  # [a]
            for cache_row, (row, token, stop) in enumerate(zip(alive, chosen.tolist(), stopped.tolist())):
                if stop:
                    ended[row] = True
                else:
                    tokens[row].append(token)
            if step == max_new_tokens - 1:
                break
            keep = (~stopped).nonzero().flatten()  # [a']
            if keep.numel() == 0:
                break
            if keep.numel() < len(alive):  # drop finished rows from the cache and the batch
                cache.reorder_cache(keep)
                mask, last_position, chosen = mask[keep], last_position[keep], chosen[keep]
                alive = [alive[k] for k in keep.tolist()]
            mask = torch.cat([mask, mask.new_ones((len(alive), 1))], dim=1)  # [a, n + 1]
            last_position = last_position + 1  # [a]
            out = model(input_ids=chosen[:, None], attention_mask=mask, position_ids=last_position[:, None],
                        past_key_values=cache, use_cache=True)
            logits, cache = out.logits[:, -1], out.past_key_values  # [a, V]
        decoded.extend(Decoded(tokens=row_tokens, hit_limit=not row_ended)
                       for row_tokens, row_ended in zip(tokens, ended))
    return decoded
