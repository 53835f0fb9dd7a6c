"""Benchmark: the weight analysis at 8B scale, exact (the reference path) vs top-k.

One ``d_out x d_in`` matrix pair (default 4096 x 14336, Llama-3.1-8B's ``down_proj``) on CPU:
a random base ``W_0`` (a Gaussian bulk plus 32 planted directions with power-law singular values,
like the decaying top of a trained weight) and ``W_ft = W_0 + dW`` with ``dW`` a rank-4 update
whose directions are new (intruders by construction) plus a small dense part. Both methods run the
library's own per-module code (``build_base_reference`` then ``weight_update_spectra`` of an sft
arm, the base reference written to and read from disk), interleaved: top-k, exact, top-k, ...

- ``exact``: full SVD of ``W_0`` (every base vector), float64 Gram eigendecomposition for
  ``W_ft``'s top-k vectors, full SVD of ``dW`` for its spectrum;
- ``topk``: the randomized method with the residual check (``rankscope.analysis.topk``).

Printed: time per module of each, the relative error of the top-k singular values of ``dW`` and of
``W_0`` (reference vs exact), the largest angle error (``1 - |cos|``) of ``W_0``'s leading
reference vectors, both intruder counts (must agree) and the projected weight analysis of one sft
arm of a 32-layer Llama-3.1-8B-shaped model, base reference included, probe forwards excluded:
each of the 7 projection shapes run once through the top-k path (base reference to disk and back,
then the arm pass), summed and times 32. Peak host memory: the resident set of this process
during that pass (one module pair held at a time, as the streamed analysis holds it).

Times are process CPU seconds (all threads) beside wall seconds: on a shared machine the wall
time is mostly waiting for a core. Last line: ``speedup N.Nx; projected 8B analysis: N min, M GiB``
with the speedup = exact / top-k CPU time of base reference plus arm pass on the big module
(medians), and the projection = CPU time of one layer x layers / threads, i.e. the wall time on
that many dedicated cores at the measured work (the wall-time ratio is printed too).

Run: ``python bench/analysis_scale.py [--threads 2] [--topk-repeats 2] [--exact-repeats 1]``;
``--d-out/--d-in/--layers/--shapes small`` shrink it (the test uses tiny sizes).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rankscope.analysis.topk import TopKSettings
from rankscope.analysis.weight_spectra import SpectralSettings, build_base_reference, weight_update_spectra
from rankscope.train.memory import PeakMemory

LLAMA_8B = {  # module: (d_out, d_in)
    "q_proj": (4096, 4096),
    "k_proj": (1024, 4096),
    "v_proj": (1024, 4096),
    "o_proj": (4096, 4096),
    "gate_proj": (14336, 4096),
    "up_proj": (14336, 4096),
    "down_proj": (4096, 14336),
}


def matrix_pair(d_out: int, d_in: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W_0, W_ft)`` float32 ``[d_out, d_in]``; ``W_ft``'s top 10 directions hold 4 intruders."""
    g = torch.Generator().manual_seed(seed)
    planted = 32
    W0 = torch.randn(d_out, d_in, generator=g) / math.sqrt(d_in)  # bulk, spectral norm ~1 + sqrt(d_out/d_in)
    sigma = 20.0 * torch.arange(1, planted + 1, dtype=torch.float32) ** -0.7  # 20, 12.3, 9.3, 7.6 ...
    a = torch.randn(d_out, planted, generator=g) / math.sqrt(d_out)
    b = torch.randn(planted, d_in, generator=g) / math.sqrt(d_in)
    W0 += (a * sigma) @ b
    tau = torch.tensor([14.0, 11.0, 8.5, 7.0])  # new directions between the base's top values
    c = torch.randn(d_out, 4, generator=g) / math.sqrt(d_out)
    d = torch.randn(4, d_in, generator=g) / math.sqrt(d_in)
    dW = (c * tau) @ d + 1e-3 * torch.randn(d_out, d_in, generator=g) / math.sqrt(d_in)
    return W0, W0 + dW


