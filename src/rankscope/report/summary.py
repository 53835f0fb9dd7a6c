"""Render reports as markdown (summary.md / compare.md): the numbers, diff- and terminal-friendly.

Markdown viewers pass raw HTML through, so ``<``, ``>`` and ``&`` in data strings are
backslash-escaped (CommonMark: a backslash-escaped character is literal text, never a tag or an
entity), as are the characters that would break a pipe table or start markdown markup
(| ` * [ ]). A plain-text reader thus sees a backslash before ``<`` rather than ``&lt;``. Figures are linked as
files relative to the markdown file.
"""

from __future__ import annotations


from rankscope.report.document import CompareReport, RunReport
from rankscope.report.figures import FigureResult
from rankscope.report.recommend import Recommendation
from rankscope.report.tables import Table

_MD_SPECIAL = {c: "\\" + c for c in "|`*[]<>&\\"}


def md(value: object) -> str:
    """One line of escaped text, safe in a table cell."""
    text = " ".join(str(value).split())
    return "".join(_MD_SPECIAL.get(c, c) for c in text)


def table(t: Table, level: int = 3) -> str:
    lines = [f"{'#' * level} {md(t.title)}", ""]
    if not t.rows:
        return "\n".join(lines + ["None.", ""])
    columns = list(t.columns)
    if t.groups and any(label for label, _ in t.groups):
        expanded = [label for label, span in t.groups for _ in range(span)]
        columns = [f"{c} ({g})" if g else c for c, g in zip(columns, expanded)]
    lines.append("| " + " | ".join(md(c) for c in columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in t.rows]
    if t.note:
        lines += ["", f"_{md(t.note)}_"]
    return "\n".join(lines + [""])


def recommendation(rec: Recommendation) -> str:
    where = f" (trained on {md(rec.train_set)})" if rec.train_set else ""
    head = f"**{rec.headline}**"
    warnings = "".join(f"\n\n⚠ {md(w)}" for w in rec.warnings)
    return f"{head}{where}\n\n{md(rec.reason)}{warnings}\n\nRule: {md(rec.rule)}\n"


def figures(items: list[FigureResult], folder: str) -> str:
    lines = []
    for f in items:
        if f.png is None:
            lines.append(f"- {md(f.title)}: skipped ({md(f.skipped or 'no data')})")
        else:
            lines.append(f"- [{md(f.title)}]({folder}/{f.name}.png): {md(f.caption)}")
    return "\n".join(lines) + "\n"


def run_markdown(report: RunReport, folder: str) -> str:
    store = report.store
    parts = [f"# rankscope summary: {md(report.title)}", "", f"Run directory: {md(store.path)}", "",
             "## Recommendation", ""]
    parts += [recommendation(r) for r in report.recommendations]
    parts += ["## Tables", ""] + [table(t) for t in report.tables] + [table(report.failed)]
    parts += ["## Figures", "", figures(report.figures, folder)]
    if store.notes:
        parts += ["## Notes on the data", ""] + [f"- {md(n)}" for n in store.notes] + [""]
    return "\n".join(parts)


def compare_markdown(compare: CompareReport, folder: str) -> str:
    parts = [f"# rankscope comparison of {len(compare.runs)} runs", ""]
    parts += [f"- {md(r.title)}: {md(r.store.path)}" for r in compare.runs] + [""]
    parts += [table(compare.recommendations, 2), table(compare.combined, 2), *[table(t, 2) for t in compare.extra],
              "## Figures", ""]
    for run in compare.runs:
        parts += [f"### {md(run.title)}", "", figures(run.figures, folder)]
    if compare.notes:
        parts += ["## Notes on the data", ""] + [f"- {md(n)}" for n in compare.notes] + [""]
    return "\n".join(parts)
