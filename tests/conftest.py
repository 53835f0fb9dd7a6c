"""Shared fixtures: a tiny Llama-style model and tokenizer built locally (no hub, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = [
    "What is the capital of France? Paris. Mia has 12 apples and buys 7 more. How many apples?",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 30 40 50 99 100",
    "Which number is the largest? Tom Ana Leo pens books coins cards shells box added taken",
    "the a an of to in is are does do have has now left more gives away found lost",
]


def build_tokenizer(chat: bool = True) -> PreTrainedTokenizerFast:
    specials = ["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>",
                                        pad_token="<pad>", bos_token="<|im_start|>")
    if chat:
        tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_decoder(kind: str, vocab_size: int):
    """A seeded 2-block Llama (``kind="llama"``) or Qwen2 decoder in eval mode: the two families the
    shared-prefix and decoding identities are checked on."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    if kind == "llama":
        return LlamaForCausalLM(LlamaConfig(**common)).eval()
    return Qwen2ForCausalLM(Qwen2Config(**common)).eval()


def build_tiny_model(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny model + tokenizer folder: loads through the same path as any local model."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = build_tokenizer()
    model = build_tiny_model(len(tokenizer))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture()
def tiny(tiny_model_dir):
    from rankscope.config import ModelSpec
    from rankscope.models.load import load_base_model

    return load_base_model(ModelSpec(id=str(tiny_model_dir)))


class OneLinearModel(nn.Module):
    """A model with one weight matrix where the analysis looks for it (``model.layers.0.proj``)."""

    def __init__(self, W: torch.Tensor):  # W: [out, in]
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([nn.Module()])
        self.model.layers[0].proj = nn.Linear(W.shape[1], W.shape[0], bias=False)
        with torch.no_grad():
            self.model.layers[0].proj.weight.copy_(W)


def one_linear_model(W: torch.Tensor) -> nn.Module:
    return OneLinearModel(W)
