"""Evaluate one model on a set of datasets and return per-dataset metrics (the eval.json payload)."""

from __future__ import annotations

import time

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rankscope.config import EvalSpec
from rankscope.data.types import LoadedDataset
from rankscope.evaluate.generative import score_generative
from rankscope.evaluate.metrics import mean_with_stderr
from rankscope.evaluate.multiple_choice import score_multiple_choice
from rankscope.evaluate.nll import generic_text_nll


def evaluate_dataset(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: LoadedDataset,
                     spec: EvalSpec) -> dict:
    """Metrics of one dataset: accuracy for every set; margin too for multiple choice."""
    info = dataset.info
    examples = dataset.test
    if info.format == "mc":
        scores = score_multiple_choice(model, tokenizer, examples, spec.batch_size, description=info.name)
        metrics = {
            "accuracy": mean_with_stderr([float(c) for c in scores.correct]).to_json(),
            "margin": mean_with_stderr(scores.margins).to_json(),
        }
        samples = [{"uid": e.uid, "correct": c, "margin": round(m, 4)}
                   for e, c, m in zip(examples[:20], scores.correct, scores.margins)]
    else:
        max_new_tokens = info.new_tokens(spec.max_new_tokens)
        scores = score_generative(model, tokenizer, examples, info.answer_type, spec.batch_size,
                                  max_new_tokens, description=info.name)
        metrics = {"accuracy": mean_with_stderr([float(c) for c in scores.correct]).to_json(),
                   # share of generations cut off at max_new_tokens (their answer may be missing)
                   "truncated": mean_with_stderr([float(t) for t in scores.truncated]).to_json()}
        samples = [{"uid": e.uid, "answer": e.answer, "prediction": p, "correct": c, "truncated": t}
                   for e, p, c, t in zip(examples[:20], scores.predictions, scores.correct, scores.truncated)]
        return {"kind": info.kind, "format": info.format, "max_new_tokens": max_new_tokens, "metrics": metrics,
                "samples": samples}
    return {"kind": info.kind, "format": info.format, "metrics": metrics, "samples": samples}


def evaluate_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   datasets: dict[str, LoadedDataset], spec: EvalSpec) -> dict:
    """The eval.json payload: per-dataset metrics and, when ``spec.nll.enabled``, the generic-text NLL
    (rankscope.evaluate.nll; results.csv turns it into ``nll`` and ``nll_delta`` rows)."""
    started = time.perf_counter()
    results = {name: evaluate_dataset(model, tokenizer, dataset, spec) for name, dataset in datasets.items()}
    payload: dict = {"datasets": results}
    if spec.nll.enabled:
        payload["nll"] = generic_text_nll(model, tokenizer, spec.nll).to_json()
    payload["eval_time_s"] = round(time.perf_counter() - started, 3)
    return payload
