"""The one training loop: loss masking, data order, learning."""

from __future__ import annotations

import torch

from rankscope.config import LoraSpec, TrainSpec
from rankscope.data.types import Example
from rankscope.models.arms import apply_lora, make_sft_copy, remove_lora
from rankscope.train.loop import IGNORE_INDEX, batch_schedule, encode_example, encode_examples, train_model

EXAMPLES = [Example(question=f"Mia has {a} apples and buys {b} more. How many apples?", answer=str(a + b))
            for a in range(2, 10) for b in range(2, 6)]


def test_loss_mask_covers_exactly_the_answer(tiny):
    encoded = encode_example(tiny.tokenizer, EXAMPLES[0], max_length=128)
    target = [t for t, label in zip(encoded.input_ids, encoded.labels) if label != IGNORE_INDEX]
    assert tiny.tokenizer.decode(target) == EXAMPLES[0].answer + tiny.tokenizer.eos_token
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(encoded.input_ids, encoded.labels))


def test_truncation_keeps_the_answer(tiny):
    encoded = encode_example(tiny.tokenizer, EXAMPLES[0], max_length=12)
    assert len(encoded.input_ids) == 12
    assert encoded.labels[-1] != IGNORE_INDEX


def test_schedule_is_seeded_and_covers_epochs():
    assert batch_schedule(10, 5, 4, seed=1) == batch_schedule(10, 5, 4, seed=1)
    assert batch_schedule(10, 5, 4, seed=1) != batch_schedule(10, 5, 4, seed=2)
    flat = [i for batch in batch_schedule(10, 5, 4, seed=0) for i in batch]
    assert sorted(flat[:10]) == list(range(10))  # a full epoch before any repeat


def _initial_loss(model, encoded, pad):
    from rankscope.train.loss import answer_token_loss, collate

    batch = collate(encoded[:16], pad, torch.device("cpu"))
    with torch.no_grad():
        return float(answer_token_loss(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits,
                                       batch["labels"]))


def test_short_lora_run_lowers_the_loss(tiny):
    encoded = encode_examples(tiny.tokenizer, EXAMPLES, 64)
    model = apply_lora(tiny.model, LoraSpec(ranks=[8]), rank=8, seed=0)
    before = _initial_loss(model, encoded, tiny.tokenizer.pad_token_id)
    result = train_model(model, encoded, TrainSpec(steps=25, batch_size=8, log_every=1), lr=1e-2, seed=0,
                         pad_token_id=tiny.tokenizer.pad_token_id)
    after = _initial_loss(model, encoded, tiny.tokenizer.pad_token_id)
    assert after < before
    assert result.loss_curve[-1][1] < result.loss_curve[0][1]
    assert result.trainable_params < result.total_params and result.tokens_per_s > 0
    remove_lora(model)


def test_short_sft_run_lowers_the_loss(tiny):
    encoded = encode_examples(tiny.tokenizer, EXAMPLES, 64)
    model = make_sft_copy(tiny.model)
    before = _initial_loss(model, encoded, tiny.tokenizer.pad_token_id)
    result = train_model(model, encoded, TrainSpec(steps=15, batch_size=8), lr=3e-3, seed=0,
                         pad_token_id=tiny.tokenizer.pad_token_id)
    assert _initial_loss(model, encoded, tiny.tokenizer.pad_token_id) < before
    assert result.trainable_params == result.total_params


def test_same_seed_same_training(tiny):
    encoded = encode_examples(tiny.tokenizer, EXAMPLES, 64)
    curves = []
    for _ in range(2):
        model = apply_lora(tiny.model, LoraSpec(ranks=[2], dropout=0.1), rank=2, seed=3)
        curves.append(train_model(model, encoded, TrainSpec(steps=5, batch_size=4, log_every=1), lr=1e-2, seed=3,
                                  pad_token_id=tiny.tokenizer.pad_token_id).loss_curve)
        remove_lora(model)
    assert curves[0] == curves[1]
