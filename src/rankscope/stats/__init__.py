"""Pure statistics for paired comparisons of arms (numpy, scipy, statsmodels; no rankscope and
no torch imports), so the sweep, the report and a user's notebook can all import it."""

from rankscope.stats.paired import (PairedResult, compare_paired, holm, mcnemar_exact, noninferiority_p,
                                    paired_bootstrap)
from rankscope.stats.power import binary_sd_floor, items_to_detect, minimum_detectable_effect

__all__ = ["PairedResult", "binary_sd_floor", "compare_paired", "holm", "items_to_detect", "mcnemar_exact",
           "minimum_detectable_effect", "noninferiority_p", "paired_bootstrap"]
