"""Continuous forgetting: mean per-token negative log-likelihood of generic text.

Accuracy on a few hundred questions moves in steps of a fraction of a point and says nothing
until a fact flips; the cross-entropy of text no arm trained on moves with every change to the
model's language modelling. Biderman et al. (2024, "LoRA Learns Less and Forgets Less") measure
forgetting this way in spirit, and PEFT's method comparison reports the change in cross-entropy
on generic text against the base model; ``nll_delta`` (arm minus base) is that number.

The text is tokenized once, cut to ``max_tokens`` and split into fixed chunks of
``chunk_tokens``; each chunk is one sequence (BOS first where the tokenizer adds one by design,
so the chunk's first token is predicted too), scored in one forward pass with the output head at
every position. The chunks are the same for every arm, so per-chunk differences pair exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rankscope.config import NllSpec
from rankscope.data.generic_text import read_generic_text
from rankscope.data.prompts import adds_bos
from rankscope.evaluate.metrics import MetricValue, mean_with_stderr

CHUNKS_PER_FORWARD = 4  # bounds the [chunks, chunk_tokens, vocab] fp32 logits (~200 MB for SmolLM2 at 256)


@dataclass(frozen=True)
class NllResult:
    """Per-chunk summed NLL and predicted-token counts; the mean is token-weighted."""

    source: str
    chunk_nll: list[float]  # summed -log p over the chunk's predicted tokens
    chunk_tokens: list[int]  # predicted tokens per chunk

    @property
    def tokens(self) -> int:
        return sum(self.chunk_tokens)

    @property
    def mean(self) -> float:
        return sum(self.chunk_nll) / self.tokens

    def chunk_means(self) -> list[float]:
        return [s / n for s, n in zip(self.chunk_nll, self.chunk_tokens)]

    def to_json(self) -> dict:
        """The ``nll`` entry of eval.json: the metric (n = tokens, stderr over chunk means) and the chunks."""
        spread = mean_with_stderr(self.chunk_means())
        return {"source": self.source, "metric": MetricValue(self.mean, self.tokens, spread.stderr).to_json(),
                "chunk_nll": [round(v, 6) for v in self.chunk_nll], "chunk_tokens": self.chunk_tokens}


def text_chunks(tokenizer: PreTrainedTokenizerBase, text: str, max_tokens: int, chunk_tokens: int) -> list[list[int]]:
    """The fixed token chunks every arm is scored on (BOS-led where the tokenizer intends it)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    chunks = [ids[i:i + chunk_tokens] for i in range(0, len(ids), chunk_tokens)]
    chunks = [c for c in chunks if len(c) >= 2]
    if adds_bos(tokenizer):
        chunks = [[tokenizer.bos_token_id, *c] for c in chunks]
    return chunks


@torch.no_grad()
def chunk_nll(model: PreTrainedModel, chunks: list[list[int]], pad_token_id: int) -> tuple[list[float], list[int]]:
    """Summed NLL and predicted-token count of every chunk (right-padded, padding ignored)."""
    device = next(model.parameters()).device
    sums: list[float] = []
    counts: list[int] = []
    for start in range(0, len(chunks), CHUNKS_PER_FORWARD):
        batch = chunks[start:start + CHUNKS_PER_FORWARD]
        width = max(len(c) for c in batch)
        input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)  # [b, n]
        attention = torch.zeros((len(batch), width), dtype=torch.long)  # [b, n]
        labels = torch.full((len(batch), width), -100, dtype=torch.long)  # [b, n]
        for row, chunk in enumerate(batch):
            input_ids[row, :len(chunk)] = torch.tensor(chunk)
            attention[row, :len(chunk)] = 1
            labels[row, :len(chunk)] = torch.tensor(chunk)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=False).logits
        token_nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().transpose(1, 2), labels[:, 1:].to(logits.device), ignore_index=-100,
            reduction="none")  # [b, n-1]; 0 where ignored
        sums += token_nll.sum(dim=1).tolist()
        counts += [len(c) - 1 for c in batch]
    return sums, counts


def generic_text_nll(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, spec: NllSpec) -> NllResult:
    text, source = read_generic_text(spec.path)
    chunks = text_chunks(tokenizer, text, spec.max_tokens, spec.chunk_tokens)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    sums, counts = chunk_nll(model, chunks, pad_id)
    return NllResult(source=source, chunk_nll=sums, chunk_tokens=counts)

