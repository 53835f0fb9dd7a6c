"""Capacity: the step at which a LoRA rank falls behind full fine-tuning for good (issue 18)."""

from __future__ import annotations

import json

import pytest
from fixtures_report import build_run_store

from rankscope.report.capacity_table import CAPACITY_DELTA, capacity_step, capacity_table
from rankscope.runstore.reader import load_run


def _curve(values):
    return tuple((float(5 * i or 1), v) for i, v in enumerate(values))


def test_step_is_where_the_gap_stays_above_delta():
    sft = _curve([2.0, 1.5, 1.0, 0.8, 0.6])
    # behind at step 5 then catches up, behind for good from step 15
    lora = _curve([2.0, 1.6, 1.0, 0.9, 0.8])
    assert capacity_step(lora, sft, 0.05) == (15, pytest.approx(0.2), pytest.approx(0.2))
    assert capacity_step(sft, sft, 0.05)[0] is None  # the same curve never falls behind
    ahead = _curve([2.0, 1.4, 0.9, 0.7, 0.5])
    step, final, largest = capacity_step(ahead, sft)
    assert step is None and final == pytest.approx(-0.1) and largest == pytest.approx(0.0)
    assert capacity_step(_curve([1.0]), ((7.0, 1.0),)) == (None, None, None)  # no common step


def test_table_pairs_each_rank_with_sft_of_its_set_and_seed(tmp_path):
    root = build_run_store(tmp_path / "run")
    sft_curve = [[1, 2.0], [5, 1.2], [10, 0.8]]
    for arm_dir in (root / "arms").iterdir():
        arm = json.loads((arm_dir / "arm.json").read_text())
        if arm["method"] == "base":
            continue
        curve = sft_curve if arm["method"] == "sft" else [[1, 2.0], [5, 1.2], [10, 0.8 + 0.5 / arm["rank"]]]
        train = {"steps": 10, "loss_curve": curve, "final_loss": curve[-1][1]}
        (arm_dir / "train.json").write_text(json.dumps(train))
    table = capacity_table(load_run(root))
    assert table is not None and f"delta = {CAPACITY_DELTA:g}" in table.title
    by_arm = {row[1]: row for row in table.rows}
    assert by_arm["lora r1"][3] == "10" and by_arm["lora r8"][3] == "10"  # 0.5 and 0.0625 > 0.05 at the end
    assert float(by_arm["lora r1"][4]) == pytest.approx(0.5)
