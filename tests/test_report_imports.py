"""The report package must run without torch: it reads only the run directory (docs/architecture.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import rankscope

FORBIDDEN = ("torch", "transformers", "peft")


def test_report_imports_no_torch_transformers_or_peft():
    src = str(Path(rankscope.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = (
        "import sys, rankscope.report, rankscope.report.figures_analysis\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert 'matplotlib.pyplot' not in sys.modules  # figures use an explicit Agg canvas, no global backend\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
