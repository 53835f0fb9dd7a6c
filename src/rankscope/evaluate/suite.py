"""Evaluate one model on a set of datasets and return per-dataset metrics (the eval.json payload)."""

from __future__ import annotations

import time

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rankscope.config import EvalSpec
from rankscope.data.types import LoadedDataset
from rankscope.evaluate.generative import score_generative
from rankscope.evaluate.lm_eval_scoring import lm_eval_predictions
from rankscope.evaluate.metrics import mean_with_stderr
from rankscope.evaluate.multiple_choice import score_multiple_choice


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
        if any(e.prompt is not None for e in examples):  # an lm-eval task: its acc_norm, as lm-eval computes it
            _, preds_norm = lm_eval_predictions(examples, scores.choice_logprobs)
            metrics["acc_norm"] = mean_with_stderr([float(p == e.gold) for p, e in zip(preds_norm, examples)]).to_json()
        samples = [{"uid": e.uid, "correct": c, "margin": round(m, 4)}
                   for e, c, m in zip(examples[:20], scores.correct, scores.margins)]
    else:
        scores = score_generative(model, tokenizer, examples, info.answer_type, spec.batch_size,
                                  spec.max_new_tokens, description=info.name)
        metrics = {"accuracy": mean_with_stderr([float(c) for c in scores.correct]).to_json()}
        samples = [{"uid": e.uid, "answer": e.answer, "prediction": p, "correct": c}
                   for e, p, c in zip(examples[:20], scores.predictions, scores.correct)]
    return {"kind": info.kind, "format": info.format, "metrics": metrics, "samples": samples}


def evaluate_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   datasets: dict[str, LoadedDataset], spec: EvalSpec) -> dict:
    started = time.perf_counter()
    results = {name: evaluate_dataset(model, tokenizer, dataset, spec) for name, dataset in datasets.items()}
    return {"datasets": results, "eval_time_s": round(time.perf_counter() - started, 3)}
