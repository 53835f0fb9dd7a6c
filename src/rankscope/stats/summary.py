"""Means with standard errors, as every results.csv row reports them (no torch, no rankscope
imports): per-item scores, and the generic-text NLL change of an arm against the base."""

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


def nll_delta(arm: dict, base: dict) -> MetricValue | None:
    """Generic-text NLL of an arm minus the base's, from their eval.json ``nll`` entries
    (rankscope.evaluate.nll); the stderr is that of the mean paired per-chunk difference. None
    when the two were not scored on the same text and chunks."""
    if arm.get("chunk_tokens") != base.get("chunk_tokens") or arm.get("source") != base.get("source"):
        return None
    arm_means = [s / n for s, n in zip(arm["chunk_nll"], arm["chunk_tokens"])]
    base_means = [s / n for s, n in zip(base["chunk_nll"], base["chunk_tokens"])]
    spread = mean_with_stderr([a - b for a, b in zip(arm_means, base_means)])
    return MetricValue(arm["metric"]["value"] - base["metric"]["value"], arm["metric"]["n"], spread.stderr)
