"""Per-layer CKA of finished arms vs the base, with the clean probes (issue 13 part 7).

For a finished run directory (``config.yaml`` and ``arms/<id>/`` with ``model.safetensors`` for
sft arms and ``adapter/`` for LoRA arms) it rebuilds the sweep's data and base model from the
run's config, builds the analysis probes (questions and answers, ``--probe-max-length`` tokens),
computes the base reference once (hidden states and the template/sink token mask) and prints, per
hidden-state layer: tokens masked as template and as sinks, and for every chosen arm the new
``cka`` (debiased, masked) beside ``unmasked`` (plain linear CKA on every real token, which is
what ``cka`` meant before, on the same new probes). A run made with the new code already has
``cka`` in ``analysis/representation.csv``; this script is for runs made before, to see both, or
to try other settings.

``--base-only`` needs no arms: it prints the massive-activation statistics of the base model on
the probes (first-token norm, median norm, largest norm ratio over all real tokens and over the
kept tokens) per layer.

Run: ``python bench/probe_cka.py RUN_DIR [--arms sft r64] [--probe-max-length 128]``
     ``python bench/probe_cka.py --config quick --base-only``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rankscope.analysis.probe_pass import reference_pass, token_flags
from rankscope.analysis.probes import build_probes
from rankscope.analysis.representation import collect_hidden_states, linear_cka, representation_drift
from rankscope.config import RankscopeConfig, load_config
from rankscope.models.load import load_base_model
from rankscope.sweep.context import load_sweep_data

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_arms import arm_model, finished_arms  # noqa: E402


def _config(args: argparse.Namespace) -> RankscopeConfig:
    if args.run_dir:
        return load_config(Path(args.run_dir) / "config.yaml")
    preset = Path(__file__).resolve().parents[1] / "src" / "rankscope" / "presets" / f"{args.config}.yaml"
    return load_config(preset if preset.is_file() else args.config)


def _arm_dirs(run_dir: Path, wanted: list[str]) -> dict[str, Path]:
    """``label -> arm folder`` for ``sft`` and ``r<rank>`` labels (first finished seed)."""
    found: dict[str, Path] = {}
    for arm in finished_arms(run_dir):
        if arm.label in wanted and arm.label not in found:
            found[arm.label] = arm.folder
    return found


def _arm_states(base_model: torch.nn.Module, folder: Path, probes) -> list[torch.Tensor]:
    with arm_model(base_model, folder) as model:
        return collect_hidden_states(model, probes.input_ids, probes.attention_mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?")
    parser.add_argument("--config", default="quick", help="preset or config file (without RUN_DIR)")
    parser.add_argument("--arms", nargs="+", default=["sft", "r64"])
    parser.add_argument("--probe-max-length", type=int, default=None)
    parser.add_argument("--base-only", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = _config(args)
    spec = config.analysis
    max_length = args.probe_max_length or spec.probe_max_length
    data = load_sweep_data(config)
    base = load_base_model(config.model)
    probes = build_probes(base.tokenizer, [d.test for d in data.evaluated.values()],
                          size=spec.probe_size, max_length=max_length)
    hidden, _, mask, _ = reference_pass(base.model, probes, batch_size=spec.batch_size,
                                        sink_norm_ratio=spec.sink_norm_ratio)
    content, first = token_flags(probes)
    print(f"probes: {tuple(probes.input_ids.shape)}, {int(probes.attention_mask.sum())} real tokens, "
          f"{mask.template} template tokens masked; sink rule: first token or norm > {spec.sink_norm_ratio} x median")
    if args.base_only or not args.run_dir:
        print("layer  first_norm  median_norm  max_ratio_all  max_ratio_kept  masked_sink  kept")
        for layer, X in enumerate(hidden):
            norms = X.double().norm(dim=1)
            med = norms.median()
            kept = norms[mask.keep[layer]]
            print(f"{layer:5d}  {float(norms[first].mean()):10.1f}  {float(med):11.1f}  {float(norms.max() / med):13.1f}"
                  f"  {float(kept.max() / kept.median()):14.2f}  {mask.sink[layer]:11d}  {int(mask.keep[layer].sum()):4d}")
        return
    arms = _arm_dirs(Path(args.run_dir), args.arms)
    if not arms:
        raise SystemExit(f"no finished arms {args.arms} under {args.run_dir}/arms")
    columns: dict[str, dict[tuple[int, str], float]] = {}
    for label, folder in arms.items():
        states = _arm_states(base.model, folder, probes)
        rows = representation_drift(label, hidden, states, mask=mask)
        columns[label] = {(r.layer, r.metric): r.value for r in rows}
        columns[label] |= {(layer, "cka_unmasked"): linear_cka(X, Y) for layer, (X, Y) in enumerate(zip(hidden, states))}
    header = "layer  tmpl  sink  " + "  ".join(f"{label + '_cka':>12}  {label + '_unmasked':>14}" for label in arms)
    print(header)
    for layer in range(len(hidden)):
        cells = "  ".join(f"{columns[label][(layer, 'cka')]:12.6f}  {columns[label][(layer, 'cka_unmasked')]:14.7f}"
                          for label in arms)
        print(f"{layer:5d}  {mask.template:4d}  {mask.sink[layer]:4d}  {cells}")


if __name__ == "__main__":
    main()
