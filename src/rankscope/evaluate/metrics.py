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
