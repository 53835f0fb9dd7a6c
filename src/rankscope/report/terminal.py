"""The compact tables printed in the terminal at the end of ``rankscope run`` / ``demo`` and
``rankscope eval``, built from the run directory by the report's own table code (one definition
of gain and forgetting for the terminal and the HTML page). The CLI calls these after the sweep
returns; the sweep itself never imports the report (docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from rankscope.report.recommend import recommend
from rankscope.report.tables import Table, accuracy_table, build_views, failed_table, gain_forgetting_table
from rankscope.runstore.reader import load_run


def _rich(table: Table) -> RichTable:
    rendered = RichTable(title=table.title, caption=table.note or None, title_justify="left")
    for index, column in enumerate(table.columns):
        rendered.add_column(column, justify="left" if index == 0 else "right", no_wrap=index == 0)
    for row in table.rows:
        rendered.add_row(*row)
    return rendered


def print_summary(run_dir: Path, console: Console | None = None) -> None:
    console = console or Console()
    store = load_run(run_dir)
    for view in build_views(store):
        console.print(_rich(accuracy_table(view)))
        console.print(_rich(gain_forgetting_table(view)))
        advice = recommend(view)
        console.print(f"[bold]recommended rank:[/bold] {advice.rank if advice.decided else 'undecided'} — {advice.reason}")
        for warning in advice.warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    failed = failed_table(store)
    if failed.rows:
        console.print(_rich(failed))


def print_eval_table(results_csv: Path, console: Console | None = None) -> None:
    """Accuracy (and margin) per dataset of a one-model evaluation."""
    import csv

    console = console or Console()
    table = RichTable(title="evaluation", title_justify="left")
    for column in ("dataset", "kind", "format", "metric", "value", "stderr", "n"):
        table.add_column(column, justify="left" if column in {"dataset", "kind", "format", "metric"} else "right")
    with open(results_csv, newline="") as handle:
        for row in csv.DictReader(handle):
            table.add_row(row["dataset"], row["kind"], row["format"], row["metric"], row["value"], row["stderr"], row["n"])
    console.print(table)
