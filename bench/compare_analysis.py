"""Compare the weight analysis of two run directories (e.g. ``analysis.method: exact`` vs ``topk``).

Reads ``analysis/spectral.csv`` and ``analysis/singular_values.safetensors`` of both (no torch)
and prints, per metric present in both, the number of shared (arm, layer, module) rows and the
largest absolute and relative difference; for the singular values, the largest difference over the
values both runs hold (top-k runs hold the top ``spectrum_k`` of a dense update), relative to the
largest value of the vector; the intruder counts per arm (sum over matrices) of both runs; and
each arm's analysis time (``analysis/timings.csv``: the weight pass and the whole analysis).

Run: ``python bench/compare_analysis.py RUN_A RUN_B [--tol 1e-2]``. Exit status 1 when an intruder
count differs or a singular value differs by more than ``--tol`` (relative to ``s_1``), so it can
gate a check.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

import numpy as np

from rankscope.runstore.analysis_files import read_singular_values, read_spectral, read_timings


def by_key(run_dir: str) -> dict[tuple[str, str, int, str], float]:
    return {(r.arm_id, r.metric, r.layer, r.module): r.value for r in read_spectral(run_dir)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_a")
    parser.add_argument("run_b")
    parser.add_argument("--tol", type=float, default=1e-2, help="accepted |s_a - s_b| / s_1")
    args = parser.parse_args()
    a, b = by_key(args.run_a), by_key(args.run_b)
    if not a or not b:
        print(f"no analysis/spectral.csv rows in {args.run_a if not a else args.run_b}")
        return 1
    diffs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key in sorted(a.keys() & b.keys()):
        va, vb = a[key], b[key]
        diffs[key[1]].append((abs(va - vb), abs(va - vb) / max(abs(va), abs(vb), 1e-30)))
    print(f"{'metric':<24} {'rows':>6} {'max |diff|':>12} {'max rel diff':>13}")
    for metric, values in sorted(diffs.items()):
        print(f"{metric:<24} {len(values):>6} {max(d for d, _ in values):>12.3e} {max(r for _, r in values):>13.3e}")
    only = sorted({k[1] for k in a.keys() ^ b.keys()})
    if only:
        print(f"metrics not in both runs for every matrix: {', '.join(only)}")

    sv_a, sv_b = read_singular_values(args.run_a), read_singular_values(args.run_b)
    worst, worst_key, compared = 0.0, None, 0
    for key in sorted(sv_a.keys() & sv_b.keys()):
        x, y = sv_a[key], sv_b[key]
        n = min(x.size, y.size)
        scale = max(float(x.max(initial=0)), float(y.max(initial=0)))
        if n == 0 or scale == 0:
            continue
        err = float(np.abs(x[:n] - y[:n]).max()) / scale
        compared += 1
        if err > worst:
            worst, worst_key = err, key
    print(f"singular values: {compared} vectors compared, max |diff| / s_1 = {worst:.3e}"
          + (f" ({worst_key})" if worst_key else ""))

    counts: dict[str, list[float]] = {}
    for label, rows in (("a", a), ("b", b)):
        for (arm, metric, _, _), value in rows.items():
            if metric == "intruder_dimensions":
                counts.setdefault(arm, [0.0, 0.0])[0 if label == "a" else 1] += value
    agree = True
    print(f"{'arm':<40} {'intruders A':>12} {'intruders B':>12}")
    for arm, (ca, cb) in sorted(counts.items()):
        agree &= ca == cb
        print(f"{arm:<40} {ca:>12.0f} {cb:>12.0f}{'' if ca == cb else '  DIFFER'}")
    per_matrix = [(k, a[k], b[k]) for k in a.keys() & b.keys() if k[1] == "intruder_dimensions" and a[k] != b[k]]
    if per_matrix:
        agree = False
        print(f"{len(per_matrix)} matrices with different intruder counts, e.g. {sorted(per_matrix)[:3]}")
    times_a, times_b = read_timings(args.run_a), read_timings(args.run_b)
    if times_a and times_b:
        print(f"{'arm':<40} {'spectral s A':>12} {'spectral s B':>12} {'total s A':>10} {'total s B':>10}")
        for arm in sorted(times_a.keys() & times_b.keys()):
            ta, tb = times_a[arm], times_b[arm]
            print(f"{arm:<40} {ta.get('spectral_s', float('nan')):>12.2f} {tb.get('spectral_s', float('nan')):>12.2f} "
                  f"{sum(ta.values()):>10.2f} {sum(tb.values()):>10.2f}")
    ok = agree and worst <= args.tol
    print(f"{'OK' if ok else 'DIFFERENT'}: intruder counts {'agree' if agree else 'differ'}; "
          f"singular values within {args.tol:g} of s_1: {worst <= args.tol}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
