"""BOS as the tokenizer intends: a plain-frame prompt starts with BOS exactly once when the
tokenizer adds one by design (Llama-style), in training, multiple-choice scoring, generation and
the generic-text NLL; never with a chat template (it writes its own) or a tokenizer without BOS."""

from __future__ import annotations

import pytest
import torch
from tokenizers import processors
from transformers import PreTrainedTokenizerFast

from conftest import build_tiny_model, build_tokenizer
from rankscope.data.prompts import adds_bos, prompt_ids, render_prompt, with_bos
from rankscope.data.types import Example
from rankscope.evaluate.generative import score_generative
from rankscope.evaluate.multiple_choice import encode_questions, score_multiple_choice
from rankscope.evaluate.nll import text_chunks
from rankscope.train.loop import encode_example


def llama_style_tokenizer(chat: bool = False) -> PreTrainedTokenizerFast:
    """The conftest tokenizer with a ``<s>`` BOS and Llama's post-processor (``<s> $A``)."""
    base = build_tokenizer(chat=chat)
    base.add_special_tokens({"bos_token": "<s>"})
    backend = base.backend_tokenizer
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", base.bos_token_id)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>",
                                        pad_token="<pad>", bos_token="<s>")
    if chat:
        tokenizer.chat_template = base.chat_template
    return tokenizer


@pytest.fixture(scope="module")
def llama():
    tokenizer = llama_style_tokenizer()
    return tokenizer, build_tiny_model(len(tokenizer))


EXAMPLE = Example(question="What is the capital of France?", answer="Paris", choices=("Paris", "Tom", "Ana"), gold=0)


def bos_count(tokenizer, ids) -> int:
    return sum(1 for t in ids if t == tokenizer.bos_token_id)


def test_detects_bos_by_design():
    assert adds_bos(llama_style_tokenizer())
    assert not adds_bos(build_tokenizer(chat=False))  # byte-level BPE without a BOS post-processor


def test_plain_prompt_starts_with_one_bos(llama):
    tokenizer, _ = llama
    ids = prompt_ids(tokenizer, EXAMPLE.question)
    assert ids[0] == tokenizer.bos_token_id and bos_count(tokenizer, ids) == 1
    assert with_bos(tokenizer, ids) == ids  # never twice
    assert ids[1:] == tokenizer(f"Question: {EXAMPLE.question}\nAnswer:", add_special_tokens=False)["input_ids"]


def test_no_bos_added_with_chat_template_or_without_bos_by_design():
    chat = llama_style_tokenizer(chat=True)
    plain = build_tokenizer(chat=False)
    for tokenizer in (chat, plain):
        rendered = tokenizer(render_prompt(tokenizer, EXAMPLE.question), add_special_tokens=False)["input_ids"]
        assert prompt_ids(tokenizer, EXAMPLE.question) == rendered


def test_training_rows_start_with_one_bos_even_when_truncated(llama):
    tokenizer, _ = llama
    full = encode_example(tokenizer, EXAMPLE, max_length=256)
    assert full.input_ids[0] == tokenizer.bos_token_id and bos_count(tokenizer, full.input_ids) == 1
    cut = encode_example(tokenizer, EXAMPLE, max_length=8)
    assert len(cut.input_ids) <= 8 and cut.input_ids[0] == tokenizer.bos_token_id
    answer = [t for t, label in zip(cut.input_ids, cut.labels) if label != -100]
    assert answer == [t for t, label in zip(full.input_ids, full.labels) if label != -100]


def test_mc_prompts_start_with_one_bos_and_score_like_a_direct_forward(llama):
    tokenizer, model = llama
    (question,) = encode_questions(tokenizer, [EXAMPLE])
    assert question.prompt[0] == tokenizer.bos_token_id and bos_count(tokenizer, question.prompt) == 1
    scores = score_multiple_choice(model, tokenizer, [EXAMPLE])
    ids = question.prompt + question.choices[1]
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), dim=-1)
    n = len(question.choices[1])
    direct = sum(float(log_probs[len(ids) - n - 1 + t, ids[len(ids) - n + t]]) for t in range(n))
    assert scores.choice_logprobs[0][1] == pytest.approx(direct, abs=1e-4)


def test_generation_prompts_start_with_one_bos(llama, monkeypatch):
    tokenizer, model = llama
    seen = []
    original = model.generate

    def spy(**kwargs):
        seen.append(kwargs["input_ids"].clone())
        return original(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    examples = [EXAMPLE, Example(question="Which number is the largest of 12 and 7?", answer="12")]
    score_generative(model, tokenizer, examples, "text", batch_size=2, max_new_tokens=2)
    (batch,) = seen
    for row in batch.tolist():
        real = [t for t in row if t != tokenizer.pad_token_id]  # left padding
        assert real[0] == tokenizer.bos_token_id and bos_count(tokenizer, real) == 1


def test_nll_chunks_start_with_bos_only_when_intended(llama):
    tokenizer, _ = llama
    text = "the capital of France is Paris. " * 20
    chunks = text_chunks(tokenizer, text, max_tokens=60, chunk_tokens=16)
    assert all(c[0] == tokenizer.bos_token_id and bos_count(tokenizer, c) == 1 for c in chunks)
    plain = text_chunks(build_tokenizer(chat=False), text, max_tokens=60, chunk_tokens=16)
    assert sum(len(c) for c in plain) == 60
