"""The report's learning-rate section: the U-curves of validation score against the rate, the best
rate per arm, and the best-LoRA / best-SFT ratio beside the published one.

Schulman et al. (2025, "LoRA Without Regret") find the best LoRA rate about 10x the full
fine-tuning one and nearly flat across ranks under alpha/r scaling; a run whose ratio or whose
per-rank optimum differs a lot from that is worth a second look before its rank verdict is
trusted. The selection itself is in :mod:`rankscope.verdicts.learning_rates` (validation only).
"""

from __future__ import annotations

import math

import matplotlib

from rankscope.report.figures import SFT_COLOR, FigureResult, new_figure, render, slug, text
from rankscope.report.tables import Table, rate_text
from rankscope.runstore.reader import RunStore
from rankscope.verdicts.learning_rates import PUBLISHED_LORA_SFT_RATIO, RateChoice, RateSummary


def _train_sets(summary: RateSummary) -> list[str | None]:
    return sorted({c.train_set for c in summary.choices}, key=lambda t: t or "")


def _score_text(value: float | None, loss: float | None) -> str:
    if value is None:
        return "failed"
    return f"{100 * value:.1f}" + (f" (loss {loss:.3f})" if loss is not None else "")


def ratio_text(summary: RateSummary, train_set: str | None) -> str:
    """'best LoRA / best SFT rate: 20x (published ~10x)', or why there is none."""
    ratio = summary.ratio(train_set)
    if ratio is None:
        return "best LoRA / best SFT rate: needs a grid for both methods"
    low, high = ratio
    shown = f"{low:.3g}x" if math.isclose(low, high) else f"{low:.3g}x to {high:.3g}x over ranks"
    return f"best LoRA / best SFT rate: {shown} (published ~{PUBLISHED_LORA_SFT_RATIO:g}x, Schulman et al. 2025)"


def rate_table(store: RunStore) -> Table | None:
    """One row per tuned arm group: every rate's validation score, the selected rate, the edge flag."""
    summary = store.rates
    if not summary.choices:
        return None
    grid = sorted({s.lr for c in summary.choices for s in c.scores})
    many = len(_train_sets(summary)) > 1
    rows = []
    for c in summary.choices:
        by_rate = {s.lr: s for s in c.scores}
        label = c.label + (f" [{c.train_set}]" if many and c.train_set else "")
        cells = [_score_text(by_rate[lr].val_accuracy, by_rate[lr].val_loss) if lr in by_rate else ""
                 for lr in grid]
        edge = "⚠ at the edge: widen the grid" if c.at_edge else ""
        sft = summary.best_sft_rate(c.train_set)
        ratio = f"{c.selected / sft:.3g}x" if c.method == "lora" and sft and c.selected else "—"
        rows.append([label, rate_text(c.selected), "—" if c.alpha is None else f"{c.alpha:g}"] + cells
                    + [ratio, edge or c.reason])
    criterion = "validation loss" if summary.choices[0].select_by == "val_loss" else "validation score"
    notes = "; ".join(f"{ts}: {ratio_text(summary, ts)}" if ts else ratio_text(summary, ts)
                      for ts in _train_sets(summary))
    return Table("Learning rate per arm (chosen on the validation split)",
                 ["arm", "learning rate", "alpha"] + [f"val @ {rate_text(lr)}" for lr in grid]
                 + ["rate / best SFT rate", "selection"], rows,
                 f"each arm was trained at every rate of its grid and scored on its training set's validation "
                 f"split only (never the test split); the selected rate has the best mean {criterion} over "
                 f"seeds (ties: the lower validation loss), and only it is evaluated on the test and "
                 f"out-of-domain sets; val = primary metric (%) with the mean answer-token loss; {notes}")


def rate_curves(store: RunStore) -> list[FigureResult]:
    """The U-curves: mean validation score against the learning rate, one line per rank plus SFT."""
    summary = store.rates
    out = []
    many = len(_train_sets(summary)) > 1
    for train_set in _train_sets(summary):
        name = "learning_rate_curves" + (f"_{slug(train_set)}" if many and train_set else "")
        title = "Validation score vs learning rate" + (f" (trained on {train_set})" if train_set else "")
        caption = ("Mean validation score over seeds at each rate of the grid; one line per LoRA rank (coloured "
                   "by rank) and SFT (black, dashed); the filled marker is the selected rate. A best rate at the "
                   "edge of a grid means the grid should be widened.")
        mine = [c for c in summary.choices if c.train_set == train_set]
        points = [(c, [(s.lr, s.val_accuracy) for s in c.scores if s.val_accuracy is not None]) for c in mine]
        points = [(c, p) for c, p in points if p]
        if not points:
            out.append(FigureResult(name, title, caption, skipped="No candidate finished on its validation split."))
            continue
        fig = new_figure(6.0, 3.8)
        ax = fig.add_subplot()
        lora = sorted({c.rank for c, _ in points if c.method == "lora"})
        for c, series in points:
            color = SFT_COLOR if c.method == "sft" else _rank_color(c, lora)
            xs, ys = zip(*series)
            ax.plot(xs, [100 * y for y in ys], marker="o", color=color, linestyle="--" if c.method == "sft" else "-",
                    fillstyle="none", label=text(_label(c)))
            if c.selected is not None and c.selected in xs:
                ax.plot([c.selected], [100 * ys[xs.index(c.selected)]], marker="o", color=color, linestyle="")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("validation score (%)")
        ax.legend(fontsize=8)
        out.append(FigureResult(name, title, caption, render(fig)))
    return out


def _label(choice: RateChoice) -> str:
    return choice.label + (f" a{choice.alpha:g}" if choice.method == "lora" and choice.alpha is not None else "")


def _rank_color(choice: RateChoice, ranks: list[int]) -> object:
    """Ranks ascend from dark to light, as in the other outcome figures."""
    cmap = matplotlib.colormaps["viridis"]
    position = ranks.index(choice.rank) / max(1, len(ranks) - 1) if choice.rank in ranks else 0.5
    return cmap(0.1 + 0.75 * position)
