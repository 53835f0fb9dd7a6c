"""Verdicts you can trust: per-item records, paired comparisons of arms (comparisons.csv) and the
non-inferiority rule behind the recommended rank. No torch: the sweep writes these files and the
report (which runs without torch) rebuilds them from the item files of a copied run."""
