"""Scoring identities on the tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from rankscope.data.prompts import continuation, render_prompt
from rankscope.data.types import Example
from rankscope.evaluate.generative import score_generative
from rankscope.evaluate.metrics import auto_primary_metric, mean_with_stderr
from rankscope.evaluate.multiple_choice import score_multiple_choice

MC = [Example(question=f"Which is {w}?", answer=c[g], choices=c, gold=g, uid=str(i))
      for i, (w, c, g) in enumerate([
          ("the capital of France", ("Paris", "Tom", "apples"), 0),
          ("a number", ("pens", "12", "box added", "the"), 1),
          ("a name", ("7", "Leo", "coins"), 1),
          ("more", ("left", "gives away", "found lost now"), 2),
      ])]


def test_mc_accuracy_is_margin_positive(tiny):
    scores = score_multiple_choice(tiny.model, tiny.tokenizer, MC, batch_size=3)
    for correct, margin in zip(scores.correct, scores.margins):
        assert correct == (margin > 0)


def test_acc_norm_is_the_argmax_of_loglikelihood_per_byte(tiny):
    scores = score_multiple_choice(tiny.model, tiny.tokenizer, MC, batch_size=3)
    for example, logprobs, norm in zip(MC, scores.choice_logprobs, scores.correct_norm):
        per_byte = [lp / len(c.encode("utf-8")) for lp, c in zip(logprobs, example.choices)]
        assert norm == (max(range(len(per_byte)), key=per_byte.__getitem__) == example.gold)
    same_length = [Example(question="Pick one", answer="ab", choices=("ab", "cd", "ef"), gold=0, uid="s")]
    equal = score_multiple_choice(tiny.model, tiny.tokenizer, same_length, batch_size=3)
    assert equal.correct_norm == equal.correct  # dividing by one length changes no argmax
    assert auto_primary_metric("mc", same_length) == "accuracy"
    assert auto_primary_metric("mc", MC) == "acc_norm"
    assert auto_primary_metric("generative", MC) == "accuracy"


def test_mc_logprob_matches_a_direct_forward(tiny):
    """The batched, length-sorted scorer equals one unpadded forward per choice."""
    scores = score_multiple_choice(tiny.model, tiny.tokenizer, MC, batch_size=5)
    tok = tiny.tokenizer
    for example, logprobs in zip(MC, scores.choice_logprobs):
        prompt = tok(render_prompt(tok, example.question), add_special_tokens=False)["input_ids"]
        for choice, batched in zip(example.choices, logprobs):
            cont = tok(continuation(tok, choice), add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + cont])
            with torch.no_grad():
                lp = torch.log_softmax(tiny.model(input_ids=ids).logits.float(), -1)[0]
            direct = sum(float(lp[len(prompt) + k - 1, t]) for k, t in enumerate(cont))
            assert batched == pytest.approx(direct, abs=1e-4)


def test_generation_is_batch_invariant(tiny):
    examples = [Example(question=q, answer="12") for q in ("Mia has 12 apples.", "What is 7?", "Tom has more pens")]
    one = score_generative(tiny.model, tiny.tokenizer, examples, "number", batch_size=1, max_new_tokens=5)
    many = score_generative(tiny.model, tiny.tokenizer, examples, "number", batch_size=3, max_new_tokens=5)
    assert one.predictions == many.predictions


def test_stderr_identity():
    metric = mean_with_stderr([1.0, 0.0, 1.0, 1.0])
    p, n = 0.75, 4
    assert metric.value == p and metric.n == n
    assert metric.stderr == pytest.approx(math.sqrt(p * (1 - p) / (n - 1)))
    assert mean_with_stderr([0.5]).stderr == 0.0


@pytest.mark.parametrize("batch_size", [1, 2, 16])
def test_shared_prompt_scoring_equals_one_sequence_per_choice(tiny, batch_size):
    """Prompts of different lengths in one forward, run once each: same log-probs as the plain scorer."""
    from rankscope.evaluate.multiple_choice import _plain_logprobs, _shared_prompt_logprobs, encode_questions

    questions = encode_questions(tiny.tokenizer, MC)
    pad = tiny.tokenizer.pad_token_id
    with torch.no_grad():
        fast = _shared_prompt_logprobs(tiny.model, questions, batch_size, pad, "fast")
        plain = _plain_logprobs(tiny.model, questions, batch_size, pad, "plain")
    for fast_row, plain_row in zip(fast, plain):
        assert fast_row == pytest.approx(plain_row, abs=1e-4)


def test_question_chunks_bound_the_logits():
    from rankscope.evaluate.multiple_choice import LOGIT_ROWS_PER_FORWARD, EncodedQuestion, _question_chunks

    questions = [EncodedQuestion(prompt=[1, 2, 3], choices=[[4] * (1 + i % 50)] * 4) for i in range(300)]
    chunks = _question_chunks(questions, list(range(300)), batch_size=64)
    assert sorted(i for chunk in chunks for i in chunk) == list(range(300))
    for chunk in chunks:
        assert len(chunk) <= 64
        rows = sum(len(questions[i].choices) for i in chunk)
        width = max(len(c) for i in chunk for c in questions[i].choices)
        assert len(chunk) == 1 or rows * width <= LOGIT_ROWS_PER_FORWARD
