"""The rules that turn cheap measurements into a predicted LoRA rank interval.

Each rule returns ``(lo, hi, detail)``: ``lo <= hi`` are ranks (at least 1), ``detail`` the numbers
behind them. A LoRA arm has one rank for every targeted module, while the cheap signals give one
number per module, so each interval spans the module distribution: ``lo`` the median module (half
the modules need at most this), ``hi`` the largest (every module gets what it needs).

1. Energy rank of an update (Biderman et al. 2024, "LoRA Learns Less and Forgets Less": full
   fine-tuning's updates have 10-100x the rank of typical LoRA configurations, measured as the
   rank holding 90% of the update's spectral energy): per module,
   ``r_q(dW) = min{r : sum_{i<=r} s_i^2 >= q ||dW||_F^2}`` (``rankscope.analysis.ranks.energy_rank``)
   with ``q`` = 0.90 or 0.99, applied to the update of a short full fine-tuning probe and to the
   mean gradient at initialisation.
2. The gradient noise edge: ``r = max{r : sigma_r(G0)^2 >= C / n}`` with ``G0`` the mean gradient
   over ``n`` training examples at the base weights and ``C = v (sqrt(d_out) + sqrt(d_in))^2``,
   ``v`` the per-entry variance of a single example's gradient. Why this ``C``: ``G0 = Gbar + E``
   where the sampling noise ``E`` has entries of variance ``v / n``; the largest singular value of
   such a ``d_out x d_in`` noise matrix is ``sqrt(v / n) (sqrt(d_out) + sqrt(d_in))`` (Bai & Yin
   1993; the edge of the Marchenko-Pastur law), and a direction of ``Gbar`` shows above that edge
   only when it is stronger than the noise (the BBP transition, Benaych-Georges & Nadakuditi 2011).
   So ``r`` counts the gradient directions the data resolve at this ``n``; more data resolves more
   (cf. Schulman et al. 2025's "rank ~ dataset size"). ``v`` is estimated from the spread of group
   means (:mod:`rankscope.predict.probe`), assuming entries of equal variance: a simplification,
   stated.
3. Data capacity (Schulman et al. 2025, "LoRA Without Regret": LoRA matches full fine-tuning
   until the dataset holds more information than the adapter can store; Allen-Zhu & Li 2024,
   "Physics of Language Models 3.3": ~2 bits of knowledge per parameter): the smallest ``r`` with
   ``2 * r * sum_modules (d_in + d_out) >= bits``, where ``bits`` is the answer tokens the sweep
   trains on times a loss in bits per token: the loss drop of the probe (``lo``; what a few steps
   already learned) and the base's loss (``hi``; everything the answers hold beyond the base).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

import torch
from torch import Tensor

from rankscope.analysis.ranks import energy_rank

#: Allen-Zhu & Li 2024: language models store ~2 bits of knowledge per parameter.
BITS_PER_PARAMETER = 2.0


def _interval(per_module: Mapping[str, float]) -> tuple[int, int, dict]:
    values = sorted(per_module.values())
    if not values:
        raise ValueError("no module to predict from: the LoRA targets matched no block projection")
    median = statistics.median(values)
    lo, hi = max(1, math.ceil(median)), max(1, math.ceil(values[-1]))
    worst = max(per_module, key=per_module.__getitem__)
    detail = {"modules": len(values), "median": median, "p90": values[min(len(values) - 1, int(0.9 * len(values)))],
              "max": values[-1], "max_module": worst}
    return lo, max(lo, hi), detail


def energy_interval(spectra: Mapping[str, Tensor], level: float) -> tuple[int, int, dict]:
    """[median, max] over modules of the ``level`` energy rank of each module's complete spectrum."""
    ranks = {}
    for name, s in spectra.items():
        s = s.detach().to(torch.float64)
        ranks[name] = float(energy_rank(s, float(s.square().sum()), level) or 0.0)
    return _interval(ranks)


def noise_edge_rank(s: Tensor, noise_var_of_mean: float, shape: tuple[int, int]) -> int:
    """``#{i : s_i^2 >= noise_var_of_mean * (sqrt(d_out) + sqrt(d_in))^2}`` (``= C / n``, module docstring)."""
    edge = noise_var_of_mean * (math.sqrt(shape[0]) + math.sqrt(shape[1])) ** 2
    return int((s.detach().to(torch.float64).square() >= edge).sum())


def gradient_rule_interval(spectra: Mapping[str, Tensor], noise: Mapping[str, float],
                           shapes: Mapping[str, tuple[int, int]]) -> tuple[int, int, dict]:
    """[median, max] over modules of :func:`noise_edge_rank`."""
    ranks = {name: float(noise_edge_rank(s, noise[name], shapes[name])) for name, s in spectra.items()}
    lo, hi, detail = _interval(ranks)
    detail["zero_modules"] = sum(1 for v in ranks.values() if v == 0)
    return lo, hi, detail


def capacity_rank(bits: float, width: int, bits_per_parameter: float = BITS_PER_PARAMETER) -> int:
    """Smallest ``r >= 1`` with ``bits_per_parameter * r * width >= bits``; ``width = sum (d_in + d_out)``."""
    if width <= 0:
        raise ValueError("no targeted module: width must be positive")
    return max(1, math.ceil(max(0.0, bits) / (bits_per_parameter * width)))


def capacity_interval(answer_tokens: float, base_loss: float, probe_drop: float, width: int) -> tuple[int, int, dict]:
    """:func:`capacity_rank` of the probe's loss drop (lo) and of the base loss (hi), losses in nats/token."""
    bits_lo = answer_tokens * max(0.0, probe_drop) / math.log(2)
    bits_hi = answer_tokens * max(0.0, base_loss) / math.log(2)
    lo, hi = capacity_rank(bits_lo, width), capacity_rank(bits_hi, width)
    return lo, max(lo, hi), {"answer_tokens": answer_tokens, "bits_lo": bits_lo, "bits_hi": bits_hi,
                             "width": width, "bits_per_parameter": BITS_PER_PARAMETER}


__all__ = ["BITS_PER_PARAMETER", "capacity_interval", "capacity_rank", "energy_interval", "gradient_rule_interval",
           "noise_edge_rank"]
