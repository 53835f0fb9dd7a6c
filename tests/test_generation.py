"""The fast greedy decoder gives transformers' ``generate`` tokens, row for row.

Identity on Llama- and Qwen2-style models: the shared prefix run once, the rest of each prompt
left-padded after it, and finished rows dropped from the batch must not change a single token,
nor which rows stopped at the token limit. The evaluator's fast path is checked against the
plain one the same way.
"""

from __future__ import annotations

import random

import pytest
from conftest import tiny_decoder

from rankscope.data.types import Example
from rankscope.data.prompts import render_prompt
from rankscope.evaluate.generative import greedy_outputs, score_generative
from rankscope.evaluate import greedy, slack_cache
from rankscope.evaluate.greedy import Speedups, fast_greedy, left_pad, plain_greedy

VOCAB = 97
PAD = 0


def build(kind: str):
    return tiny_decoder(kind, VOCAB)


def chat_like_prompts(seed: int, n: int = 7, system: int = 9) -> list[list[int]]:
    """Prompts sharing a system prefix, then questions of different lengths."""
    rng = random.Random(seed)
    prefix = [rng.randrange(1, VOCAB) for _ in range(system)]
    return [prefix + [rng.randrange(1, VOCAB) for _ in range(rng.randint(2, 14))] for _ in range(n)]


def test_left_pad_puts_every_row_at_the_right_edge():
    values, mask = left_pad([[5, 6, 7], [8]], PAD)
    assert values.tolist() == [[5, 6, 7], [PAD, PAD, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("compact_at", [1, 16])
@pytest.mark.parametrize("slack", [1, 64])
def test_fast_greedy_equals_generate(kind, seed, compact_at, slack, monkeypatch):
    """Rows leave and new prompts join the running batch; compact_at=1 drops every unused cache column;
    slack=1 makes the key/value buffers fill up and move every other step."""
    monkeypatch.setattr(greedy, "COMPACT_AT", compact_at)
    monkeypatch.setattr(slack_cache, "SLACK", slack)
    model = build(kind)
    prompts = sorted(chat_like_prompts(seed, n=11), key=len)
    # Stop tokens the model really produces, at different steps of different rows, so rows leave
    # the batch at different times and some run to the limit.
    free = plain_greedy(model, prompts, max_new_tokens=8, stop_ids=set(), pad_token_id=PAD, batch_size=4)
    stop_ids = {free[0].tokens[2], free[-1].tokens[5], free[5].tokens[1]}
    plain = plain_greedy(model, prompts, max_new_tokens=8, stop_ids=stop_ids, pad_token_id=PAD, batch_size=4)
    fast = fast_greedy(model, prompts, max_new_tokens=8, stop_ids=stop_ids, pad_token_id=PAD, batch_size=4)
    assert fast == plain
    lengths = {len(row.tokens) for row in plain}
    assert len(lengths) > 1, "the rows should stop at different steps"
    assert any(not row.hit_limit for row in plain)
    assert all(len(row.tokens) == 8 for row in plain if row.hit_limit)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_fast_greedy_without_its_kernel_speedups_equals_generate(kind):
    """The loop alone (shared prefix, continuous batching) on the default kernels and growing cache."""
    model = build(kind)
    prompts = sorted(chat_like_prompts(3, n=9), key=len)
    free = plain_greedy(model, prompts, max_new_tokens=7, stop_ids=set(), pad_token_id=PAD, batch_size=3)
    stop_ids = {free[1].tokens[3], free[-1].tokens[1]}
    plain = plain_greedy(model, prompts, max_new_tokens=7, stop_ids=stop_ids, pad_token_id=PAD, batch_size=3)
    off = Speedups(packed_linears=False, slack_cache=False)
    assert fast_greedy(model, prompts, 7, stop_ids, PAD, batch_size=3, speedups=off) == plain


def test_fast_greedy_without_a_shared_prefix_equals_generate():
    model = build("llama")
    rng = random.Random(3)
    prompts = [[rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 6))] for _ in range(5)]
    plain = plain_greedy(model, prompts, max_new_tokens=5, stop_ids={1}, pad_token_id=PAD, batch_size=3)
    fast = fast_greedy(model, prompts, max_new_tokens=5, stop_ids={1}, pad_token_id=PAD, batch_size=3)
    assert fast == plain


def test_evaluator_fast_path_keeps_the_plain_predictions(tiny):
    examples = [Example(question=q, answer="7") for q in
                ["Mia has 12 apples and buys 7 more. How many apples?", "What is 3 + 4?",
                 "Tom has 5 pens, gives away 2. How many pens are left now?"]]
    fast = score_generative(tiny.model, tiny.tokenizer, examples, "number", batch_size=2, max_new_tokens=6)
    plain = score_generative(tiny.model, tiny.tokenizer, examples, "number", batch_size=2, max_new_tokens=6,
                             fast=False)
    assert fast == plain
    assert len(fast.predictions) == len(fast.truncated) == len(examples)
    # the flag is the decoder's: an item hit the limit exactly when it produced max_new_tokens tokens
    # without the end token
    prompts = [tiny.tokenizer(render_prompt(tiny.tokenizer, e.question), add_special_tokens=False)["input_ids"]
               for e in examples]
    decoded = greedy_outputs(tiny.model, tiny.tokenizer, prompts, batch_size=2, max_new_tokens=6)
    assert fast.truncated == [d.hit_limit for d in decoded]
    assert all(len(d.tokens) == 6 for d in decoded if d.hit_limit)
    assert all(len(d.tokens) < 6 for d in decoded if not d.hit_limit)


@pytest.mark.parametrize("target", [["q_proj", "v_proj"], ["q_proj", "lm_head"]])
def test_fast_greedy_on_a_lora_model_equals_generate(target):
    """A PeftModel (as LoRA arms are evaluated), adapters on attention and on the output head: the
    packed layers leave the LoRA wrappers alone and pack the plain layers inside them."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(build("llama"), LoraConfig(r=4, target_modules=target, init_lora_weights=False)).eval()
    prompts = sorted(chat_like_prompts(4, n=7), key=len)
    plain = plain_greedy(model, prompts, max_new_tokens=6, stop_ids={5}, pad_token_id=PAD, batch_size=3)
    assert fast_greedy(model, prompts, 6, {5}, PAD, batch_size=3) == plain
