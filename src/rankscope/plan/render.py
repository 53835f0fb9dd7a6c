"""The plan as a table for the terminal (the JSON form is ArmEstimate.to_json)."""

from __future__ import annotations

from rankscope.plan.devices import Device
from rankscope.plan.estimate import ArmEstimate
from rankscope.plan.shapes import ModelShape

PART_ORDER = ("runtime", "base", "weights", "gradients", "optimizer", "activations")


def render_plan(device: Device, shape: ModelShape, estimates: list[ArmEstimate]) -> str:
    lines = [
        f"model: {shape.name}: {shape.n_params / 1e9:.3f}e9 parameters, {shape.n_layers} layers, hidden {shape.hidden}, "
        f"vocabulary {shape.vocab}",
        f"device: {device.name}: {device.memory_gib:g} GiB, peak {device.peak_tflops:g} TFLOP/s ({device.peak_source})",
        "memory in GiB; step time at the stated peak (a lower bound); activations at train.batch_size x train.max_length",
        "",
        f"{'arm':<44} {'trainable':>12} {'total':>7} " + " ".join(f"{p:>9}" for p in PART_ORDER)
        + f" {'act(ckpt)':>9} {'step s':>8}  verdict",
    ]
    for e in estimates:
        step = f"{e.step_time_s:.3g}" if e.step_time_s is not None else "-"
        verdict = e.message + (f" -> {e.fix}" if e.fix else "")
        if e.per_gpu_gib is not None:
            verdict += f"; {e.per_gpu_gib:.1f} GiB per GPU"
        lines.append(
            f"{e.arm_id[:44]:<44} {e.trainable_params:>12,} {e.memory_gib:>7.2f} "
            + " ".join(f"{e.memory_parts[p]:>9.2f}" for p in PART_ORDER)
            + f" {e.activations_gib['with_checkpointing']:>9.2f} {step:>8}  {verdict}")
    return "\n".join(lines)
