"""The runtime's own memory before any model loads: what a sweep process holds after its imports."""

from __future__ import annotations

from rankscope.plan.devices import GIB
from rankscope.train.memory import resident_set_bytes


def runtime_baseline_gib() -> float:
    """Resident set of this process once the sweep's modules (torch, transformers, peft, the
    evaluation and analysis code) are imported; measured, not assumed. 0 where /proc is missing."""
    import rankscope.sweep.arm  # noqa: F401  (the imports a sweep process has made before its first arm)

    return (resident_set_bytes() or 0) / GIB
