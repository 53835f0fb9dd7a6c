"""Analysis time per arm on a preset's probes: probe forward + CKA + attention statistics.

Builds the sweep's probes (``rankscope.sweep.arm.build_probes``), the base reference without
intruders, and a LoRA r64 arm with a random nonzero B (untrained: the time does not depend on
training), then times ``analyze_arm`` twice and prints its timings; "probe part" is the total
minus the spectral step (unchanged by the probe work). It uses only names that existed before
issue 13, so the same file measures an older checkout too:

    PYTHONPATH=src python bench/probe_time.py src/rankscope/presets/quick.yaml
    PYTHONPATH=/path/to/old/src python bench/probe_time.py /path/to/old/src/rankscope/presets/quick.yaml

The last lines print the r64 arm's per-layer representation metrics (``cka`` and, with the new
code, the masked-token counts).
"""

from __future__ import annotations

import sys
import time

import torch

from rankscope.analysis import BaseReference, analyze_arm
from rankscope.config import load_config
from rankscope.models.arms import apply_lora
from rankscope.sweep.arm import build_probes
from rankscope.sweep.context import SweepContext


def main() -> None:
    torch.set_num_threads(1)
    config = load_config(sys.argv[1])
    context = SweepContext(config)
    base = context.base
    probes = build_probes(context)
    ids = probes["input_ids"] if isinstance(probes, dict) else probes.input_ids
    print("probes", tuple(ids.shape))
    spec = config.analysis.model_copy(update={"intruders": False})
    t0 = time.perf_counter()
    reference = BaseReference.compute(base.model, probes, intruders=False)
    print("reference_s", round(time.perf_counter() - t0, 2))
    model = apply_lora(base.model, config.arms.lora, 64, 0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(0.02 * torch.randn(p.shape, generator=generator))
    for _ in range(2):
        t0 = time.perf_counter()
        result = analyze_arm("lora64", model, reference, probes, spec)
        total = time.perf_counter() - t0
        timings = {k: round(v, 2) for k, v in result.timings.items()}
        print("analyze_arm_s", round(total, 2), timings, "probe part:", round(total - result.timings["spectral_s"], 2))
    per_layer: dict[int, dict[str, float]] = {}
    for row in result.representation:
        per_layer.setdefault(row.layer, {})[row.metric] = round(row.value, 6)
    for layer in sorted(per_layer):
        print(layer, per_layer[layer])


if __name__ == "__main__":
    main()
