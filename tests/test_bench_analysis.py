"""bench/analysis_scale.py runs end to end at tiny sizes and its exact and top-k intruder counts
agree; bench/compare_analysis.py reads two run directories and gates on their differences.
Speed ratios are not asserted (bench/ prints them)."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import torch

from rankscope.runstore.analysis_rows import ArmAnalysis
from rankscope.runstore.analysis_files import write_arm_analysis
from rankscope.analysis.topk import TopKSettings
from rankscope.analysis.weight_spectra import SpectralSettings, build_base_reference, weight_update_spectra

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_bench(name: str, args: list[str], monkeypatch, capsys) -> tuple[str, int]:
    monkeypatch.setattr(sys, "argv", [name, *args])
    code = 0
    try:
        runpy.run_path(str(BENCH / name), run_name="__main__")
    except SystemExit as stop:
        code = int(stop.code or 0)
    return capsys.readouterr().out, code


def test_analysis_scale_bench_runs_and_methods_agree(monkeypatch, capsys):
    out, _ = run_bench("analysis_scale.py", ["--d-out", "192", "--d-in", "640", "--layers", "2", "--shapes", "small",
                                             "--topk-repeats", "1", "--threads", "1", "--dense-below", "0"], monkeypatch, capsys)
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"speedup \d+\.\dx; projected 8B analysis: \d+ min, \d+\.\d GiB", last), last
    counts = re.search(r"intruder dimensions: exact (\d+), top-k (\d+) \(agree\)", out)
    assert counts and counts.group(1) == counts.group(2) and int(counts.group(1)) > 0


def _run_dir(tmp: Path, method: str, W0: torch.Tensor, W_ft: torch.Tensor) -> Path:
    from test_analysis_topk import one_module_model

    settings = SpectralSettings(method=method, device="cpu", spectrum_k=16, reference_k=32,
                                topk=TopKSettings(dense_below=0))
    cache = build_base_reference(one_module_model(W0), tmp / method / "analysis" / "base_reference", settings)
    result = weight_update_spectra("sft", one_module_model(W_ft), cache, settings=settings)
    write_arm_analysis(tmp / method, ArmAnalysis("sft", spectral=result.rows, singular_values=result.singular_values))
    return tmp / method


def test_compare_analysis_reports_agreement_and_differences(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_analysis_topk import pair

    W0, W_ft = pair()
    exact, topk = _run_dir(tmp_path, "exact", W0, W_ft), _run_dir(tmp_path, "topk", W0, W_ft)
    out, code = run_bench("compare_analysis.py", [str(exact), str(topk)], monkeypatch, capsys)
    assert code == 0 and "OK: intruder counts agree" in out, out
    assert re.search(r"frobenius_norm\s+1\s", out)
    # a different update is caught
    other = _run_dir(tmp_path / "other", "topk", W0, W0 + 2 * (W_ft - W0))
    out, code = run_bench("compare_analysis.py", [str(exact), str(other)], monkeypatch, capsys)
    assert code == 1 and "DIFFERENT" in out
