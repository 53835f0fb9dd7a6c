"""How many items a paired comparison needs: minimum detectable effect (MDE) and its inverse.

For a paired difference with per-item standard deviation ``sd_diff`` (for 0/1 outcomes
sqrt(1 - agreement - delta^2): it is the disagreement between the two arms that carries the
noise), a two-sided test at level ``alpha`` detects a true difference of

    MDE = (z_{1 - alpha/2} + z_{power}) * sd_diff / sqrt(n)

with probability ``power`` (the normal approximation to McNemar's test / the paired bootstrap;
Cohen 1988, ch. 2). ``items_to_detect`` solves the same equation for n.
"""

from __future__ import annotations

import math

from scipy.stats import norm


def _z(alpha: float, power: float, two_sided: bool) -> float:
    return norm.ppf(1 - alpha / (2 if two_sided else 1)) + norm.ppf(power)


def minimum_detectable_effect(sd_diff: float, n: int, alpha: float = 0.05, power: float = 0.8,
                              two_sided: bool = True) -> float:
    """Smallest true mean difference found with probability ``power`` on n paired items."""
    if n <= 0:
        return math.inf
    return _z(alpha, power, two_sided) * sd_diff / math.sqrt(n)


def items_to_detect(sd_diff: float, effect: float, alpha: float = 0.05, power: float = 0.8,
                    two_sided: bool = True) -> int:
    """Paired items needed for ``minimum_detectable_effect`` to reach ``effect``."""
    if effect <= 0:
        return 0 if sd_diff == 0 else 2**31 - 1
    return max(1, math.ceil((_z(alpha, power, two_sided) * sd_diff / effect) ** 2))


def binary_sd_floor(sd_diff: float, n: int) -> float:
    """The per-item sd of a 0/1 paired difference, at least what 3/n discordant items give.

    Two arms that agree on every item have an observed sd of 0, which would claim that any
    difference is detectable with no items. The "rule of three" (Hanley & Lippman-Hand 1983)
    bounds an unseen rate at 3/n with 95% confidence; its sd, sqrt(3/n), is used instead.
    """
    return max(sd_diff, math.sqrt(min(1.0, 3 / n))) if n > 0 else sd_diff
