"""`rankscope plan`: per-arm memory, step time and a verdict from the config alone, before any weight loads.

The sweep runs the same check before its first arm (:func:`preflight`) and refuses an arm that
cannot fit, naming the config change that would make it fit.
"""

from __future__ import annotations

from rankscope.plan.devices import DEVICE_CHOICES, Device, resolve_device
from rankscope.plan.estimate import ArmEstimate, plan_sweep
from rankscope.plan.render import render_plan
from rankscope.plan.shapes import ModelShape, model_shape
from rankscope.plan.runtime import runtime_baseline_gib

__all__ = ["DEVICE_CHOICES", "ArmEstimate", "Device", "ModelShape", "model_shape", "plan_config", "plan_sweep",
           "preflight", "render_plan", "resolve_device", "runtime_baseline_gib"]


def plan_config(config, arms, device_name: str | None = None) -> tuple[Device, ModelShape, list[ArmEstimate]]:
    """``rankscope plan``: the arms (rankscope.sweep.plan.plan_arms) sized for ``device_name``."""
    device = resolve_device(device_name)
    shape = model_shape(config.model)
    return device, shape, plan_sweep(config, shape, device, arms, runtime_baseline_gib())


def preflight(config, arms) -> list[ArmEstimate]:
    """The sweep's check: every pending arm must fit where the sweep runs, or the sweep does not start."""
    from rankscope.errors import RankscopeError

    if not arms:
        return []
    device = resolve_device(None, measure_peak=False)
    shape = model_shape(config.model)
    estimates = plan_sweep(config, shape, device, arms, runtime_baseline_gib())
    for estimate in estimates:
        if not estimate.fits:
            raise RankscopeError(
                f"arm {estimate.arm_id}",
                f"needs {estimate.memory_gib:.1f} GiB on {device.name} ({device.memory_gib:g} GiB): {estimate.message}",
                f"{estimate.fix}; see `rankscope plan CONFIG`")
    return estimates
