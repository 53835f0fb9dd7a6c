"""Render reports as one self-contained HTML file.

Why self-contained: a report is mailed, attached to tickets and opened from copied run
directories, often offline. So figures are embedded as base64 PNG data URIs, CSS is inline,
there is no script and no external URL, and a Content-Security-Policy forbids any fetch the
page might otherwise make. Why escape everything: arm ids, dataset names, error messages and
config values come from user files and failed runs; each one passes through :func:`esc`
(``html.escape`` with quotes), and markup is only ever written from constants here.
"""

from __future__ import annotations

import base64
import html

from rankscope.report.document import CompareReport, RunReport
from rankscope.report.figures import FigureResult
from rankscope.report.recommend import Recommendation
from rankscope.report.tables import Table

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;
color:#222;line-height:1.45}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.5rem 0 .25rem;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
.note{color:#555;font-size:.85rem}.meta{color:#555}
.rec{border-left:5px solid #2a7;padding:.5rem 1rem;background:#f3fbf6;margin:1rem 0}
.rec.undecided{border-color:#c80;background:#fff8ec}
.warn{color:#8a4b00}
figure{margin:1.5rem 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figure.skipped{border:1px dashed #bbb;padding:.5rem 1rem}
.runs{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:1.5rem}
pre{background:#f6f6f6;padding:.75rem;overflow:auto;font-size:.8rem}
"""


def esc(value: object) -> str:
    """Escape any data for HTML text and attribute context."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def table(t: Table, level: int = 3) -> str:
    if not t.rows:
        return f"<h{level}>{esc(t.title)}</h{level}>\n<p class=\"note\">None.</p>"
    parts = [f"<h{level}>{esc(t.title)}</h{level}>", "<table>", "<thead>"]
    if t.groups and any(label for label, _ in t.groups):
        parts.append("<tr>" + "".join(f"<th colspan=\"{int(span)}\">{esc(label)}</th>" for label, span in t.groups) + "</tr>")
    parts.append("<tr>" + "".join(f"<th scope=\"col\">{esc(c)}</th>" for c in t.columns) + "</tr>")
    parts.append("</thead>\n<tbody>")
    for row in t.rows:
        parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
    parts.append("</tbody></table>")
    if t.note:
        parts.append(f"<p class=\"note\">{esc(t.note)}</p>")
    return "\n".join(parts)


def figure(f: FigureResult) -> str:
    if f.png is None:
        return (f"<figure class=\"skipped\" id=\"fig-{esc(f.name)}\"><h3>{esc(f.title)}</h3>"
                f"<p class=\"note\">Figure skipped: {esc(f.skipped or 'no data')}</p></figure>")
    data = base64.b64encode(f.png).decode("ascii")
    return (f"<figure id=\"fig-{esc(f.name)}\"><h3>{esc(f.title)}</h3>"
            f"<img src=\"data:image/png;base64,{data}\" alt=\"{esc(f.title)}\">"
            f"<figcaption class=\"note\">{esc(f.caption)}</figcaption></figure>")


def recommendation(rec: Recommendation, level: int = 3) -> str:
    where = f" (trained on {rec.train_set})" if rec.train_set else ""
    head = rec.headline
    warnings = "".join(f"<p class=\"warn\">⚠ {esc(w)}</p>" for w in rec.warnings)
    return (f"<div class=\"rec{'' if rec.decided else ' undecided'}\"><h{level}>{esc(head + where)}</h{level}>"
            f"<p>{esc(rec.reason)}</p>{warnings}<p class=\"note\"><b>Rule:</b> {esc(rec.rule)}</p></div>")


def notes(items: list[str]) -> str:
    if not items:
        return ""
    return "<h2>Notes on the data</h2>\n<ul>" + "".join(f"<li>{esc(n)}</li>" for n in items) + "</ul>"


def render_run(report: RunReport) -> str:
    store = report.store
    n_failed = len(store.failed_arms())
    sets = ", ".join(v.train_set for v in report.views if v.train_set) or "—"
    body = [
        f"<h1>rankscope report: {esc(report.title)}</h1>",
        f"<p class=\"meta\">Run directory <code>{esc(store.path)}</code> · {len(store.arms)} arms "
        f"({n_failed} failed) · trained on {esc(sets)}</p>",
        "<h2 id=\"recommendation\">Recommendation</h2>",
        *[recommendation(r) for r in report.recommendations],
        notes(store.notes),
        "<h2 id=\"tables\">Tables</h2>",
        *[table(t) for t in report.tables],
        table(report.failed),
        "<h2 id=\"figures\">Figures</h2>",
        *[figure(f) for f in report.figures],
    ]
    if store.config_text:
        body.append("<h2 id=\"config\">Configuration</h2><details><summary>Resolved config.yaml</summary>"
                    f"<pre>{esc(store.config_text)}</pre></details>")
    return page(f"rankscope report: {report.title}", "\n".join(body))


def render_compare(compare: CompareReport) -> str:
    body = [
        f"<h1>rankscope comparison of {len(compare.runs)} runs</h1>",
        "<p class=\"meta\">" + " · ".join(f"{esc(r.title)}: <code>{esc(r.store.path)}</code>" for r in compare.runs) + "</p>",
        table(compare.recommendations, 2),
        table(compare.combined, 2),
        *[table(t, 2) for t in compare.extra],
        "<h2>Runs side by side</h2>\n<div class=\"runs\">",
    ]
    for run in compare.runs:
        body.append(f"<section><h3>{esc(run.title)}</h3>")
        body += [recommendation(r, 4) for r in run.recommendations]
        body += [figure(f) for f in run.figures]
        if run.failed.rows:
            body.append(table(run.failed, 4))
        body.append("</section>")
    body.append("</div>")
    body.append(notes(compare.notes))
    return page("rankscope comparison", "\n".join(body))
