"""Exact vs top-k weight analysis of every finished arm of a run directory (issue 15).

For a finished run directory (e.g. of ``rankscope demo --preset quick``) it loads the base model
from the run's ``config.yaml``, builds the base reference once per method in memory (as the
sweep builds it: :func:`build_base_reference` with the run's ``analysis`` settings), then for every
finished sft and LoRA arm loads its weights (``bench/run_arms.py``) and runs
:func:`weight_update_spectra` with ``method: exact`` and ``method: topk``, same everything else,
interleaved (the order alternates per arm) and timed (CPU and wall seconds, with the run's
``spectral_threads``). Per arm it prints the intruder counts of both (sum over matrices), the
largest ``|s_topk - s_exact| / s_1`` over all matrices (over the values top-k reports), the
matrices whose intruder counts differ and the seconds of both; the last line sums it up.

Exit status 1 when an intruder count differs or a singular value differs by more than the
tolerance the top-k method states (``analysis.topk_tol``: every reported value within
``tol * s_1`` of a true one).

``--dense-below N`` overrides the size under which top-k takes the dense SVD (the library's
default, 768, covers every matrix of a model with hidden size 576; ``0`` exercises the randomized
path on every matrix large enough for it).

Run: ``python bench/quick_analysis_methods.py RUN_DIR [--dense-below 0]``
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rankscope.analysis.pipeline import AnalysisOptions, torch_threads
from rankscope.analysis.weight_spectra import SpectralResult, SpectralSettings, build_base_reference, weight_update_spectra
from rankscope.config import load_config
from rankscope.models.load import load_base_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_arms import arm_model, finished_arms  # noqa: E402

METHODS = ("exact", "topk")


@dataclasses.dataclass
class Timed:
    """A result with its CPU (this process) and wall seconds."""

    value: object
    cpu_s: float
    wall_s: float


def timed(fn: Callable[[], object]) -> Timed:
    cpu, wall = time.process_time(), time.perf_counter()
    value = fn()
    return Timed(value, time.process_time() - cpu, time.perf_counter() - wall)


def settings_for(options: AnalysisOptions, method: str, dense_below: int | None) -> SpectralSettings:
    settings = dataclasses.replace(options.spectral_settings(), method=method)
    if dense_below is not None:
        settings = dataclasses.replace(settings, topk=dataclasses.replace(settings.topk, dense_below=dense_below))
    return settings


def intruder_counts(result: SpectralResult) -> dict[tuple[int, str], float]:
    """``(layer, module) -> intruder dimensions`` of one arm."""
    return {(r.layer, r.module): r.value for r in result.rows if r.metric == "intruder_dimensions"}


def max_sv_rel_diff(exact: SpectralResult, topk: SpectralResult) -> float:
    """Largest ``|s_topk - s_exact| / s_1`` over every matrix, over the values top-k holds."""
    if exact.singular_values.keys() != topk.singular_values.keys():
        raise SystemExit(f"the methods analysed different matrices: {sorted(exact.singular_values.keys() ^ topk.singular_values.keys())[:3]}")
    worst = 0.0
    for key, x in exact.singular_values.items():
        y = topk.singular_values[key]
        n = min(x.size, y.size)
        scale = float(x.max(initial=0.0))
        if n and scale > 0:
            worst = max(worst, float(np.abs(x[:n] - y[:n]).max()) / scale)
        elif n and float(np.abs(y).max(initial=0.0)) > 0:
            worst = float("inf")  # exact says zero update, top-k does not
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--dense-below", type=int, default=None,
                        help="top-k takes the dense SVD when a matrix's smaller side is at most this (default: the library's)")
    args = parser.parse_args()
    config = load_config(args.run_dir / "config.yaml")
    spec = config.analysis
    options = AnalysisOptions.of(spec)
    arms = finished_arms(args.run_dir)
    if not arms:
        raise SystemExit(f"{args.run_dir}: no finished sft or LoRA arm under arms/ (arm.json with status done)")
    base = load_base_model(config.model)
    settings = {m: settings_for(options, m, args.dense_below) for m in METHODS}
    key = config.model.model_dump_json()
    references = {}
    with torch_threads(options.spectral_threads), torch.no_grad():
        for method in METHODS:
            references[method] = timed(lambda m=method: build_base_reference(
                base.model, None, settings[m], intruders=options.intruders, intruder_k=options.intruder_k, key=key))
    print(f"base reference: exact {references['exact'].cpu_s:.2f} cpu s / {references['exact'].wall_s:.2f} wall s, "
          f"topk {references['topk'].cpu_s:.2f} cpu s / {references['topk'].wall_s:.2f} wall s; "
          f"tolerance {options.topk_tol:g} of s_1")
    print(f"{'arm':<36} {'intr exact':>10} {'intr topk':>9} {'max sv diff/s1':>14} {'exact cpu/wall s':>16} "
          f"{'topk cpu/wall s':>15}  matrices differing")
    tol = options.topk_tol
    agree, worst, seconds = 0, 0.0, {m: 0.0 for m in METHODS}
    for i, arm in enumerate(arms):
        runs: dict[str, Timed] = {}
        with arm_model(base.model, arm.folder) as model, torch_threads(options.spectral_threads), torch.no_grad():
            for method in (METHODS if i % 2 == 0 else METHODS[::-1]):  # alternate who goes first
                runs[method] = timed(lambda m=method: weight_update_spectra(
                    arm.arm_id, model, references[m].value, intruder_k=options.intruder_k,
                    intruder_threshold=options.intruder_threshold, energy_ks=options.energy_ks,
                    intruders=options.intruders, settings=settings[m]))
        exact, topk = runs["exact"].value, runs["topk"].value
        ce, ct = intruder_counts(exact), intruder_counts(topk)
        differ = sorted(k for k in ce.keys() | ct.keys() if ce.get(k) != ct.get(k))
        diff = max_sv_rel_diff(exact, topk)
        agree += not differ
        worst = max(worst, diff)
        for method in METHODS:
            seconds[method] += runs[method].wall_s
        names = ", ".join(f"{layer}.{module} ({ce.get((layer, module), np.nan):.0f} vs {ct.get((layer, module), np.nan):.0f})"
                          for layer, module in differ) or "-"
        print(f"{arm.arm_id:<36} {sum(ce.values()):>10.0f} {sum(ct.values()):>9.0f} {diff:>14.3e} "
              f"{runs['exact'].cpu_s:>7.2f}/{runs['exact'].wall_s:<8.2f} {runs['topk'].cpu_s:>6.2f}/{runs['topk'].wall_s:<8.2f}  {names}")
    ratio = seconds["topk"] / seconds["exact"] if seconds["exact"] > 0 else float("nan")
    print(f"quick preset: intruders agree on {agree} of {len(arms)} arms; max sv rel diff {worst:.3e}; "
          f"topk/exact time {ratio:.2f}x")
    return 0 if agree == len(arms) and worst <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
