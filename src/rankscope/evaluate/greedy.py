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
- a row leaves the batch when it produces an end token (its cache row is dropped) and the next
  prompt takes its place: it is prefilled on top of the prefix cache and joined to the running
  batch (continuous batching), so the batch stays full until the prompts run out. ``generate``
  keeps computing finished rows until the longest row of its batch ends, so a batch of answers of
  uneven length costs its longest answer times its size;
- the caller sorts prompts by length, so rows that decode together pad little;
- two kernel-level speedups (``Speedups``), each in its own module: decoding steps write their
  key/value columns in place (rankscope.evaluate.slack_cache) instead of copying the cache, and on
  a CPU the float32 linear layers run through oneDNN on weights packed once
  (rankscope.evaluate.packed_linear). The second changes the logits in the last bits, so a token
  can differ from ``generate``'s where its two best logits nearly tie (as between two batch sizes
  of ``generate`` itself).

Rows of different ages share one cache: a joining row's cache gets empty (masked) columns between
the prefix and its own prompt so that every row's last token sits in the last column; columns no
remaining row uses are dropped. Keys are cached with their rotary positions applied and positions
are passed explicitly, so a column's index carries no meaning, only the mask does. Only plain
growing caches (transformers' ``DynamicLayer``) are edited; with any other cache the loop runs
one batch at a time and only drops finished rows.

Both return, per prompt, the new tokens (end token excluded) and whether the row stopped at the
token limit rather than at an end token (``hit_limit``: the answer may be cut off).
``tests/test_generation.py`` checks that the two agree token for token on Llama- and Qwen2-style
models; ``bench/generate.py`` compares them on real prompts and counts near-ties apart. The
evaluator (rankscope.evaluate.generative) checks the two agree on a model's first prompts before
it uses the fast loop.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from transformers import GenerationConfig
from transformers.cache_utils import DynamicLayer

from rankscope.evaluate.packed_linear import packed_linears
from rankscope.evaluate.slack_cache import SlackLayer, use_slack_layers
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


def _layers(cache) -> list | None:
    """The cache's per-layer key/value stores when every one is a plain growing cache, else None."""
    layers = getattr(cache, "layers", None)
    if not layers or any(type(layer) not in (DynamicLayer, SlackLayer) or not layer.is_initialized for layer in layers):
        return None
    return layers


def _edit_columns(cache, edit) -> None:
    """Apply ``edit`` to every layer's keys and values ([b, heads, n, head_dim])."""
    for layer in cache.layers:
        layer.keys, layer.values = edit(layer.keys), edit(layer.values)


@dataclass(frozen=True)
class Speedups:
    """The fast decoder's kernel-level speedups, each on by default (``bench/generate.py --ablate`` times each).

    Neither changes which rows decode together or what they attend to. ``slack_cache`` changes
    nothing in the numbers; ``packed_linears`` changes the logits in the last bits, so a token can
    differ from ``generate``'s only where its two best logits nearly tie.
    """

    packed_linears: bool = True  # float32 linear layers through oneDNN with packed weights (CPU)
    slack_cache: bool = True  # key/value columns written in place instead of a copy per step


@dataclass
class _Batch:
    """The rows being decoded: one cache row, mask row and position per prompt."""

    rows: list[int]  # prompt index of each cache row
    cache: object  # the model's key/value cache, [a, heads, n, head_dim] per layer
    mask: torch.Tensor  # [a, n]: 1 where a cache column holds a token of that row
    last_position: torch.Tensor  # [a]: position id of each row's last token
    next_token: torch.Tensor  # [a]: each row's greedy next token

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the cache rows ``keep`` ([a'])."""
        self.cache.reorder_cache(keep)
        self.mask, self.last_position = self.mask[keep], self.last_position[keep]
        self.next_token = self.next_token[keep]
        self.rows = [self.rows[k] for k in keep.tolist()]

    def widen(self, width: int, at: int) -> None:
        """Insert empty (masked) cache columns at column ``at`` until the cache is ``width`` wide.

        Keys are cached with their rotary position already applied and positions are passed
        explicitly, so a token's column index carries no meaning: only the mask does.
        """
        gap = width - self.mask.shape[1]
        if gap <= 0:
            return

        def insert(tensor: torch.Tensor) -> torch.Tensor:  # [a, h, n, d] -> [a, h, n + gap, d]
            empty = tensor.new_zeros((*tensor.shape[:2], gap, tensor.shape[3]))
            return torch.cat([tensor[:, :, :at], empty, tensor[:, :, at:]], dim=2)

        _edit_columns(self.cache, insert)
        self.mask = torch.cat([self.mask[:, :at], self.mask.new_zeros((len(self.rows), gap)), self.mask[:, at:]], 1)

    def join(self, other: _Batch, at: int) -> None:
        """Add ``other``'s rows, both caches made equally wide by empty columns at ``at``."""
        width = max(self.mask.shape[1], other.mask.shape[1])
        self.widen(width, at)
        other.widen(width, at)
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([mine.keys, theirs.keys], dim=0)
            mine.values = torch.cat([mine.values, theirs.values], dim=0)
        self.rows += other.rows
        self.mask = torch.cat([self.mask, other.mask], dim=0)
        self.last_position = torch.cat([self.last_position, other.last_position])
        self.next_token = torch.cat([self.next_token, other.next_token])

    def compact(self) -> None:
        """Drop cache columns no remaining row attends to (left by rows that finished)."""
        used = self.mask.bool().any(dim=0).nonzero().flatten()  # [n']
        if self.mask.shape[1] - used.numel() >= COMPACT_AT:
            _edit_columns(self.cache, lambda tensor: tensor.index_select(2, used))
            self.mask = self.mask[:, used]


COMPACT_AT = 16  # unused cache columns worth a copy of the cache to drop


def _greedy_forward(model: torch.nn.Module, **inputs) -> tuple[object, torch.Tensor]:
    """One forward pass: the extended cache and each row's greedy next token ([a])."""
    out = model(**inputs, use_cache=True, logits_to_keep=1)
    return out.past_key_values, out.logits[:, -1].argmax(dim=-1)


def _prefill(model: torch.nn.Module, prompts: list[list[int]], indices: list[int], shared: int, prefix_cache,
             pad_token_id: int, device: torch.device) -> _Batch:
    """Run the prompts ``indices`` after the shared prefix (whose cache is ``prefix_cache``, or none)."""
    suffix_ids, suffix_mask = left_pad([prompts[k][shared:] for k in indices], pad_token_id)  # [b, S]
    # Positions count a row's real tokens: prefix 0..shared-1, then its own suffix tokens.
    positions = shared + (suffix_mask.cumsum(dim=1) - 1).clamp(min=0)  # [b, S]; pads reuse a real position
    cache, mask = None, suffix_mask
    if shared:
        cache = copy.deepcopy(prefix_cache)  # [1, ...]; the original stays for the next rows
        cache.reorder_cache(torch.zeros(len(indices), dtype=torch.long, device=device))  # [1, ...] -> [b, ...]
        mask = torch.cat([torch.ones((len(indices), shared), dtype=torch.long), suffix_mask], dim=1)  # [b, shared+S]
    cache, next_token = _greedy_forward(model, input_ids=suffix_ids.to(device), attention_mask=mask.to(device),
                                        position_ids=positions.to(device), past_key_values=cache)
    return _Batch(rows=list(indices), cache=cache, mask=mask.to(device), last_position=positions[:, -1].to(device),
                  next_token=next_token)


@torch.no_grad()
def fast_greedy(model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int, stop_ids: set[int],
                pad_token_id: int, batch_size: int, speedups: Speedups = Speedups()) -> list[Decoded]:
    """The tokens ``plain_greedy`` gives, with less work.

    The prompts' common prefix runs once; up to ``batch_size`` rows decode together; a row that
    ends leaves the batch and the next prompt takes its place (prefilled on top of the prefix
    cache and joined to the running batch), so the batch stays full until the prompts run out
    instead of waiting for its longest row. Prompts are taken in the order given.

    ``speedups`` switches the kernel-level speedups (see ``Speedups``), all on by default.
    """
    if not prompts:
        return []
    with packed_linears(model, enabled=speedups.packed_linears):
        return _decode(model, prompts, max_new_tokens, stop_ids, pad_token_id, batch_size, speedups.slack_cache)


def _decode(model: torch.nn.Module, prompts: list[list[int]], max_new_tokens: int,
            stop_ids: set[int], pad_token_id: int, batch_size: int, slack_cache: bool) -> list[Decoded]:
    """fast_greedy's loop: the shared prefix once, then continuous batching until every row has ended."""
    device = next(model.parameters()).device
    stops = torch.tensor(sorted(stop_ids), dtype=torch.long, device=device)  # [s]
    # The prefix may not take a row's last prompt token: its logits predict the first new token.
    shared = min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
    prefix_cache = None
    if shared >= MIN_SHARED_PREFIX:
        prefix_cache = model(input_ids=torch.tensor([prompts[0][:shared]], device=device), use_cache=True,
                             logits_to_keep=1).past_key_values
        if _layers(prefix_cache) is None:  # a cache this loop cannot widen or join: no shared prefix
            prefix_cache = None
    if prefix_cache is None:
        shared = 0
    tokens: list[list[int]] = [[] for _ in prompts]
    ended = [False] * len(prompts)
    pending = list(range(len(prompts)))[::-1]  # next prompt last
    batch: _Batch | None = None
    while pending or batch is not None:
        room = batch_size - (len(batch.rows) if batch else 0)
        if room > 0 and pending and (batch is None or _layers(batch.cache) is not None):
            joining = _prefill(model, prompts, [pending.pop() for _ in range(min(room, len(pending)))], shared,
                               prefix_cache, pad_token_id, device)
            if batch is None:
                batch = joining
                if slack_cache and _layers(batch.cache) is not None:
                    use_slack_layers(batch.cache)  # decoding steps write in place from here on
            else:
                batch.join(joining, at=shared)
        chosen = batch.next_token  # [a]
        stopped = torch.isin(chosen, stops)  # [a]
        done = []
        for row, token, stop in zip(batch.rows, chosen.tolist(), stopped.tolist()):
            if stop:
                ended[row] = True
            else:
                tokens[row].append(token)
            done.append(stop or len(tokens[row]) == max_new_tokens)
        keep = torch.tensor([k for k, finished in enumerate(done) if not finished], dtype=torch.long, device=device)
        if keep.numel() == 0:
            batch = None
            continue
        if keep.numel() < len(batch.rows):  # finished rows leave the batch
            batch.select(keep)
            chosen = chosen[keep]
            batch.compact()
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones((len(batch.rows), 1))], dim=1)  # [a, n + 1]
        batch.last_position = batch.last_position + 1  # [a]
        batch.cache, batch.next_token = _greedy_forward(model, input_ids=chosen[:, None], attention_mask=batch.mask,
                                                        position_ids=batch.last_position[:, None],
                                                        past_key_values=batch.cache)
    return [Decoded(tokens=row_tokens, hit_limit=not row_ended) for row_tokens, row_ended in zip(tokens, ended)]
