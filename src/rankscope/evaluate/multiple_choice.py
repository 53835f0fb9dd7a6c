"""Multiple-choice scoring by summed log-likelihood of each choice (cloze style).

Each choice is scored as the continuation of the rendered prompt; the prediction is the choice
with the highest summed token log-probability (lm-evaluation-harness's ``acc``). ``acc_norm``
divides each choice's log-likelihood by the UTF-8 byte length of the choice text first, so a long
choice is not penalised for its length (lm-evaluation-harness's ``acc_bytes``; its ``acc_norm``
divides by characters, the same number for ASCII choices). We also keep the
margin of the gold choice over the best other choice: knowledge drift shows in the margin long
before accuracy moves.

The prompt is shared by all choices of a question, so it runs once per question and every choice
continues from its cache (rankscope.models.shared_prefix); the output head runs only where a
choice token is predicted. lm-evaluation-harness runs the prompt once per choice and the head at
every position; ``bench/eval_mc.py`` compares the two on the same items. The plain computation
(``_plain_logprobs``) stays as the reference the fast one is checked against once per model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rankscope.data.prompts import continuation, prompt_ids
from rankscope.data.types import Example
from rankscope.evaluate.lm_eval_scoring import encode_verbatim
from rankscope.models.shared_prefix import forward_after_prefix, right_pad, verified_for_model

LOGIT_ROWS_PER_FORWARD = 1024  # choice positions per forward: bounds the [rows, k, vocab] logits


@dataclass(frozen=True)
class ChoiceScores:
    correct: list[bool]
    correct_norm: list[bool]  # argmax of log-likelihood per byte of the choice text (acc_norm)
    margins: list[float]  # log p(gold) - max over other choices of log p(choice)
    choice_logprobs: list[list[float]]


@dataclass(frozen=True)
class EncodedQuestion:
    prompt: list[int]  # token ids of the rendered prompt
    choices: list[list[int]]  # token ids of each choice as it continues the prompt


def encode_questions(tokenizer: PreTrainedTokenizerBase, examples: list[Example]) -> list[EncodedQuestion]:
    encoded = []
    for i, example in enumerate(examples):
        if not example.choices or example.gold is None:
            raise ValueError(f"example {example.uid or i} has no choices/gold; it cannot be scored as multiple choice")
        if example.prompt is not None and example.continuations is not None:  # the task's own prompt (lm-eval)
            verbatim_prompt, choice_ids = encode_verbatim(tokenizer, example)
            encoded.append(EncodedQuestion(prompt=verbatim_prompt, choices=choice_ids))
            continue
        prompt = prompt_ids(tokenizer, example.question)
        choices = [tokenizer(continuation(tokenizer, choice), add_special_tokens=False)["input_ids"]
                   for choice in example.choices]
        encoded.append(EncodedQuestion(prompt=prompt, choices=choices))
    return encoded


def _plain_logprobs(model: PreTrainedModel, questions: list[EncodedQuestion], batch_size: int, pad_id: int,
                    description: str) -> list[list[float]]:
    """One right-padded sequence per (question, choice), logits at every position."""
    device = next(model.parameters()).device
    pairs = [(i, j, q.prompt + c, len(c)) for i, q in enumerate(questions) for j, c in enumerate(q.choices)]
    logprobs = [[0.0] * len(q.choices) for q in questions]
    order = sorted(range(len(pairs)), key=lambda k: len(pairs[k][2]))  # similar lengths pad less
    for start in tqdm(range(0, len(order), batch_size), desc=description, leave=False, disable=None):
        chunk = [pairs[k] for k in order[start:start + batch_size]]
        input_ids, attention_mask = right_pad([ids for _, _, ids, _ in chunk], pad_id)  # [b, n]
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False).logits
        log_probs = torch.log_softmax(logits.float(), dim=-1)  # [b, n, V]
        for row, (i, j, ids, n_choice) in enumerate(chunk):
            end = len(ids)
            targets = torch.tensor(ids[end - n_choice:end], device=log_probs.device)  # [c]
            # token t is predicted by position t-1
            token_lp = log_probs[row, end - n_choice - 1:end - 1].gather(-1, targets[:, None]).squeeze(-1)
            logprobs[i][j] = float(token_lp.sum())
    return logprobs


def _question_chunks(questions: list[EncodedQuestion], order: list[int], batch_size: int) -> list[list[int]]:
    """Up to ``batch_size`` questions per forward, fewer when their choices would make the logits too large."""
    chunks: list[list[int]] = []
    current: list[int] = []
    rows = width = 0
    for i in order:
        q_rows, q_width = len(questions[i].choices), max(len(c) for c in questions[i].choices)
        if current and (len(current) == batch_size
                        or (rows + q_rows) * max(width, q_width) > LOGIT_ROWS_PER_FORWARD):
            chunks.append(current)
            current, rows, width = [], 0, 0
        current.append(i)
        rows, width = rows + q_rows, max(width, q_width)
    if current:
        chunks.append(current)
    return chunks


def _shared_prompt_logprobs(model: PreTrainedModel, questions: list[EncodedQuestion], batch_size: int,
                            pad_id: int, description: str) -> list[list[float]]:
    """Each prompt once (without its last token), then every choice as ``[last prompt token] + choice``.

    Starting the continuation at the prompt's last token puts every logit the score needs (the
    one predicting the choice's first token included) in the continuation's forward.
    """
    logprobs = [[0.0] * len(q.choices) for q in questions]
    order = sorted(range(len(questions)), key=lambda i: len(questions[i].prompt))  # similar prompts pad less
    for chunk in tqdm(_question_chunks(questions, order, batch_size), desc=description, leave=False, disable=None):
        rows = [(slot, i, j) for slot, i in enumerate(chunk) for j in range(len(questions[i].choices))]
        continuations = [[questions[i].prompt[-1]] + questions[i].choices[j] for _, i, j in rows]
        width = max(len(c) for c in continuations)
        logits = forward_after_prefix(
            model,
            prefixes=[questions[i].prompt[:-1] for i in chunk],
            prefix_of_row=[slot for slot, _, _ in rows],
            continuations=continuations,
            keep=torch.arange(width - 1),
            pad_token_id=pad_id,
        )  # [rows, width - 1, V]; position t predicts continuation token t + 1
        targets, _ = right_pad([tokens[1:] for tokens in continuations], -100)  # [rows, width - 1]
        token_lp = -torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), targets.to(logits.device), ignore_index=-100, reduction="none"
        )  # [rows, width - 1]; 0 where ignored
        sums = token_lp.sum(dim=1).tolist()
        for row, (_, i, j) in enumerate(rows):
            logprobs[i][j] = sums[row]
    return logprobs


@torch.no_grad()
def choice_logprobs(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, examples: list[Example],
                    batch_size: int = 16, description: str = "mc", shared_prompt: bool = True) -> list[list[float]]:
    """Summed log-probability of every choice of every example (batch_size: questions per forward)."""
    questions = encode_questions(tokenizer, examples)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    usable = [q for q in questions if len(q.prompt) >= 2]

    def agrees() -> bool:
        sample = usable[:2]
        fast = _shared_prompt_logprobs(model, sample, batch_size, pad_id, "check")
        plain = _plain_logprobs(model, sample, batch_size, pad_id, "check")
        return all(abs(a - b) <= 1e-3 * max(1.0, abs(b))
                   for fast_row, plain_row in zip(fast, plain) for a, b in zip(fast_row, plain_row))

    if (shared_prompt and len(usable) == len(questions)
            and verified_for_model(model, "multiple-choice scoring", agrees)):
        return _shared_prompt_logprobs(model, questions, batch_size, pad_id, description)
    return _plain_logprobs(model, questions, batch_size * 4, pad_id, description)


@torch.no_grad()
def score_multiple_choice(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[Example],
    batch_size: int = 16,
    description: str = "mc",
) -> ChoiceScores:
    logprobs = choice_logprobs(model, tokenizer, examples, batch_size, description)
    correct, correct_norm, margins = [], [], []
    for example, scores in zip(examples, logprobs):
        gold = example.gold
        best_other = max(s for j, s in enumerate(scores) if j != gold) if len(scores) > 1 else float("-inf")
        correct.append(max(range(len(scores)), key=scores.__getitem__) == gold)
        per_byte = [s / max(1, len(choice.encode("utf-8"))) for s, choice in zip(scores, example.choices)]
        correct_norm.append(max(range(len(per_byte)), key=per_byte.__getitem__) == gold)
        margins.append(scores[gold] - best_other)
    return ChoiceScores(correct=correct, correct_norm=correct_norm, margins=margins, choice_logprobs=logprobs)
