"""Multiple-choice scoring by summed log-likelihood of each choice (cloze style).

Each choice is scored as the continuation of the rendered prompt; the prediction is the choice
with the highest summed token log-probability (lm-evaluation-harness's ``acc``). We also keep the
margin of the gold choice over the best other choice: knowledge drift shows in the margin long
before accuracy moves.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rankscope.data.prompts import continuation, render_prompt
from rankscope.data.types import Example


@dataclass(frozen=True)
class ChoiceScores:
    correct: list[bool]
    margins: list[float]  # log p(gold) - max over other choices of log p(choice)
    choice_logprobs: list[list[float]]


def _pairs(tokenizer: PreTrainedTokenizerBase, examples: list[Example]) -> list[tuple[int, int, list[int], int]]:
    """(example index, choice index, token ids of prompt + choice, number of choice tokens)."""
    pairs = []
    for i, example in enumerate(examples):
        if not example.choices or example.gold is None:
            raise ValueError(f"example {example.uid or i} has no choices/gold; it cannot be scored as multiple choice")
        prompt_ids = tokenizer(render_prompt(tokenizer, example.question), add_special_tokens=False)["input_ids"]
        for j, choice in enumerate(example.choices):
            choice_ids = tokenizer(continuation(tokenizer, choice), add_special_tokens=False)["input_ids"]
            pairs.append((i, j, prompt_ids + choice_ids, len(choice_ids)))
    return pairs


@torch.no_grad()
def score_multiple_choice(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    batch_size: int = 16,
    description: str = "mc",
) -> ChoiceScores:
    device = next(model.parameters()).device
    pairs = _pairs(tokenizer, examples)
    logprobs: list[list[float]] = [[0.0] * len(e.choices or ()) for e in examples]
    order = sorted(range(len(pairs)), key=lambda k: len(pairs[k][2]))  # similar lengths pad less
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in tqdm(range(0, len(order), batch_size), desc=description, leave=False, disable=None):
        chunk = [pairs[k] for k in order[start:start + batch_size]]
        width = max(len(ids) for _, _, ids, _ in chunk)
        input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)  # [b, n]
        attention_mask = torch.zeros((len(chunk), width), dtype=torch.long)  # [b, n]
        for row, (_, _, ids, _) in enumerate(chunk):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention_mask[row, :len(ids)] = 1
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # [b, n, V]
        for row, (i, j, ids, n_choice) in enumerate(chunk):
            end = len(ids)
            targets = torch.tensor(ids[end - n_choice:end], device=log_probs.device)  # [c]
            # token t is predicted by position t-1
            token_lp = log_probs[row, end - n_choice - 1:end - 1].gather(-1, targets[:, None]).squeeze(-1)
            logprobs[i][j] = float(token_lp.sum())
    correct, margins = [], []
    for example, scores in zip(examples, logprobs):
        gold = example.gold
        best_other = max(s for j, s in enumerate(scores) if j != gold) if len(scores) > 1 else float("-inf")
        correct.append(max(range(len(scores)), key=scores.__getitem__) == gold)
        margins.append(scores[gold] - best_other)
    return ChoiceScores(correct=correct, margins=margins, choice_logprobs=logprobs)
