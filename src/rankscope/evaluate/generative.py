"""Generative scoring: greedy decoding, answer extraction, exact match.

Decoding uses the fast greedy loop (rankscope.evaluate.greedy: the shared system turn run once
per batch, finished rows replaced by waiting prompts, and kernel-level speedups) after checking
once per model that it reproduces transformers' ``generate`` on the first prompts; ``generate``
itself stays as the reference and the fallback (like the multiple-choice scorer's plain path).
``bench/generate.py`` compares the two.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rankscope.data.answers import is_correct
from rankscope.data.prompts import prompt_ids
from rankscope.data.types import AnswerType, Example
from rankscope.evaluate.greedy import Decoded, Speedups, fast_greedy, plain_greedy
from rankscope.models.shared_prefix import verified_for_model

CHECK_PROMPTS = 3  # prompts the fast decoder is checked on (once per model)
CHECK_NEW_TOKENS = 8


@dataclass(frozen=True)
class GenerationScores:
    """Per-item outcomes, in the order of the examples (per-item records are written from these).

    truncated: the generation reached ``max_new_tokens`` without an end token, so the answer may
    be cut off; a set where many are is scored on format, not skill (the report warns).
    """

    correct: list[bool]
    predictions: list[str]
    truncated: list[bool] = field(default_factory=list)


def stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids generation stops at: the tokenizer's EOS and the model's generation config's."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, configured):
        for token in (value if isinstance(value, (list, tuple)) else [value]):
            if token is not None and token not in ids:
                ids.append(int(token))
    return ids


@torch.no_grad()
def greedy_outputs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[list[int]],
                   batch_size: int, max_new_tokens: int, fast: bool = True, description: str = "gen",
                   speedups: Speedups = Speedups()) -> list[Decoded]:
    """Greedy continuations of ``prompts`` (token ids), in their order; batches hold prompts of similar length.

    ``fast``: the fast loop (after its check against ``generate``), with ``speedups``; else ``generate``.
    """
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    stops = set(stop_token_ids(model, tokenizer))
    order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))  # similar lengths pad less

    def agrees() -> bool:
        sample = [prompts[k] for k in order[:CHECK_PROMPTS]]
        limit = min(CHECK_NEW_TOKENS, max_new_tokens)
        # batches of 2 over 3 prompts: the fast loop refills its batch, as it does on the whole set
        return (fast_greedy(model, sample, limit, stops, pad_id, 2)
                == plain_greedy(model, sample, limit, stops, pad_id, 2))

    sorted_prompts = [prompts[k] for k in order]
    if fast and prompts and verified_for_model(model, "generation", agrees):
        # one call: the decoder keeps its batch full, refilling it from the prompts in order
        decoded = fast_greedy(model, sorted_prompts, max_new_tokens, stops, pad_id, batch_size, speedups)
    else:
        decoded = []
        for start in tqdm(range(0, len(order), batch_size), desc=description, leave=False, disable=None):
            decoded += plain_greedy(model, sorted_prompts[start:start + batch_size], max_new_tokens, stops, pad_id,
                                    batch_size)
    outputs: list[Decoded | None] = [None] * len(prompts)
    for k, item in zip(order, decoded):
        outputs[k] = item
    return outputs  # type: ignore[return-value]


@torch.no_grad()
def score_generative(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    answer_type: AnswerType,
    batch_size: int = 16,
    max_new_tokens: int = 24,
    description: str = "gen",
    fast: bool = True,
) -> GenerationScores:
    prompts = [prompt_ids(tokenizer, e.question) for e in examples]
    decoded = greedy_outputs(model, tokenizer, prompts, batch_size, max_new_tokens, fast, description)
    predictions = [text.strip() for text in
                   tokenizer.batch_decode([d.tokens for d in decoded], skip_special_tokens=True)]
    correct = [is_correct(p, e, answer_type) for p, e in zip(predictions, examples)]
    return GenerationScores(correct=correct, predictions=predictions, truncated=[d.hit_limit for d in decoded])
