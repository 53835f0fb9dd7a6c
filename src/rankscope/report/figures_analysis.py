"""Inside-the-network figures: weight-update spectra, representation drift, attention structure.

They read analysis/ in the store (spectral.csv, representation.csv, attention.csv,
singular_values.safetensors, attention_maps.safetensors). Metric names follow the analysis
package: ``effective_rank`` (entropy of normalised singular values; Roy & Vetterli 2007),
``stable_rank`` (||dW||_F^2 / ||dW||_2^2), any metric starting with ``intruder`` (intruder
dimensions; Shuttleworth et al. 2024), ``cka`` (debiased CKA vs base on masked probes; Kornblith et al. 2019) and
``entropy`` / ``entropy_change`` (attention entropy per head). Values are averaged over seeds,
and over layers and modules where a figure shows one number per arm. Analysis runs for the
whole sweep, so these figures are per run, not per training set.
"""

from __future__ import annotations

import math

import numpy as np

from rankscope.report.figures import (FigureResult, SFT_COLOR, grid, log2_rank_axis, new_figure, rank_colors,
                                      render, text)
from rankscope.runstore.reader import AnalysisRow, RunStore
from rankscope.report.tables import ArmKey, arm_keys

MAX_PANELS = 12


def natural(value: str) -> tuple:
    """Sort layers numerically when they are numbers ('2' before '10')."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _by_group(store: RunStore, rows: list[AnalysisRow], match) -> dict[ArmKey, list[AnalysisRow]]:
    keys = arm_keys(store)
    out: dict[ArmKey, list[AnalysisRow]] = {}
    for r in rows:
        if r.arm_id in keys and match(r.metric):
            out.setdefault(keys[r.arm_id], []).append(r)
    return dict(sorted(out.items(), key=lambda kv: kv[0].order))


def _per_rank(store: RunStore, name: str, title: str, caption: str, metrics: list[tuple[str, object]],
              diagonal: bool) -> FigureResult:
    """One panel per metric: mean over layers/modules (± sd) vs LoRA rank, sft as a dashed line."""
    panels = [(label, _by_group(store, store.spectral, match)) for label, match in metrics]
    panels = [(label, groups) for label, groups in panels if any(g.method == "lora" for g in groups)]
    if not panels:
        wanted = " or ".join(label for label, _ in metrics)
        return FigureResult(name, title, caption, skipped=f"analysis/spectral.csv has no {wanted} values for LoRA arms.")
    fig, axes = grid(len(panels), 2, (4.2, 3.1))
    for ax, (label, groups) in zip(axes, panels):
        lora = [(g, np.array([r.value for r in rows])) for g, rows in groups.items() if g.method == "lora"]
        ranks = [g.rank for g, _ in lora]
        ax.errorbar(ranks, [v.mean() for _, v in lora], yerr=[v.std() for _, v in lora], marker="o",
                    capsize=3, label="lora (mean ± sd over matrices)")
        for g, rows in groups.items():
            if g.method == "sft":
                ax.axhline(np.mean([r.value for r in rows]), color=SFT_COLOR, linestyle="--", label="sft")
        if diagonal:
            ax.plot(sorted(ranks), sorted(ranks), color="0.6", linestyle=":", label="= rank (upper bound)")
        log2_rank_axis(ax, ranks)
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    return FigureResult(name, title, caption, render(fig))


def effective_rank(store: RunStore) -> FigureResult:
    return _per_rank(
        store, "effective_rank", "Rank of the weight update vs LoRA rank",
        "Energy ranks (directions holding 90% / 99% of ||dW||_F^2; rounding noise barely moves them), "
        "stable rank and effective rank (entropy of normalised singular values, inflated by noise; "
        "for sft only with analysis.full_spectrum) of dW, averaged over layers and modules; a LoRA "
        "update has rank at most r (dotted).",
        [("energy rank 90%", lambda m: m == "energy_rank_90"),
         ("energy rank 99%", lambda m: m == "energy_rank_99"),
         ("stable rank", lambda m: m == "stable_rank"),
         ("effective rank", lambda m: m in ("effective_rank", "erank"))], diagonal=True)


def intruders(store: RunStore) -> FigureResult:
    return _per_rank(
        store, "intruder_dimensions", "Intruder dimensions vs LoRA rank",
        "Singular vectors of the fine-tuned weights with low similarity to every pre-trained singular "
        "vector (Shuttleworth et al. 2024), mean per matrix; sft dashed.",
        [("intruder dimensions per matrix", lambda m: m.startswith("intruder"))], diagonal=False)


def spectrum_decay(store: RunStore, max_index: int = 64) -> FigureResult:
    name, title = "singular_value_decay", "Singular value decay of the weight update"
    caption = ("Singular values of dW normalised by the largest (median over layers, modules and seeds), "
               "log scale; one line per arm.")
    keys = arm_keys(store)
    spectra: dict[ArmKey, list[np.ndarray]] = {}
    for key, vector in store.singular_values.items():
        arm_id = key.split("/", 1)[0]
        if arm_id in keys and keys[arm_id].method != "base" and vector.size and vector.max() > 0:
            v = np.sort(vector.ravel())[::-1][:max_index] / vector.max()
            spectra.setdefault(keys[arm_id], []).append(np.where(v > 0, v, np.nan))
    if not spectra:
        return FigureResult(name, title, caption, skipped="analysis/singular_values.safetensors is absent or empty.")
    fig = new_figure(6.0, 3.9)
    ax = fig.add_subplot()
    colors = rank_colors(list(spectra))
    for g in sorted(spectra, key=lambda g: g.order):
        length = max(len(v) for v in spectra[g])
        stack = np.full((len(spectra[g]), length), np.nan)
        for i, v in enumerate(spectra[g]):
            stack[i, : len(v)] = v
        counts = np.sum(~np.isnan(stack), axis=0)
        median = np.array([np.nanmedian(stack[:, j]) if counts[j] else np.nan for j in range(length)])
        ax.plot(np.arange(1, length + 1), median, marker=".", color=colors[g],
                linestyle="--" if g.method == "sft" else "-", label=text(g.label))
    ax.set_yscale("log")
    ax.set_xlabel("singular value index")
    ax.set_ylabel("σ_i / σ_1")
    ax.legend(fontsize=7, ncol=2)
    return FigureResult(name, title, caption, render(fig))


def cka_heatmap(store: RunStore) -> FigureResult:
    name, title = "cka_drift", "Representation drift (debiased CKA vs base)"
    caption = ("Debiased CKA between base and arm hidden states per layer on question/answer tokens, "
               "template and attention-sink tokens masked (1 = unchanged); mean over seeds.")
    groups = {g: rows for g, rows in _by_group(store, store.representation, lambda m: m == "cka").items()
              if g.method != "base"}
    if not groups:
        return FigureResult(name, title, caption, skipped="analysis/representation.csv has no CKA values.")
    layers = sorted({r.layer for rows in groups.values() for r in rows}, key=natural)
    order = list(groups)
    matrix = np.full((len(layers), len(order)), np.nan)
    for j, g in enumerate(order):
        for i, layer in enumerate(layers):
            vals = [r.value for r in groups[g] if r.layer == layer]
            matrix[i, j] = np.mean(vals) if vals else np.nan
    fig = new_figure(max(4.0, 0.7 * len(order) + 2.5), max(3.0, 0.28 * len(layers) + 1.5))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, aspect="auto", cmap="magma", vmin=min(np.nanmin(matrix), 0.99), vmax=1.0)
    ax.set_xticks(range(len(order)), [text(g.label) for g in order], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(layers)), [text(x) for x in layers], fontsize=7)
    ax.set_ylabel("layer")
    if matrix.size <= 200:
        for (i, j), v in np.ndenumerate(matrix):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v < 0.9 else "black")
    fig.colorbar(image, ax=ax, label="CKA")
    return FigureResult(name, title, caption, render(fig))


def _entropy_change(store: RunStore) -> dict[ArmKey, dict[tuple[str, int], float]]:
    """entropy_change per (layer, head), or arm entropy minus base entropy when only that is stored."""
    keys = arm_keys(store)
    change: dict[ArmKey, dict[tuple[str, int], list[float]]] = {}
    entropy: dict[ArmKey, dict[tuple[str, int], list[float]]] = {}
    for r in store.attention:
        if r.arm_id not in keys or r.head is None:
            continue
        target = change if r.metric == "entropy_change" else entropy if r.metric == "entropy" else None
        if target is not None:
            target.setdefault(keys[r.arm_id], {}).setdefault((r.layer, r.head), []).append(r.value)
    mean = {g: {k: float(np.mean(v)) for k, v in cells.items()} for g, cells in change.items()}
    base = next((mean_e for g, mean_e in entropy.items() if g.method == "base"), None)
    if base is not None:
        for g, cells in entropy.items():
            if g.method != "base" and g not in mean:
                mean[g] = {k: float(np.mean(v)) - float(np.mean(base[k])) for k, v in cells.items() if k in base}
    return {g: cells for g, cells in sorted(mean.items(), key=lambda kv: kv[0].order) if cells and g.method != "base"}


def _index_ticks(ax, xlabels: list[str], ylabels: list[str], most: int = 8) -> None:
    """Integer cells get their own labels, thinned to at most ``most`` per axis."""
    xs = range(0, len(xlabels), max(1, math.ceil(len(xlabels) / most)))
    ys = range(0, len(ylabels), max(1, math.ceil(len(ylabels) / most)))
    ax.set_xticks(list(xs), [text(xlabels[i]) for i in xs])
    ax.set_yticks(list(ys), [text(ylabels[i]) for i in ys])


def attention_entropy(store: RunStore) -> FigureResult:
    name, title = "attention_entropy_change", "Attention entropy change vs base"
    caption = ("Change in attention entropy (nats) per layer (rows) and head (columns), arm − base, on the "
               f"probe prompts; red = more diffuse, blue = sharper. At most {MAX_PANELS} arms shown.")
    data = _entropy_change(store)
    if not data:
        return FigureResult(name, title, caption, skipped="analysis/attention.csv has no entropy values.")
    groups = list(data)[:MAX_PANELS]
    layers = sorted({k[0] for g in groups for k in data[g]}, key=natural)
    heads = sorted({k[1] for g in groups for k in data[g]})
    limit = max(1e-9, max(abs(v) for g in groups for v in data[g].values()))
    fig, axes = grid(len(groups), 4, (2.6, max(2.2, 0.22 * len(layers) + 1.2)))
    image = None
    for ax, g in zip(axes, groups):
        matrix = np.full((len(layers), len(heads)), np.nan)
        for (layer, head), v in data[g].items():
            matrix[layers.index(layer), heads.index(head)] = v
        image = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(text(g.label), fontsize=8)
        _index_ticks(ax, [str(h) for h in heads], layers)
        ax.set_xlabel("head", fontsize=7)
        ax.set_ylabel("layer", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.colorbar(image, ax=axes, label="Δ entropy (nats)", shrink=0.8)
    return FigureResult(name, title, caption, render(fig))


def attention_maps(store: RunStore) -> FigureResult:
    name, title = "attention_maps", "Mean attention maps, last analysed layer"
    caption = "Attention weights averaged over heads and probe prompts (query rows, key columns), base and each arm."
    keys = arm_keys(store)
    by_layer: dict[str, dict[ArmKey, np.ndarray]] = {}
    for key, value in store.attention_maps.items():
        arm_id, _, layer = key.partition("/")
        if arm_id in keys and value.ndim == 3:
            by_layer.setdefault(layer, {}).setdefault(keys[arm_id], value.mean(axis=0))
    if not by_layer:
        return FigureResult(name, title, caption, skipped="analysis/attention_maps.safetensors is absent or empty.")
    layer = max(by_layer, key=natural)
    maps = sorted(by_layer[layer].items(), key=lambda kv: kv[0].order)[:MAX_PANELS]
    fig, axes = grid(len(maps), 4, (2.4, 2.4))
    for ax, (g, matrix) in zip(axes, maps):
        ax.imshow(matrix, cmap="viridis", vmin=0.0)
        ax.set_title(text(f"{g.label} (layer {layer})"), fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return FigureResult(name, title, caption, render(fig))


def analysis_figures(store: RunStore) -> list[FigureResult]:
    """The per-run inside-the-network figures, in reading order."""
    return [f(store) for f in (spectrum_decay, effective_rank, intruders, cka_heatmap, attention_entropy, attention_maps)]
