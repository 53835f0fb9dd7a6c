"""Per-arm peak memory is measured without resetting the process's own high-water mark."""

from __future__ import annotations

import sys
import time

import pytest
import torch

from rankscope.train.memory import PeakMemory, lifetime_peak_bytes, resident_set_bytes

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm (Linux)")


@linux_only
def test_peak_covers_an_allocation_made_and_freed_inside_the_block():
    before = resident_set_bytes()
    size = 256 * 2**20
    with PeakMemory(torch.device("cpu")) as peak:
        block = torch.ones(size // 4, dtype=torch.float32)  # touched pages: resident
        time.sleep(0.05)  # several sampling intervals
        del block
    assert peak.mb * 2**20 >= before + 0.9 * size


@linux_only
def test_the_process_lifetime_peak_is_not_reset():
    spike = torch.ones(512 * 2**20 // 4)  # raise the process's peak
    del spike
    lifetime = lifetime_peak_bytes()
    with PeakMemory(torch.device("cpu")):
        pass
    assert lifetime_peak_bytes() >= lifetime
