"""The runtime's own memory before any model loads: what a sweep process holds after its imports."""

from __future__ import annotations

from rankscope.plan.devices import GIB
from rankscope.train.memory import resident_set_bytes


def runtime_baseline_gib() -> float:
    """Resident set of this process once the sweep's modules (torch, transformers, peft, the
    evaluation and analysis code) are imported; measured, not assumed. 0 where /proc is missing."""
    # The imports a sweep process has made before its first arm (this package sits below the
    # sweep, so it imports what the sweep imports rather than the sweep itself).
    import peft  # noqa: F401
    import rankscope.analysis.pipeline  # noqa: F401
    import rankscope.evaluate.suite  # noqa: F401

    return (resident_set_bytes() or 0) / GIB
