"""Summary statistics for per-item scores."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class MetricValue:
    """A mean over n items with its standard error (sample standard deviation / sqrt(n), ddof=1,
    as lm-evaluation-harness reports it); stderr is 0 for n < 2."""

    value: float
    n: int
    stderr: float

    def to_json(self) -> dict:
        return {"value": self.value, "n": self.n, "stderr": self.stderr}


def mean_with_stderr(values: list[float]) -> MetricValue:
    n = len(values)
    if n == 0:
        return MetricValue(value=float("nan"), n=0, stderr=float("nan"))
    mean = sum(values) / n
    if n < 2:
        return MetricValue(value=mean, n=n, stderr=0.0)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return MetricValue(value=mean, n=n, stderr=math.sqrt(variance / n))


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
