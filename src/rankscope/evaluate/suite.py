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
        scores = score_generative(model, tokenizer, examples, info.answer_type, spec.batch_size,
                                  spec.max_new_tokens, description=info.name)
        metrics = {"accuracy": mean_with_stderr([float(c) for c in scores.correct]).to_json()}
        samples = [{"uid": e.uid, "answer": e.answer, "prediction": p, "correct": c}
                   for e, p, c in zip(examples[:20], scores.predictions, scores.correct)]
        items = [ItemRecord(uid=e.uid or str(i), correct=int(c), prediction=p,
                            extracted=_extracted(p, info.answer_type))
                 for i, (e, p, c) in enumerate(zip(examples, scores.predictions, scores.correct))]
    payload = {"kind": info.kind, "format": info.format, "primary_metric": auto_primary_metric(info.format, examples),
               "metrics": metrics, "samples": samples}
    return payload, items


def evaluate_dataset(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, dataset: LoadedDataset,
                     spec: EvalSpec) -> dict:
    """Metrics of one dataset (see :func:`evaluate_dataset_items`)."""
    return evaluate_dataset_items(model, tokenizer, dataset, spec)[0]


def evaluate_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                   datasets: dict[str, LoadedDataset], spec: EvalSpec,
                   items: dict[str, list[dict]] | None = None) -> dict:
    """The eval.json payload; when ``items`` is given it receives every dataset's per-item rows."""
    started = time.perf_counter()
    results = {}
    for name, dataset in datasets.items():
        results[name], records = evaluate_dataset_items(model, tokenizer, dataset, spec)
        if items is not None:
            items[name] = [record.to_json() for record in records]
    return {"datasets": results, "eval_time_s": round(time.perf_counter() - started, 3)}
