"""The devices `rankscope plan` sizes a sweep for: memory and a stated bf16 dense matmul peak.

GPU figures are the vendors' published ones (dense bf16 tensor-core peak, no sparsity; memory as
``nvidia-smi`` reports it). The CPU is this machine: its memory from the OS and its peak
measured with a short fp32 matmul, because no published figure describes a shared host.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import torch

GIB = 2**30


@dataclass(frozen=True)
class Device:
    name: str
    kind: str  # "cuda" | "cpu"
    memory_gib: float
    peak_tflops: float  # dense matmul peak in the compute dtype the recipe uses on this device
    peak_source: str  # where the peak comes from, printed with every step-time estimate


NAMED_GPUS = {
    # A100 SXM 80GB: 312 TFLOP/s dense bf16; nvidia-smi reports 81920 MiB.
    "a100-80gb": Device("a100-80gb", "cuda", 80.0, 312.0, "NVIDIA A100 datasheet, dense bf16"),
    # H100 SXM: 989 TFLOP/s dense bf16; nvidia-smi reports 81559 MiB.
    "h100": Device("h100", "cuda", 79.6, 989.0, "NVIDIA H100 SXM datasheet, dense bf16"),
    # H200 SXM: same compute as H100 SXM, 141 GB HBM3e; nvidia-smi reports 143771 MiB.
    "h200": Device("h200", "cuda", 140.4, 989.0, "NVIDIA H200 SXM datasheet, dense bf16"),
}
DEVICE_CHOICES = ("cpu", *NAMED_GPUS)


def measured_matmul_tflops(dtype: torch.dtype = torch.float32, size: int = 1024, repeats: int = 8,
                           device: str = "cpu") -> float:
    """Best-of-``repeats`` square matmul throughput in TFLOP/s (2 n^3 flops per product)."""
    a = torch.randn(size, size, dtype=dtype, device=device)
    b = torch.randn(size, size, dtype=dtype, device=device)
    best = float("inf")
    for _ in range(repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e12


def host_memory_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB


def cpu_device(measure_peak: bool = True) -> Device:
    """This host; ``measure_peak=False`` (a fit check needs no step time) skips the matmul timing."""
    if not measure_peak:
        return Device("cpu", "cpu", round(host_memory_gib(), 1), 0.0, "not measured")
    return Device("cpu", "cpu", round(host_memory_gib(), 1), round(measured_matmul_tflops(), 4),
                  f"fp32 matmul measured on this host with {torch.get_num_threads()} thread(s)")


def current_cuda_device() -> Device:
    """The first visible GPU, matched to a named one by its reported name for the peak."""
    props = torch.cuda.get_device_properties(0)
    name = props.name.lower()
    known = next((d for key, d in NAMED_GPUS.items() if key.split("-")[0] in name), None)
    peak, source = (known.peak_tflops, known.peak_source) if known else (
        round(measured_matmul_tflops(torch.bfloat16, 4096, 4, "cuda"), 1), "bf16 matmul measured on this GPU")
    return Device(props.name, "cuda", round(props.total_memory / GIB, 1), peak, source)


def resolve_device(name: str | None, measure_peak: bool = True) -> Device:
    """A named device, or (None) where the sweep would run: the first GPU, else this CPU."""
    if name is None:
        return current_cuda_device() if torch.cuda.is_available() else cpu_device(measure_peak)
    if name == "cpu":
        return cpu_device(measure_peak)
    return NAMED_GPUS[name]
