"""Benchmark: exact vs top-k weight pass on the default model's real weights (SmolLM2-135M).

No training: an sft-like arm (every block weight plus a product of two Gaussian rank-4 factors scaled by 2.5% of its RMS, and a
dense part of 1e-4 of its mean |w|) and a LoRA arm (r = 8 on all linear layers, B ~ N(0, 0.02)).
For each method: the base reference (in memory) and each arm's weight pass, in CPU seconds on one
thread; then the intruder counts of both methods, how many matrices differ, and the largest
singular-value difference relative to s_1.

Run: ``python bench/analysis_default_model.py``.
"""

from __future__ import annotations

import copy
import time

import peft
import torch

from rankscope.analysis.weight_spectra import SpectralSettings, build_base_reference, weight_update_spectra
from rankscope.config import ModelSpec
from rankscope.models.load import load_base_model


def arms(base: torch.nn.Module) -> dict[str, torch.nn.Module]:
    sft = copy.deepcopy(base)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in sft.named_parameters():
            if ".layers." in name and p.ndim == 2:
                d_out, d_in = p.shape
                low = torch.randn(d_out, 4, generator=g) @ torch.randn(4, d_in, generator=g)
                p.add_(0.025 * p.norm() / (d_out * d_in) ** 0.5 * low
                       + 1e-4 * p.abs().mean() * torch.randn(p.shape, generator=g))
    lora = peft.get_peft_model(copy.deepcopy(base), peft.LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    torch.manual_seed(1)
    for module in lora.modules():
        if hasattr(module, "lora_B") and "default" in getattr(module, "lora_B", {}):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.02)
    return {"sft": sft, "lora": lora}


def main() -> None:
    torch.set_num_threads(1)
    base = load_base_model(ModelSpec()).model
    models = arms(base)
    out = {}
    for method in ("exact", "topk"):
        settings = SpectralSettings(method=method, device="cpu")
        start = time.process_time()
        cache = build_base_reference(base, None, settings)
        base_s = time.process_time() - start
        for arm, model in models.items():
            start = time.process_time()
            out[(method, arm)] = weight_update_spectra(arm, model, cache, settings=settings)
            print(f"{method} {arm}: base reference {base_s:.1f} s CPU, arm pass {time.process_time() - start:.1f} s CPU",
                  flush=True)
    for arm in models:
        exact, topk = out[("exact", arm)], out[("topk", arm)]
        counts = [{(r.layer, r.module): r.value for r in res.rows if r.metric == "intruder_dimensions"}
                  for res in (exact, topk)]
        differing = sum(counts[0][key] != counts[1][key] for key in counts[0])
        worst = max(float(abs(exact.singular_values[key][:len(v)] - v).max() / exact.singular_values[key][0])
                    for key, v in topk.singular_values.items() if exact.singular_values[key][0] > 0)
        print(f"{arm}: intruders exact {sum(counts[0].values()):.0f}, top-k {sum(counts[1].values()):.0f}, "
              f"matrices differing {differing}, max singular value difference / s_1 {worst:.2e}")


if __name__ == "__main__":
    main()