def one_module_model(name: str, W: torch.Tensor) -> nn.Module:
    """A model with one block projection ``layers.0.<name>`` holding ``W`` (no copy)."""
    d_out, d_in = W.shape
    linear = nn.Linear(d_in, d_out, bias=False)
    linear.weight = nn.Parameter(W, requires_grad=False)
    block = nn.Module()
    setattr(block, name, linear)
    model = nn.Module()
    model.layers = nn.ModuleList([block])
    return model


@dataclass
class Timing:
    wall: float  # seconds
    cpu: float  # process CPU seconds, all threads (on a shared machine the wall time is mostly waiting)

    def __str__(self) -> str:
        return f"{self.cpu:.1f} s CPU ({self.wall:.1f} s wall)"


def analyse(name: str, W0: torch.Tensor, W_ft: torch.Tensor, settings: SpectralSettings, k: int, folder: Path):
    """Base reference (to disk) + sft arm pass of one module; returns (Timing, result, cache)."""
    start, cpu = time.perf_counter(), time.process_time()
    cache = build_base_reference(one_module_model(name, W0), folder, settings, intruder_k=k)
    result = weight_update_spectra("sft", one_module_model(name, W_ft), cache, intruder_k=k, settings=settings)
    return Timing(time.perf_counter() - start, time.process_time() - cpu), result, cache


