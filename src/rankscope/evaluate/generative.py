"""Generative scoring: greedy decoding, answer extraction, exact match."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rankscope.data.answers import is_correct
from rankscope.data.prompts import render_prompt
from rankscope.data.types import AnswerType, Example


@dataclass(frozen=True)
class GenerationScores:
    correct: list[bool]
    predictions: list[str]


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
    prompts = [render_prompt(tokenizer, e.question) for e in examples]
    order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))
    predictions: list[str] = [""] * len(prompts)
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right edge of every row
    try:
        for start in tqdm(range(0, len(order), batch_size), desc=description, leave=False, disable=None):
            indices = order[start:start + batch_size]
            batch = tokenizer([prompts[k] for k in indices], return_tensors="pt", padding=True,
                              add_special_tokens=False).to(device)
            output = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
            new_tokens = output[:, batch["input_ids"].shape[1]:]  # [b, new]
            for k, text in zip(indices, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                predictions[k] = text.strip()
    finally:
        tokenizer.padding_side = previous_side
    correct = [is_correct(p, e, answer_type) for p, e in zip(predictions, examples)]
    return GenerationScores(correct=correct, predictions=predictions)
