"""Assemble and write reports: one run (report.html) or several side by side (compare.html).

Output layout (single run, ``out_dir`` defaults to the run directory):
    report.html   self-contained (figures embedded as base64 PNG, inline CSS, no script, no URL)
    summary.md    the same tables and recommendation as markdown, linking figures/*.png
    figures/*.png every figure as a file
Several runs (``out_dir`` defaults to the *first* run's directory): ``compare.html``,
``compare.md`` and ``figures/compare/*.png``. The comparison never overwrites a run's own
report.html and writes nothing into the other runs' directories (they may be read-only copies).
Every file is written to a temporary name and renamed into place, like the rest of the store.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rankscope.atomic import atomic_write_bytes
from rankscope.errors import RankscopeError
from rankscope.report.analysis_table import analysis_summary_table
from rankscope.report.document import CompareReport, RunReport
from rankscope.report.fidelity import nll_table, truncation_table
from rankscope.report.figures import FigureResult, accuracy_vs_rank, gain_vs_forgetting, outcome_figures
from rankscope.report.figures_analysis import analysis_figures
from rankscope.report.capacity_table import capacity_table
from rankscope.report.control_table import control_table
from rankscope.report.intruder_table import intruder_grid_table
from rankscope.report.prediction_table import hit_rate_table, prediction_checks, prediction_table
from rankscope.report.size_table import size_table
from rankscope.report.header import example_predictions, one_seed_warning, run_header, units_table
from rankscope.report.html import render_compare, render_run
from rankscope.report.learning_rates import rate_curves, rate_table
from rankscope.report.recommend import recommend
from rankscope.runstore.reader import RunStore, load_run
from rankscope.report.summary import compare_markdown, run_markdown
from rankscope.report.tables import Table, build_views, failed_table, pct, view_tables
from rankscope.verdicts.run_dir import write_verdicts


def build_run_report(store: RunStore, full: bool = True) -> RunReport:
    """Tables, recommendations and figures of one run (``full=False``: only the key figures)."""
    views = build_views(store)
    recs = [recommend(v) for v in views]
    tables = [t for v in views for t in view_tables(v)]
    inside = analysis_summary_table(store)
    if inside is not None:
        tables.append(inside)
    grid = intruder_grid_table(store)
    if grid is not None:
        tables.append(grid)
    tables += [t for t in (rate_table(store), truncation_table(store), nll_table(store)) if t is not None]
    tables += [t for t in (capacity_table(store), size_table(store, recs), control_table(store)) if t is not None]
    checks = prediction_checks(store)
    tables += [t for t in (prediction_table(checks), hit_rate_table(checks)) if t is not None]
    if full:  # header first; example predictions and the legend of units last
        tables = [run_header(store), *tables, *example_predictions(store), units_table()]
    warning = one_seed_warning(store)
    if warning and warning not in store.notes:
        store.notes.insert(0, warning)
    if full:
        figures = outcome_figures(views) + rate_curves(store) + analysis_figures(store)
    else:
        many = len(views) > 1
        figures = [f(v, many) for v in views for f in (accuracy_vs_rank, gain_vs_forgetting)]
    return RunReport(store, views, recs, tables, _unique_names(figures), failed_table(store), store.name)


def _unique_names(figures: list[FigureResult]) -> list[FigureResult]:
    """Two training sets whose names slug alike must not overwrite each other's figure files."""
    seen: dict[str, int] = {}
    out = []
    for f in figures:
        seen[f.name] = seen.get(f.name, 0) + 1
        out.append(f if seen[f.name] == 1 else dataclasses.replace(f, name=f"{f.name}-{seen[f.name]}"))
    return out


def _write_figures(figures: list[FigureResult], folder: Path) -> None:
    for fig in figures:
        if fig.png is not None:
            atomic_write_bytes(folder / f"{fig.name}.png", fig.png)


def _run_labels(stores: list[RunStore]) -> list[str]:
    """Run names, made unique with the directory name and position when they collide."""
    names = [s.name for s in stores]
    return [f"{i + 1}. {n}" + (f" ({s.path.name})" if names.count(n) > 1 and s.path.name != n else "")
            for i, (s, n) in enumerate(zip(stores, names))]


def build_compare(stores: list[RunStore]) -> CompareReport:
    labels = _run_labels(stores)
    runs = []
    for i, (store, label) in enumerate(zip(stores, labels)):
        run = build_run_report(store, full=False)
        run.title = label
        run.figures = [dataclasses.replace(f, name=f"run{i + 1}-{f.name}") for f in run.figures]
        runs.append(run)
    rows, rec_rows = [], []
    for run in runs:
        for view, rec in zip(run.views, run.recommendations):
            rec_rows.append([run.title, view.train_set or "—", f"r={rec.rank}" if rec.decided else "undecided",
                             rec.reason])
            for g in view.groups:
                params = [a.train.trainable_params for a in view.arms.get(g, []) if a.train and a.train.trainable_params]
                mark = " ★" if rec.decided and rec.label == g.label else ""
                rows.append([run.title, view.train_set or "—", g.label + mark, pct(view.mean_in(g)),
                             pct(view.mean_gain(g), True) if g.method != "base" else "—",
                             pct(view.mean_forgetting(g), True) if g.method != "base" else "—",
                             f"{params[0]:,}" if params else "—"])
    combined = Table("All runs", ["run", "trained on", "arm", "mean in-domain acc (%)", "mean gain (pp)",
                                  "mean forgetting, far (pp)", "trainable params"], rows,
                     "★ = recommended rank; means over the run's in-domain / far sets with their 95% interval "
                     "(paired [low, high] from the item files; ± z x stderr without them)")
    recs = Table("Recommendations", ["run", "trained on", "recommendation", "reason"], rec_rows)
    checks = [c for run in runs for c in prediction_checks(run.store, run.title)]
    extra = [t for t in (prediction_table(checks, with_run=True), hit_rate_table(checks)) if t is not None]
    notes = [f"{run.title}: {n}" for run in runs for n in run.store.notes]
    return CompareReport(runs, combined, recs, notes, extra)


def write_report(run_dirs: list[Path] | Path, out_dir: Path | None = None) -> Path:
    """Write the report of one run, or a comparison of several; return the HTML file's path.

    One run: ``out_dir`` (default the run directory) gets report.html, summary.md, figures/.
    Several runs: ``out_dir`` (default the first run directory) gets compare.html, compare.md,
    figures/compare/. See the module docstring for why the comparison is kept apart.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise RankscopeError("write_report", "no run directory given", "pass at least one RUN_DIR")
    stores = [load_run(d) for d in dirs]
    out = Path(out_dir) if out_dir is not None else dirs[0]
    if len(stores) == 1:
        if out == dirs[0]:  # rebuilt from the item files, so an old or copied run gets them too
            write_verdicts(dirs[0], stores[0].comparisons)
        report = build_run_report(stores[0])
        _write_figures(report.figures, out / "figures")
        atomic_write_bytes(out / "summary.md", run_markdown(report, "figures").encode("utf-8"))
        target = out / "report.html"
        atomic_write_bytes(target, render_run(report).encode("utf-8"))
        return target
    compare = build_compare(stores)
    _write_figures([f for run in compare.runs for f in run.figures], out / "figures" / "compare")
    atomic_write_bytes(out / "compare.md", compare_markdown(compare, "figures/compare").encode("utf-8"))
    target = out / "compare.html"
    atomic_write_bytes(target, render_compare(compare).encode("utf-8"))
    return target
