"""The shared-prefix forward equals a plain forward over the concatenated sequences.

Identities: same training loss and same gradients as padded batches (LoRA and full fine-tuning,
Llama- and Qwen2-style models), and the same choice log-likelihoods in multiple-choice scoring.
"""

from __future__ import annotations

import random

import pytest
import torch
from conftest import tiny_decoder

from rankscope.config import LoraSpec
from rankscope.models.arms import apply_lora, make_sft_copy
from rankscope.models.shared_prefix import common_prefix_length
from rankscope.train.loop import accumulate_batch_gradient
from rankscope.train.loss import (
    IGNORE_INDEX,
    EncodedExample,
    micro_batches,
    padded_answer_loss,
    pick_answer_loss,
    shared_prefix_answer_loss,
)

VOCAB = 97
PAD = 0


def build(kind: str):
    return tiny_decoder(kind, VOCAB)


def chat_like_batch(seed: int, rows: int = 5, system: int = 9) -> list[EncodedExample]:
    """Rows sharing a system prefix, then questions and answers of different lengths."""
    rng = random.Random(seed)
    prefix = [rng.randrange(1, VOCAB) for _ in range(system)]
    batch = []
    for _ in range(rows):
        question = [rng.randrange(1, VOCAB) for _ in range(rng.randint(3, 12))]
        answer = [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 7))]
        batch.append(EncodedExample(input_ids=prefix + question + answer,
                                    labels=[IGNORE_INDEX] * (system + len(question)) + answer))
    return batch


def test_common_prefix_length():
    assert common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert common_prefix_length([[5, 6], [5, 6]]) == 2
    assert common_prefix_length([[1], [2]]) == 0
    assert common_prefix_length([]) == 0


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("method", ["lora", "sft"])
def test_shared_prefix_loss_and_gradients_equal_padded(kind, method):
    base = build(kind)
    if method == "lora":
        model = apply_lora(base, LoraSpec(ranks=[4]), rank=4, seed=0)
        # B = 0 at init would make LoRA gradients trivially agree on A; move B off zero.
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(std=0.05)
    else:
        model = make_sft_copy(base)
    batch = chat_like_batch(seed=1)
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]

    def loss_and_grads(loss_fn):
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch, PAD)
        loss.backward()
        return loss.item(), {name: p.grad.clone() for name, p in trainable}

    plain_loss, plain_grads = loss_and_grads(padded_answer_loss)
    fast_loss, fast_grads = loss_and_grads(shared_prefix_answer_loss)
    assert fast_loss == pytest.approx(plain_loss, rel=1e-5)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fast_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_prefix_stops_before_the_first_predicted_answer_token():
    """Two identical prompts: the shared prefix must still leave the answer's predictor to the continuation."""
    model = build("llama")
    prompt, answer = [3, 4, 5, 6, 7, 8], [9, 10]
    same = EncodedExample(input_ids=prompt + answer, labels=[IGNORE_INDEX] * len(prompt) + answer)
    batch = [same, same]
    with torch.no_grad():
        assert shared_prefix_answer_loss(model, batch, PAD).item() == pytest.approx(
            padded_answer_loss(model, batch, PAD).item(), rel=1e-5)


def test_pick_answer_loss_uses_the_fast_path_when_it_agrees_and_falls_back_otherwise():
    model = build("qwen2")
    batch = chat_like_batch(seed=2)
    assert pick_answer_loss(model, batch, PAD, shared_prefix=True) is shared_prefix_answer_loss
    assert pick_answer_loss(model, batch, PAD, shared_prefix=False) is padded_answer_loss

    class NoCache(torch.nn.Module):
        """A model whose forward rejects the cache arguments, like some remote-code models."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask=None, use_cache=None):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask, use_cache=use_cache)

    assert pick_answer_loss(NoCache(model), batch, PAD, shared_prefix=True) is padded_answer_loss


def test_micro_batches_keep_every_row_once_and_group_similar_lengths():
    rng = random.Random(3)
    batch = [EncodedExample(input_ids=[1] * n, labels=[IGNORE_INDEX] * (n - 1) + [1])
             for n in [rng.choice([20, 21, 22, 300, 310]) for _ in range(8)]]
    groups = micro_batches(batch)
    assert sorted(id(item) for group in groups for item in group) == sorted(id(item) for item in batch)
    padded = sum(len(group) * max(len(item.input_ids) for item in group) for group in groups)
    assert padded < len(batch) * max(len(item.input_ids) for item in batch)  # long and short rows apart
    uniform = [EncodedExample(input_ids=[1] * 40, labels=[1] * 40) for _ in range(8)]
    assert len(micro_batches(uniform)) == 1  # nothing to save: one forward


@pytest.mark.parametrize("loss_fn", [padded_answer_loss, shared_prefix_answer_loss])
def test_micro_batched_gradient_equals_the_full_batch_gradient(loss_fn):
    model = make_sft_copy(build("llama"))
    batch = chat_like_batch(seed=4, rows=6)
    batch += [EncodedExample(input_ids=item.input_ids + [5] * 30, labels=item.labels + [5] * 30) for item in batch[:2]]
    assert len(micro_batches(batch)) > 1
    model.zero_grad(set_to_none=True)
    full = padded_answer_loss(model, batch, PAD)
    full.backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    value = accumulate_batch_gradient(model, batch, PAD, loss_fn)
    assert value == pytest.approx(full.item(), rel=1e-5)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[name], rtol=1e-4, atol=1e-6, msg=name)
