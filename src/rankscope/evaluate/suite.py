"""Evaluate one model on a set of datasets and return per-dataset metrics (the eval.json payload).

Beside the metrics, every scored question yields an :class:`~rankscope.verdicts.items.ItemRecord`
(the per-item outcome that paired comparisons need); callers that keep them pass ``items``.
"""

from __future__ import annotations

import time

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rankscope.config import EvalSpec
from rankscope.data.answers import extract_number, short_answer
from rankscope.data.types import LoadedDataset
from rankscope.evaluate.generative import score_generative
from rankscope.evaluate.lm_eval_scoring import lm_eval_predictions
from rankscope.evaluate.metrics import auto_primary_metric, mean_with_stderr
from rankscope.evaluate.multiple_choice import score_multiple_choice
from rankscope.evaluate.nll import generic_text_nll
from rankscope.verdicts.items import ItemRecord


def _extracted(prediction: str, answer_type: str) -> str | None:
    """The answer the scorer compared: the parsed number for numeric sets (None when the
    generation has none), the short answer (first line, no "Answer:" prefix) for text sets."""
    return extract_number(prediction) if answer_type == "number" else short_answer(prediction)


def evaluate_dataset_items(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: LoadedDataset,
                           spec: EvalSpec) -> tuple[dict, list[ItemRecord]]:
    """Metrics of one dataset (accuracy for every set; acc_norm and margin too for multiple
    choice) and its per-item records."""
    info = dataset.info
    examples = dataset.test
    if info.format == "mc":
        scores = score_multiple_choice(model, tokenizer, examples, spec.batch_size, description=info.name)
        correct_norm = [bool(c) for c in scores.correct_norm]
        if any(e.prompt is not None for e in examples):  # an lm-eval task: its acc_norm, as lm-eval computes it
            _, preds_norm = lm_eval_predictions(examples, scores.choice_logprobs)
            correct_norm = [p == e.gold for p, e in zip(preds_norm, examples)]
        metrics = {
            "accuracy": mean_with_stderr([float(c) for c in scores.correct]).to_json(),
            "acc_norm": mean_with_stderr([float(c) for c in correct_norm]).to_json(),
            "margin": mean_with_stderr(scores.margins).to_json(),
        }
        samples = [{"uid": e.uid, "correct": c, "margin": round(m, 4)}
                   for e, c, m in zip(examples[:20], scores.correct, scores.margins)]
        items = [ItemRecord(uid=e.uid or str(i), correct=int(c), correct_norm=int(cn), gold=e.gold,
                            choice_logprobs=tuple(lp), extra={"margin": round(m, 5)})
                 for i, (e, c, cn, lp, m) in enumerate(zip(examples, scores.correct, correct_norm,
                                                           scores.choice_logprobs, scores.margins))]
    else:
        max_new_tokens = info.new_tokens(spec.max_new_tokens)
        scores = score_generative(model, tokenizer, examples, info.answer_type, spec.batch_size,
                                  max_new_tokens, description=info.name)
        metrics = {"accuracy": mean_with_stderr([float(c) for c in scores.correct]).to_json(),
                   # share of generations cut off at max_new_tokens (their answer may be missing)
                   "truncated": mean_with_stderr([float(t) for t in scores.truncated]).to_json()}
        samples = [{"uid": e.uid, "answer": e.answer, "prediction": p, "correct": c, "truncated": t}
                   for e, p, c, t in zip(examples[:20], scores.predictions, scores.correct, scores.truncated)]
        items = [ItemRecord(uid=e.uid or str(i), correct=int(c), prediction=p,
                            extracted=_extracted(p, info.answer_type), extra={"truncated": bool(t)})
                 for i, (e, p, c, t) in enumerate(zip(examples, scores.predictions, scores.correct, scores.truncated))]
    payload = {"kind": info.kind, "format": info.format, "primary_metric": auto_primary_metric(info.format, examples),
               "metrics": metrics, "samples": samples}
    if info.format != "mc":
        payload["max_new_tokens"] = max_new_tokens
    return payload, items


def evaluate_dataset(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: LoadedDataset,
                     spec: EvalSpec) -> dict:
    """Metrics of one dataset (see :func:`evaluate_dataset_items`)."""
    return evaluate_dataset_items(model, tokenizer, dataset, spec)[0]


def evaluate_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   datasets: dict[str, LoadedDataset], spec: EvalSpec,
                   items: dict[str, list[dict]] | None = None) -> dict:
    """The eval.json payload: per-dataset metrics and, when ``spec.nll.enabled``, the generic-text
    NLL (rankscope.evaluate.nll; results.csv turns it into ``nll`` and ``nll_delta`` rows). When
    ``items`` is given it receives every dataset's per-item rows."""
    started = time.perf_counter()
    results = {}
    for name, dataset in datasets.items():
        results[name], records = evaluate_dataset_items(model, tokenizer, dataset, spec)
        if items is not None:
            items[name] = [record.to_json() for record in records]
    payload: dict = {"datasets": results}
    if spec.nll.enabled:
        payload["nll"] = generic_text_nll(model, tokenizer, spec.nll).to_json()
    payload["eval_time_s"] = round(time.perf_counter() - started, 3)
    return payload
