"""Outcome figures (accuracy, gain vs forgetting, cost, loss) and the shared figure plumbing.

Figures are drawn on ``matplotlib.figure.Figure`` with an explicit Agg canvas: no pyplot global
state and no GUI backend, so report generation works headless, in threads and under test. Every
figure function returns a :class:`FigureResult`; when its data is absent it returns one with
``skipped`` set to a sentence the HTML shows in place of the image, instead of failing.
Inside-the-network figures (spectra, CKA, attention) live in ``figures_analysis``.
"""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from rankscope.report.tables import ArmKey, View

DPI = 90
SFT_COLOR = "black"
BASE_COLOR = "0.45"


@dataclass(frozen=True)
class FigureResult:
    """One figure: PNG bytes, or the reason it was skipped. ``name`` is the file stem."""

    name: str
    title: str
    caption: str
    png: bytes | None = None
    skipped: str | None = None


def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # Agg explicitly: never touches the global backend
    return fig


def render(fig: Figure) -> bytes:
    """PNG bytes; the 'Software' tag (which carries a URL) is dropped to keep the report URL-free."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def text(value: object) -> str:
    """Data strings in figures: '$' would start matplotlib mathtext, so it is escaped."""
    return str(value).replace("$", r"\$")


def slug(value: object) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(value).lower()).strip("-")[:40] or "x"


def grid(n: int, max_cols: int = 3, size: tuple[float, float] = (3.8, 2.9)) -> tuple[Figure, list]:
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig = new_figure(size[0] * cols, size[1] * rows)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n)]
    return fig, axes


def rank_colors(groups: list[ArmKey]) -> dict[ArmKey, object]:
    """LoRA ranks on a viridis ramp (dark = small rank), sft black, base grey."""
    ranks = sorted({g.rank for g in groups if g.method == "lora" and g.rank is not None})
    cmap = matplotlib.colormaps["viridis"]
    colors: dict[ArmKey, object] = {}
    for g in groups:
        if g.method == "lora" and g.rank in ranks:
            colors[g] = cmap(0.05 + 0.75 * ranks.index(g.rank) / max(1, len(ranks) - 1))
        else:
            colors[g] = SFT_COLOR if g.method == "sft" else BASE_COLOR
    return colors


def log2_rank_axis(ax, ranks: list[int]) -> None:
    ax.set_xscale("log", base=2)
    ranks = sorted(set(ranks))
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.minorticks_off()
    if len(ranks) == 1:
        ax.set_xlim(ranks[0] / 2, ranks[0] * 2)
    ax.set_xlabel("LoRA rank (log2)")


def reference_line(ax, value: float, halfwidth: float, label: str, color: object, style: str) -> None:
    """Base or sft as a horizontal line with its interval as a band."""
    ax.axhline(value, color=color, linestyle=style, linewidth=1.2, label=label)
    if halfwidth > 0:
        ax.axhspan(value - halfwidth, value + halfwidth, color=color, alpha=0.12, linewidth=0)


def error_bar(e, z: float) -> list[list[float]]:
    """matplotlib's [[below], [above]] distances in pp: the paired interval when there is one,
    else z x stderr on both sides."""
    low, high = e.interval(z)
    return [[100 * (e.value - low)], [100 * (high - e.value)]]


def _series(view: View) -> dict[float | None, list[ArmKey]]:
    """LoRA groups split by alpha only when some rank was run with several alphas."""
    lora = [g for g in view.groups if g.method == "lora" and g.rank is not None]
    ambiguous = len({g.rank for g in lora}) < len(lora)
    series: dict[float | None, list[ArmKey]] = {}
    for g in lora:
        series.setdefault(g.alpha if ambiguous else None, []).append(g)
    return series


def _name(base: str, view: View, many: bool) -> str:
    return f"{base}-{slug(view.train_set)}" if many and view.train_set else base


def accuracy_vs_rank(view: View, many: bool = False) -> FigureResult:
    name = _name("accuracy_vs_rank", view, many)
    title = "Accuracy vs LoRA rank" + (f" (trained on {view.train_set})" if view.train_set else "")
    caption = (f"Mean score per dataset (its primary metric) with its {100 * view.confidence:g}% interval; base "
               "(grey, solid) and full fine-tuning (black, dashed) as reference lines with interval bands; dots "
               "are individual seeds.")
    series = _series(view)
    if not series or not view.datasets:
        return FigureResult(name, title, caption, skipped="No finished LoRA arm with accuracy results.")
    fig, axes = grid(len(view.datasets))
    colors = rank_colors(view.groups)
    for ax, d in zip(axes, view.datasets):
        for alpha, groups in series.items():
            pts = [(g, view.accuracy[(g, d.name)]) for g in groups if (g, d.name) in view.accuracy]
            if not pts:
                continue
            xs, ys = [g.rank for g, _ in pts], [100 * e.value for _, e in pts]
            label = "lora" if alpha is None else f"lora α={alpha:g}"
            ax.errorbar(xs, ys, yerr=[100 * view.z * e.stderr for _, e in pts], marker="o", capsize=3, label=label,
                        color="tab:blue" if alpha is None else None, zorder=3)
            for g, e in pts:
                if e.n_seeds > 1:
                    ax.scatter([g.rank] * len(e.samples), [100 * s for s in e.samples], s=10,
                               color=colors[g], alpha=0.6, zorder=4)
        for g in view.groups:
            e = view.accuracy.get((g, d.name))
            if e is not None and g.method in ("base", "sft"):
                reference_line(ax, 100 * e.value, 100 * view.z * e.stderr, g.label, colors[g],
                               "-" if g.method == "base" else "--")
        log2_rank_axis(ax, [g.rank for gs in series.values() for g in gs])
        ax.set_title(text(f"{d.name} ({d.group})"), fontsize=9)
        ax.set_ylabel(f"{d.metric} (%)")
        ax.legend(fontsize=7, loc="best")
    return FigureResult(name, title, caption, render(fig))


def gain_vs_forgetting(view: View, many: bool = False) -> FigureResult:
    name = _name("gain_vs_forgetting", view, many)
    title = "In-domain gain vs forgetting on far sets" + (f" (trained on {view.train_set})" if view.train_set else "")
    caption = (f"Pareto view: up = learns more, left = forgets less. Error bars: {100 * view.confidence:g}% paired "
               "intervals (comparisons.csv); marker area grows with trainable parameters (log); the line joins "
               "the Pareto-optimal arms.")
    if view.base is None or not view.in_domain or not view.far:
        missing = "a base arm" if view.base is None else "in-domain sets" if not view.in_domain else "far sets"
        return FigureResult(name, title, caption, skipped=f"Needs {missing}; none was scored.")
    pts = []
    for g in view.groups:
        gain, forget = view.mean_gain(g), view.mean_forgetting(g)
        if g.method != "base" and gain and forget:
            params = [a.train.trainable_params for a in view.arms.get(g, []) if a.train and a.train.trainable_params]
            pts.append((g, gain, forget, params[0] if params else None))
    if not pts:
        return FigureResult(name, title, caption, skipped="No trained arm has both gain and forgetting.")
    logs = [math.log10(p) for *_, p in pts if p]
    lo, hi = (min(logs), max(logs)) if logs else (0.0, 1.0)
    fig = new_figure(6.0, 4.2)
    ax = fig.add_subplot()
    colors = rank_colors(view.groups)
    for g, gain, forget, params in pts:
        size = 60 if not params else 30 + 400 * ((math.log10(params) - lo) / (hi - lo) if hi > lo else 0.5)
        ax.errorbar(100 * forget.value, 100 * gain.value, xerr=error_bar(forget, view.z), yerr=error_bar(gain, view.z),
                    fmt="none", ecolor=colors[g], alpha=0.7, zorder=2)
        ax.scatter([100 * forget.value], [100 * gain.value], s=size, color=colors[g], edgecolor="0.2", alpha=0.85,
                   marker="s" if g.method == "sft" else "o", zorder=3)
        offset = 3 + math.sqrt(size) / 2  # clear of the marker, whose area grows with parameters
        ax.annotate(text(g.label), (100 * forget.value, 100 * gain.value), textcoords="offset points",
                    xytext=(offset, offset), fontsize=8, zorder=5)
    frontier, best = [], -math.inf
    for g, gain, forget, _ in sorted(pts, key=lambda p: (p[2].value, -p[1].value)):
        if gain.value > best:
            frontier.append((100 * forget.value, 100 * gain.value))
            best = gain.value
    if len(frontier) > 1:
        ax.plot(*zip(*frontier), color="tab:red", linewidth=1, alpha=0.6, label="Pareto front")
        ax.legend(fontsize=8)
    ax.axhline(0, color=BASE_COLOR, linewidth=0.8)
    ax.axvline(0, color=BASE_COLOR, linewidth=0.8)
    ax.set_xlabel("mean forgetting, far sets (pp; base − arm)")
    ax.set_ylabel("mean gain, in-domain (pp; arm − base)")
    return FigureResult(name, title, caption, render(fig))


COST_FIELDS = ("trainable_params", "wall_time_s", "peak_memory_mb")


def _avg(values: list[float | None]) -> float:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else math.nan


def cost(view: View, many: bool = False) -> FigureResult:
    name = _name("cost", view, many)
    title = "Cost per arm" + (f" (trained on {view.train_set})" if view.train_set else "")
    caption = "Trainable parameters (log scale), training wall time and peak memory; mean over seeds."
    rows = []
    for g in view.groups:
        infos = [a.train for a in view.arms.get(g, []) if a.train is not None]
        if infos:
            rows.append((g, *(_avg([getattr(t, f) for t in infos]) for f in COST_FIELDS)))
    if not rows:
        return FigureResult(name, title, caption, skipped="No train.json with costs was found.")
    fig, axes = grid(3, 3, (3.4, 3.0))
    colors = rank_colors(view.groups)
    labels = [text(g.label) for g, *_ in rows]
    for i, (ax, ylabel) in enumerate(zip(axes, ["trainable parameters", "wall time (s)", "peak memory (MiB)"])):
        ax.bar(range(len(rows)), [r[i + 1] for r in rows], color=[colors[r[0]] for r in rows])
        ax.set_xticks(range(len(rows)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(ylabel)
        if i == 0:
            ax.set_yscale("log")
    return FigureResult(name, title, caption, render(fig))


def loss_curves(view: View, many: bool = False) -> FigureResult:
    name = _name("loss_curves", view, many)
    title = "Training loss" + (f" (trained on {view.train_set})" if view.train_set else "")
    caption = "Training loss per logged step; one line per seed, coloured by rank (sft black, dashed)."
    curves = [(g, a) for g in view.groups for a in view.arms.get(g, []) if a.train and a.train.loss_curve]
    if not curves:
        return FigureResult(name, title, caption, skipped="No loss curve in any train.json.")
    fig = new_figure(6.0, 3.8)
    ax = fig.add_subplot()
    colors = rank_colors(view.groups)
    seen: set[ArmKey] = set()
    for g, a in curves:
        steps, losses = zip(*a.train.loss_curve)
        ax.plot(steps, losses, color=colors[g], linestyle="--" if g.method == "sft" else "-", linewidth=1.3,
                label=None if g in seen else text(g.label))
        seen.add(g)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=8)
    return FigureResult(name, title, caption, render(fig))


def outcome_figures(views: list[View]) -> list[FigureResult]:
    """The per-training-set figures, in reading order."""
    many = len(views) > 1
    return [f(v, many) for v in views for f in (accuracy_vs_rank, gain_vs_forgetting, cost, loss_curves)]
