"""End-to-end report rendering on synthetic run stores: figures, tables, escaping, comparison."""

from __future__ import annotations

import base64
import json
import re

import pytest
from fixtures_report import Arm, build_run_store, default_arms

from rankscope.report import write_report

EXTERNAL_REF = re.compile(r"""(?:src|href|action|srcset|url)\s*[=(]\s*["']?\s*(?:[a-z]+:)?//""", re.I)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    run = build_run_store(tmp_path_factory.mktemp("full") / "run")
    return run, write_report([run])


def test_report_has_figures_tables_and_recommendation(full_report):
    run, path = full_report
    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    images = re.findall(r"<img [^>]*src=\"([^\"]*)\"", page)
    assert len(images) >= 6
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)
    assert len(list((run / "figures").glob("*.png"))) == len(images)
    assert page.count("<table>") >= 3 and "Gain, transfer and forgetting" in page and "Cost" in page
    assert "Minimum detectable effect" in page and "paired-bootstrap interval" in page
    assert "Recommended LoRA rank: r=8" in page and "Rule:" in page
    assert "gain margin of 5 points" in page and "forgetting margin of 8 points" in page
    # the report rebuilds comparisons.csv and recommendation.json from the item files
    recommendation = json.loads((run / "recommendation.json").read_text(encoding="utf-8"))
    assert recommendation["rank"] == 8 and recommendation["decided"] and recommendation["gain_margin"] == 0.05
    assert (run / "comparisons.csv").read_text(encoding="utf-8").startswith("train_set,dataset,")
    assert "Figure skipped" not in page


def test_report_references_nothing_external(full_report):
    _, path = full_report
    page = path.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    assert not EXTERNAL_REF.search(page)
    assert "<script" not in page.lower() and "<link" not in page.lower()


def test_summary_markdown_has_tables_and_recommendation(full_report):
    run, _ = full_report
    summary = (run / "summary.md").read_text(encoding="utf-8")
    assert "**Recommended LoRA rank: r=8**" in summary
    assert "| arm | learning rate | alpha | seeds | arith_chain (in-domain · reasoning) | capitals (far (forgetting) · recall) |" in summary
    for name in re.findall(r"\]\((figures/[^)]+\.png)\)", summary):
        assert (run / name).is_file()


def test_missing_analysis_skips_figures_with_a_note(tmp_path):
    run = build_run_store(tmp_path / "run", analysis=False)
    page = write_report([run], out_dir=tmp_path / "out").read_text(encoding="utf-8")
    assert page.count("<img ") == 4  # accuracy, gain vs forgetting, cost, loss
    for skipped in ("singular_values.safetensors", "representation.csv has no CKA", "attention.csv has no entropy"):
        assert skipped in page
    assert not (run / "report.html").exists() and (tmp_path / "out" / "summary.md").exists()


XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_every_data_string_is_escaped(tmp_path):
    datasets = {XSS: ("reasoning", "in"), 'caps" onmouseover="x': ("recall", "out")}
    names = list(datasets)
    acc = lambda a, b: {names[0]: a, names[1]: b}
    arms = [Arm("base", acc=acc(0.2, 0.9)), Arm("sft", acc=acc(0.6, 0.7)), Arm("lora", 1, acc=acc(0.45, 0.89)),
            Arm("lora", 8, acc=acc(0.58, 0.86)),
            Arm("lora", 64, status="failed", error=f"{XSS} <img src=x onerror=alert(2)>")]
    run = build_run_store(tmp_path / "run", arms, datasets=datasets, train_set=XSS, name=XSS)
    page = write_report([run]).read_text(encoding="utf-8")
    summary = (run / "summary.md").read_text(encoding="utf-8")
    assert XSS not in page and "<img src=x" not in page and XSS_ESCAPED in page
    assert not re.search(r"(?<!\\)[<>&]", summary)  # every <, > and & of the data is backslash-escaped
    # markdown: backslash escapes (literal text in CommonMark), no HTML entities for a plain reader
    assert "\\<script\\>alert(1)\\</script\\>" in summary and "&lt;" not in summary and "&amp;" not in summary
    assert 'onmouseover="x' not in page and "caps&quot; onmouseover=&quot;x" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page  # the failed arm's error, shown and inert
    assert page.lower().count("<script") == 0


def test_comparison_of_two_runs(tmp_path):
    first = build_run_store(tmp_path / "a", analysis=False, name="sweep")
    one_rank = [a for a in default_arms() if a.rank != 1]
    second = build_run_store(tmp_path / "b", one_rank, analysis=False, name="sweep")
    before = sorted(p.name for p in second.iterdir())
    path = write_report([first, second])
    assert path == first / "compare.html" and not (first / "report.html").exists()
    assert sorted(p.name for p in second.iterdir()) == before  # nothing written into the other run
    page = path.read_text(encoding="utf-8")
    assert "1. sweep (a)" in page and "2. sweep (b)" in page
    assert "All runs" in page and "lora r8 ★" in page
    assert page.count("<img ") == 4 and "http://" not in page and "https://" not in page
    assert len(list((first / "figures" / "compare").glob("*.png"))) == 4
    assert "It is the smallest rank tried" in (first / "compare.md").read_text(encoding="utf-8")
