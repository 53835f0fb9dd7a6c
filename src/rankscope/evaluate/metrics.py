"""Which metric a set is judged on; the summary statistics themselves are in rankscope.stats.summary."""

from __future__ import annotations

from rankscope.stats.summary import MetricValue, mean_with_stderr

__all__ = ["MetricValue", "auto_primary_metric", "mean_with_stderr"]


def auto_primary_metric(format: str, examples: list) -> str:
    """The metric that drives gain, forgetting and the recommendation when the dataset's
    ``primary_metric`` is ``auto``: ``acc_norm`` for a multiple-choice set whose choices differ in
    length (summed log-likelihood favours short choices there), ``accuracy`` otherwise."""
    if format != "mc":
        return "accuracy"
    for example in examples:
        lengths = {len(choice.encode("utf-8")) for choice in (example.choices or ())}
        if len(lengths) > 1:
            return "acc_norm"
    return "accuracy"
