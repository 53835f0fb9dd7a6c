"""Report on a finished (or partly finished) sweep from its run directory alone.

This package imports no torch, transformers or peft -- only numpy, matplotlib (Agg canvas),
safetensors.numpy and pyyaml -- so a copied run directory can be reported on any laptop.
A test holds that line (tests/test_report_imports.py).

Public API:
    write_report(run_dirs, out_dir=None) -> Path   report.html / summary.md / figures/ (or compare.*)
    load_run(run_dir) -> RunStore                   typed view of the store
    build_views(store) -> list[View]                accuracy, gain, forgetting per training set
    recommend(view) -> Recommendation               the stated, stderr-aware rank rule (RULE)
"""

from rankscope.report.build import build_compare, build_run_report, write_report
from rankscope.report.document import CompareReport, RunReport
from rankscope.report.recommend import RULE, Recommendation, recommend
from rankscope.runstore.reader import RunStore, load_run
from rankscope.report.tables import Estimate, View, build_views

__all__ = [
    "RULE", "CompareReport", "Estimate", "Recommendation", "RunReport", "RunStore", "View",
    "build_compare", "build_run_report", "build_views", "load_run", "recommend", "write_report",
]
