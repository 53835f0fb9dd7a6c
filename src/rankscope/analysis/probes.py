"""Analysis probes: tokenized question-and-answer dialogues and which of their tokens are content.

Why not the rendered evaluation prompts: cut at 64 tokens they were mostly chat template (the
SmolLM2 template alone is 31 tokens, its system part identical in every probe), so CKA and the
attention statistics measured drift on boilerplate (issue 13). A probe is now a dialogue of
consecutive evaluated examples, each a question turn and its answer turn, rendered exactly as the
model sees chat turns (``apply_chat_template``; without a chat template the plain
``Question: ...\\nAnswer: ...`` frame of :mod:`rankscope.data.prompts`), packed until it holds
``max_length`` tokens (then cut there). ``content_mask`` marks the tokens whose characters lie in a
question or an answer (from the fast tokenizer's offset mapping); every other real token (role
markers, system prompt, separators, BOS) is template and is masked out of CKA and attention
statistics (:mod:`rankscope.analysis.probe_pass`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from rankscope.data.prompts import continuation, has_chat_template, render_prompt
from rankscope.data.types import Example


@dataclass(frozen=True)
class Probes:
    """Tokenized probes, right padded.

    ``input_ids [b, n]`` (long), ``attention_mask [b, n]`` (1 = real token), ``content_mask
    [b, n]`` (1 = a question/answer token, 0 = template or padding; None: every real token is
    content, e.g. for hand-made probes).
    """

    input_ids: Tensor
    attention_mask: Tensor
    content_mask: Tensor | None = None

    @classmethod
    def of(cls, probes: Any) -> "Probes":
        """Accept a :class:`Probes`, a mapping with ``input_ids``/``attention_mask`` (and optionally
        ``content_mask``), or an ``(input_ids, attention_mask)`` pair."""
        if isinstance(probes, Probes):
            return probes
        content = None
        if isinstance(probes, Mapping) or hasattr(probes, "keys"):
            ids, mask = probes["input_ids"], probes.get("attention_mask")
            content = probes.get("content_mask")
        elif isinstance(probes, (tuple, list)) and len(probes) == 2:
            ids, mask = probes
        else:
            ids, mask = getattr(probes, "input_ids", None), getattr(probes, "attention_mask", None)
            content = getattr(probes, "content_mask", None)
        if ids is None:
            raise ValueError("probes need input_ids [b, n] (and attention_mask [b, n])")
        ids = torch.as_tensor(ids).to("cpu")
        mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).to("cpu")
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"probes: input_ids {tuple(ids.shape)} and attention_mask {tuple(mask.shape)} must both be [b, n]")
        if content is not None:
            content = torch.as_tensor(content).to("cpu")
            if content.shape != ids.shape:
                raise ValueError(f"probes: content_mask {tuple(content.shape)} must match input_ids {tuple(ids.shape)}")
            content = (content.bool() & mask.bool()).long()
        return cls(ids.long(), mask.long(), content)

    def content(self) -> Tensor:
        """``[b, n]`` bool: real content tokens (every real token when no content mask was given)."""
        real = self.attention_mask.bool()
        return real if self.content_mask is None else self.content_mask.bool() & real

    def equals(self, other: "Probes") -> bool:
        """Same tokens, padding and content positions (what every arm must share with the base)."""
        same = torch.equal(self.input_ids, other.input_ids) and torch.equal(self.attention_mask, other.attention_mask)
        return same and torch.equal(self.content(), other.content())


def render_dialogue(tokenizer: Any, pairs: Sequence[tuple[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """Render question/answer pairs as one dialogue; return the text and each content's char span.

    With a chat template: alternating user/assistant turns through ``apply_chat_template`` (the
    template may add a system prompt once). Without: the plain frame of
    :func:`~rankscope.data.prompts.render_prompt` plus the answer, pairs separated by a blank line.
    Spans are found in order in the rendered text (a template may trim whitespace, so the
    stripped content is searched).
    """
    if has_chat_template(tokenizer):
        messages = [m for q, a in pairs for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
    else:
        text = "\n\n".join(render_prompt(tokenizer, q) + continuation(tokenizer, a) for q, a in pairs)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for q, a in pairs:
        for part in (q, a):
            needle = part.strip()
            if not needle:
                continue
            start = text.find(needle, cursor)
            if start < 0:
                raise ValueError(
                    f"analysis probes: the rendered dialogue does not contain the text {needle[:40]!r}; "
                    "the chat template rewrites message content, so template tokens cannot be located"
                )
            spans.append((start, start + len(needle)))
            cursor = start + len(needle)
    return text, spans


def _round_robin(pools: Sequence[Sequence[Example]]) -> list[Example]:
    out: list[Example] = []
    longest = max((len(pool) for pool in pools), default=0)
    for index in range(longest):
        out.extend(pool[index] for pool in pools if index < len(pool))
    return out


def _encode(tokenizer: Any, text: str, spans: list[tuple[int, int]], max_length: int) -> tuple[list[int], list[int]]:
    """Token ids (cut at ``max_length``) and a 0/1 content flag per token."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("analysis probes need a fast tokenizer (offset mapping) to locate template tokens")
    enc = tokenizer(text, add_special_tokens=not has_chat_template(tokenizer), return_offsets_mapping=True,
                    truncation=True, max_length=max_length)
    flags = [int(end > start and any(start < s_end and end > s_start for s_start, s_end in spans))
             for start, end in enc["offset_mapping"]]
    return list(enc["input_ids"]), flags


def build_probes(tokenizer: Any, pools: Sequence[Sequence[Example]], *, size: int, max_length: int) -> Probes:
    """``size`` probes of up to ``max_length`` tokens from the examples of ``pools`` (one per set).

    Examples are taken round robin over the sets (first example of each set, then the second, ...)
    and packed, in that order, into dialogues until each holds ``max_length`` tokens; fixed by the
    data seed that ordered the pools, so every arm sees the same probes. Fewer probes when the
    examples run out. Right padded with the tokenizer's pad token.
    """
    stream = _round_robin(pools)
    if not stream:
        raise ValueError("analysis probes: the evaluated sets have no test examples")
    rows: list[tuple[list[int], list[int]]] = []
    position = 0
    while len(rows) < size and position < len(stream):
        pairs: list[tuple[str, str]] = []
        while position < len(stream):
            example = stream[position]
            position += 1
            pairs.append((example.question, example.answer))
            ids, flags = _encode(tokenizer, *render_dialogue(tokenizer, pairs), max_length)
            if len(ids) >= max_length:
                break
        rows.append((ids, flags))
    n = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    input_ids = torch.full((len(rows), n), int(pad), dtype=torch.long)
    attention_mask = torch.zeros(len(rows), n, dtype=torch.long)
    content_mask = torch.zeros(len(rows), n, dtype=torch.long)
    for i, (ids, flags) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[i, : len(ids)] = 1
        content_mask[i, : len(ids)] = torch.tensor(flags, dtype=torch.long)
    return Probes(input_ids, attention_mask, content_mask)


__all__ = ["Probes", "build_probes", "render_dialogue"]