def metric(result, name: str) -> float:
    return next(r.value for r in result.rows if r.metric == name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d-out", type=int, default=4096)
    parser.add_argument("--d-in", type=int, default=14336)
    parser.add_argument("--k", type=int, default=10, help="intruder k")
    parser.add_argument("--spectrum-k", type=int, default=64)
    parser.add_argument("--reference-k", type=int, default=64)
    parser.add_argument("--topk-repeats", type=int, default=2)
    parser.add_argument("--exact-repeats", type=int, default=1)
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--dense-below", type=int, default=TopKSettings().dense_below,
                        help="smaller side up to which top-k takes the dense SVD (0: always randomized)")
    parser.add_argument("--shapes", choices=["8b", "small"], default="8b",
                        help="projection shapes of the projected model (small: the pair's, for tests)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    topk = SpectralSettings(method="topk", device="cpu", spectrum_k=args.spectrum_k, reference_k=args.reference_k,
                            topk=TopKSettings(dense_below=args.dense_below))
    exact = SpectralSettings(method="exact", device="cpu")
    name = "down_proj"
    print(f"matrix {args.d_out}x{args.d_in}, k={args.k}, spectrum_k={args.spectrum_k}, "
          f"reference_k={args.reference_k}, threads={torch.get_num_threads()}", flush=True)

    with tempfile.TemporaryDirectory(prefix="rankscope-bench-") as tmp:
        tmp = Path(tmp)
        small_W0, small_W_ft = matrix_pair(64, 96)  # warm-up: imports and first-call overheads
        analyse(name, small_W0, small_W_ft, topk, args.k, tmp / "warm-up")
        W0, W_ft = matrix_pair(args.d_out, args.d_in, seed=0)
        times: dict[str, list[Timing]] = {"topk": [], "exact": []}
        results, caches = {}, {}

        def run(label: str, settings: SpectralSettings, round_: int) -> None:
            timing, result, cache = analyse(name, W0, W_ft, settings, args.k, tmp / f"{label}-{round_}")
            times[label].append(timing)
            results[label], caches[label] = result, cache
            print(f"  {label} round {round_ + 1}: {timing} (residual {result.max_residual:.2e}, "
                  f"exact fallbacks {result.exact_fallbacks})", flush=True)

        # top-k first, then the other projection shapes (their peak memory is not inflated by the
        # exact path's buffers), then exact and top-k interleaved
        shapes = LLAMA_8B if args.shapes == "8b" else {name: (args.d_out, args.d_in)}
        per_shape: dict[tuple[int, int], Timing] = {}
        with PeakMemory(torch.device("cpu")) as peak:
            run("topk", topk, 0)
            per_shape[(args.d_out, args.d_in)] = times["topk"][0]
            for module, shape in shapes.items():
                if shape in per_shape:
                    continue
                W0_p, W_ft_p = matrix_pair(*shape, seed=1)
                per_shape[shape], result, _ = analyse(module, W0_p, W_ft_p, topk, args.k, tmp / f"proj-{module}")
                print(f"  top-k {module} {shape[0]}x{shape[1]}: {per_shape[shape]} (residual "
                      f"{result.max_residual:.2e}, exact fallbacks {result.exact_fallbacks})", flush=True)
                del W0_p, W_ft_p
        for round_ in range(max(args.topk_repeats, args.exact_repeats)):
            if round_ < args.exact_repeats:
                run("exact", exact, round_)
            if 0 < round_ < args.topk_repeats:
                run("topk", topk, round_)
        key = f"sft/0/{name}"
        s_exact = torch.from_numpy(results["exact"].singular_values[key])
        s_topk = torch.from_numpy(results["topk"].singular_values[key])
        n = s_topk.numel()
        value_err = float(((s_topk - s_exact[:n]).abs() / s_exact[0]).max())
        strong = int((s_exact[:n] > 0.01 * s_exact[0]).sum())  # values above 1% of s_1
        top_err = float(((s_topk[:strong] - s_exact[:strong]).abs() / s_exact[:strong]).max())
        ref_exact, ref_topk = caches["exact"].get(f"layers.0.{name}"), caches["topk"].get(f"layers.0.{name}")
        m = ref_topk.singular_values.numel()
        base_value_err = float(((ref_topk.singular_values - ref_exact.singular_values[:m]).abs()
                                / ref_exact.singular_values[0]).max())
        cos = (ref_exact.left_vectors[:, :args.k] * ref_topk.left_vectors[:, :args.k]).sum(0).abs()
        vector_err = float((1 - cos).max())
        counts = {label: int(metric(results[label], "intruder_dimensions")) for label in results}
        align = {label: metric(results[label], "alignment_mean_cos") for label in results}


    cpu_exact = statistics.median(t.cpu for t in times["exact"])
    cpu_topk = statistics.median(t.cpu for t in times["topk"])
    wall_exact = statistics.median(t.wall for t in times["exact"])
    wall_topk = statistics.median(t.wall for t in times["topk"])
    print(f"time per module (base reference + sft arm), median: exact {cpu_exact:.1f} s CPU "
          f"({wall_exact:.1f} s wall), top-k {cpu_topk:.1f} s CPU ({wall_topk:.1f} s wall); "
          f"wall-time ratio {wall_exact / wall_topk:.1f}x")
    print(f"dW singular values: max |err| / s_1 over the top {n}: {value_err:.2e}; "
          f"max relative error of the {strong} above 1% of s_1: {top_err:.2e}")
    print(f"W_0 reference: max |err| / s_1 of the top {m} values: {base_value_err:.2e}; "
          f"max 1 - |cos| of the top {args.k} vectors: {vector_err:.2e}")
    print(f"intruder dimensions: exact {counts['exact']}, top-k {counts['topk']} "
          f"({'agree' if counts['exact'] == counts['topk'] else 'DISAGREE'}); "
          f"alignment_mean_cos: exact {align['exact']:.4f}, top-k {align['topk']:.4f}")
    per_shape[(args.d_out, args.d_in)] = Timing(wall_topk, cpu_topk)
    per_layer = sum(per_shape[shape].cpu for shape in shapes.values())
    threads = torch.get_num_threads()
    projected_min = per_layer * args.layers / 60 / threads
    print(f"projected: {args.layers} layers x {len(shapes)} projections, {per_layer:.1f} CPU s per layer; "
          f"{projected_min:.1f} min on {threads} dedicated core(s) (CPU time / {threads}), "
          f"{per_layer * args.layers / 60:.1f} min on one; peak host memory (resident set of the top-k pass)")
    print(f"speedup {cpu_exact / cpu_topk:.1f}x; projected 8B analysis: {projected_min:.0f} min, "
          f"{peak.mb / 1024:.1f} GiB")


if __name__ == "__main__":
    main()
