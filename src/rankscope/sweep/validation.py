"""A grid candidate's scores on its training set's validation split: what picks the learning rate.

Two scores, because a small validation set moves accuracy in coarse steps: ``val_accuracy``
(the set's primary metric, scored exactly as the test split is) and ``val_loss`` (the mean
answer-token cross-entropy of the training target, the quantity the training loop minimises,
token-weighted like the training loss). The selection rule is in
:mod:`rankscope.verdicts.learning_rates`; the test split is never touched here.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from rankscope.config import EvalSpec
from rankscope.data.types import LoadedDataset
from rankscope.evaluate.suite import evaluate_dataset_items
from rankscope.train.loss import IGNORE_INDEX, EncodedExample, collate


@torch.no_grad()
def answer_loss_per_example(model: nn.Module, encoded: list[EncodedExample], pad_token_id: int,
                            batch_size: int) -> list[tuple[float, int]]:
    """(summed answer-token cross-entropy, answer tokens) per example, in input order."""
    device = next(model.parameters()).device
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))  # little padding per batch
    out: list[tuple[float, int]] = [(0.0, 0)] * len(encoded)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            tensors = collate([encoded[i] for i in chunk], pad_token_id, device)
            logits = model(input_ids=tensors["input_ids"], attention_mask=tensors["attention_mask"],
                           use_cache=False).logits  # [b, n, V]
            labels = tensors["labels"][:, 1:]  # [b, n-1]: position t predicts token t+1
            losses = nn.functional.cross_entropy(logits[:, :-1, :].float().transpose(1, 2), labels,
                                                 ignore_index=IGNORE_INDEX, reduction="none")  # [b, n-1]
            mask = labels != IGNORE_INDEX
            sums = (losses * mask).sum(dim=1).tolist()
            counts = mask.sum(dim=1).tolist()
            for index, total, count in zip(chunk, sums, counts):
                out[index] = (float(total), int(count))
    finally:
        model.train(was_training)
    return out


def validation_scores(model: nn.Module, tokenizer: PreTrainedTokenizerBase, dataset: LoadedDataset,
                      encoded: list[EncodedExample], spec: EvalSpec, primary_metric: str) -> dict:
    """eval.json's ``validation`` entry: the set, the metric behind ``val_accuracy`` and both scores
    (value, n, stderr; the loss's stderr is over examples' mean token losses)."""
    started = time.perf_counter()
    view = LoadedDataset(info=dataset.info, test=dataset.validation)
    payload, _ = evaluate_dataset_items(model, tokenizer, view, spec)
    accuracy = payload["metrics"].get(primary_metric) or payload["metrics"]["accuracy"]
    pairs = [p for p in answer_loss_per_example(model, encoded, tokenizer.pad_token_id, spec.batch_size) if p[1]]
    tokens = sum(count for _, count in pairs)
    loss = sum(total for total, _ in pairs) / tokens if tokens else float("nan")
    per_example = [total / count for total, count in pairs]
    n = len(per_example)
    spread = (math.sqrt(sum((x - sum(per_example) / n) ** 2 for x in per_example) / (n - 1) / n) if n > 1
              else float("nan"))
    return {"dataset": dataset.info.name, "kind": dataset.info.kind, "format": dataset.info.format,
            "metric": primary_metric if primary_metric in payload["metrics"] else "accuracy",
            "metrics": {"val_accuracy": dict(accuracy),
                        "val_loss": {"value": loss, "n": n, "stderr": spread}},
            "time_s": round(time.perf_counter() - started, 3)}
