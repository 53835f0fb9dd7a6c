"""Peak memory of one arm's training, without disturbing the process's own high-water mark.

On CUDA the allocator's peak counter is reset per arm. On CPU a daemon thread samples the
resident set (``/proc/self/statm``) every few milliseconds. Resetting the kernel's VmHWM instead
(``/proc/self/clear_refs``) would also reset what ``getrusage``/``/usr/bin/time`` report for
the whole run, so a sweep's true peak would be lost; sampling leaves it intact. A sample can miss
a spike shorter than the interval; a training step lasts far longer than one.
"""

from __future__ import annotations

import os
import resource
import sys
import threading

import torch

SAMPLE_INTERVAL_S = 0.005


def resident_set_bytes() -> int | None:
    """Current resident set size from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def lifetime_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.mb``: the block's peak memory."""

    def __init__(self, device: torch.device):
        self.device = device
        self._peak = 0
        self._start = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while True:
            current = resident_set_bytes()
            if current is not None:
                self._peak = max(self._peak, current)
            if self._stop.wait(SAMPLE_INTERVAL_S):
                return

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        elif resident_set_bytes() is not None:
            self._start = resident_set_bytes() or 0
            self._thread = threading.Thread(target=self._sample, name="rankscope-peak-rss", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self._peak = torch.cuda.max_memory_allocated(self.device)
        elif self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, resident_set_bytes() or 0)
        else:  # no /proc: the process's lifetime peak is the best bound available
            self._peak = lifetime_peak_bytes()

    @property
    def mb(self) -> float:
        """The peak of everything resident (the base model and the runtime included)."""
        return self._peak / 2**20

    @property
    def arm_mb(self) -> float:
        """The block's own peak: the total peak minus what was resident when the block began."""
        return max(0, self._peak - self._start) / 2**20
