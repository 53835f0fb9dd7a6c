"""Benchmark: LoRA update spectrum from the factors vs a dense SVD of B @ A.

Shapes are SmolLM2-135M's projections (hidden 576, intermediate 1536, kv dim 192):
q/o 576x576, k/v 192x576, gate/up 1536x576, down 576x1536. Factors are random float32 (as peft
stores them). For r in {1, 8, 64} it prints the max relative error of the top-r singular values of
the factor path (:func:`rankscope.analysis.spectral.lora_update_singular_values`) against the dense
path (``torch.linalg.svdvals(scale * B @ A)`` in float32), and against a float64 dense reference.
Last line: ``speedup: N.Nx``, dense time / factor time for one pass over all seven projections at
r = 16 (each path timed in the same run, interleaved, median of the repeats). The dense time
includes forming ``B @ A``, as the dense alternative must.

Run: ``python bench/spectral_fast_path.py [--repeats 7] [--threads 1]`` (both paths use the same
thread count; 0 keeps torch's default).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rankscope.analysis.spectral import lora_update_singular_values

SHAPES = {  # module: (d_out, d_in)
    "q_proj": (576, 576),
    "k_proj": (192, 576),
    "v_proj": (192, 576),
    "o_proj": (576, 576),
    "gate_proj": (1536, 576),
    "up_proj": (1536, 576),
    "down_proj": (576, 1536),
}


def factors(r: int, seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor, float]]:
    g = torch.Generator().manual_seed(seed)
    scale = 2.0  # alpha / r with alpha = 2r
    return {
        name: (torch.randn(d_out, r, generator=g) / r**0.5, torch.randn(r, d_in, generator=g) / d_in**0.5, scale)
        for name, (d_out, d_in) in SHAPES.items()
    }


def dense_path(B: torch.Tensor, A: torch.Tensor, scale: float) -> torch.Tensor:
    return torch.linalg.svdvals(scale * (B @ A))  # [min(d_out, d_in)], float32


def factor_path(B: torch.Tensor, A: torch.Tensor, scale: float) -> torch.Tensor:
    return lora_update_singular_values(B, A, scale)  # [r]


def max_rel_err(approx: torch.Tensor, ref: torch.Tensor) -> float:
    k = approx.numel()
    ref = ref[:k].double()
    return float(((approx.double() - ref).abs() / ref).max())


def accuracy(r: int) -> None:
    worst_dense, worst_ref, worst_dense_ref = 0.0, 0.0, 0.0
    for name, (B, A, scale) in factors(r, seed=r).items():
        fast = factor_path(B, A, scale)
        dense = dense_path(B, A, scale)
        ref = torch.linalg.svdvals(scale * (B.double() @ A.double()))
        worst_dense = max(worst_dense, max_rel_err(fast, dense))
        worst_ref = max(worst_ref, max_rel_err(fast, ref))
        worst_dense_ref = max(worst_dense_ref, max_rel_err(dense[:r], ref))
    print(
        f"r={r:<3d} max rel err of top-{r} singular values: factor vs dense(f32) {worst_dense:.2e} | "
        f"factor vs dense(f64) {worst_ref:.2e} | dense(f32) vs dense(f64) {worst_dense_ref:.2e}"
    )


def timing(r: int, repeats: int) -> tuple[float, float]:
    mats = factors(r, seed=100 + r)
    for B, A, s in mats.values():  # warm-up (allocator, LAPACK workspaces, thread pool)
        dense_path(B, A, s)
        factor_path(B, A, s)
    dense_t, fast_t = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for B, A, s in mats.values():
            dense_path(B, A, s)
        dense_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(10):  # 10 passes per sample: a pass is ~ms, below timer/scheduler noise
            for B, A, s in mats.values():
                factor_path(B, A, s)
        fast_t.append((time.perf_counter() - t0) / 10)
    return statistics.median(dense_t), statistics.median(fast_t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads for both paths (default 1: multi-threaded LAPACK on a shared, "
        "oversubscribed box is erratic; 0 keeps torch's default)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, shapes: "
          + ", ".join(f"{k} {a}x{b}" for k, (a, b) in SHAPES.items()))
    for r in (1, 8, 64):
        accuracy(r)
    dense_s, fast_s = timing(16, args.repeats)
    print(f"r=16 one pass over 7 projections: dense {dense_s * 1e3:.1f} ms, factor {fast_s * 1e3:.2f} ms "
          f"(median of {args.repeats})")
    print(f"speedup: {dense_s / fast_s:.1f}x")


if __name__ == "__main__":
    main()
