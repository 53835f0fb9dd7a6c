"""Generative scoring: greedy decoding, answer extraction, exact match."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rankscope.data.answers import is_correct
from rankscope.data.prompts import prompt_ids
from rankscope.data.types import AnswerType, Example


@dataclass(frozen=True)
class GenerationScores:
    """Per-item outcomes, in the order of the examples (per-item records are written from these).

    truncated: the generation reached ``max_new_tokens`` without an end token, so the answer may
    be cut off; a set where many are is scored on format, not skill (the report warns).
    """

    correct: list[bool]
    predictions: list[str]
    truncated: list[bool]


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
def score_generative(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    answer_type: AnswerType,
    batch_size: int = 16,
    max_new_tokens: int = 24,
    description: str = "gen",
) -> GenerationScores:
    device = next(model.parameters()).device
    prompts = [prompt_ids(tokenizer, e.question) for e in examples]
    order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))
    predictions: list[str] = [""] * len(prompts)
    truncated: list[bool] = [False] * len(prompts)
    stops = stop_token_ids(model, tokenizer)
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right edge of every row
    try:
        for start in tqdm(range(0, len(order), batch_size), desc=description, leave=False, disable=None):
            indices = order[start:start + batch_size]
            batch = tokenizer.pad({"input_ids": [prompts[k] for k in indices]}, return_tensors="pt").to(device)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=stops)
            new_tokens = output[:, batch["input_ids"].shape[1]:]  # [b, new]
            # A row that stopped holds a stop token (then padding); one without any ran to the limit.
            stopped = torch.isin(new_tokens, torch.tensor(stops, device=new_tokens.device)).any(dim=1)  # [b]
            for row, (k, text) in enumerate(zip(indices, tokenizer.batch_decode(new_tokens, skip_special_tokens=True))):
                predictions[k] = text.strip()
                truncated[k] = not bool(stopped[row]) and new_tokens.shape[1] >= max_new_tokens
    finally:
        tokenizer.padding_side = previous_side
    correct = [is_correct(p, e, answer_type) for p, e in zip(predictions, examples)]
    return GenerationScores(correct=correct, predictions=predictions, truncated=truncated)
