"""The non-inferiority recommendation (rankscope.verdicts.recommend) on synthetic run directories
with per-item records, one test per branch, and comparisons.csv identities."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from fixtures_report import Arm, build_run_store

from rankscope.runstore.reader import load_run
from rankscope.verdicts.items import find_items, read_items
from rankscope.verdicts.run_dir import write_verdicts

IN, OUT = "arith_chain", "capitals"


def arms(spec: dict[str, tuple[float, float]]) -> list[Arm]:
    """label ('base', 'sft', 'r8') -> (in-domain accuracy, out-of-domain accuracy)."""
    out = []
    for label, (a_in, a_out) in spec.items():
        acc = {IN: a_in, OUT: a_out}
        out.append(Arm("lora", int(label[1:]), acc=acc) if label.startswith("r") else Arm(label, acc=acc))
    return out


def recommendation(tmp_path, spec, n=400, margins=(0.03, 0.03), **kwargs):
    run = build_run_store(tmp_path / "run", arms(spec), n=n, margins=margins, analysis=False, **kwargs)
    return load_run(run).recommendations[0]


def test_smallest_rank_within_the_gain_margin_and_forgetting_margin(tmp_path):
    rec = recommendation(tmp_path, {"base": (0.2, 0.9), "sft": (0.6, 0.7), "r1": (0.45, 0.9),
                                    "r4": (0.60, 0.89), "r16": (0.61, 0.88)})
    assert rec.decided and rec.rank == 4
    assert "r=1" in rec.reason and "gain margin of 3 points" in rec.rule and "forgetting margin of 3 points" in rec.rule
    assert rec.gain_margin == 0.03 and rec.confidence == 0.95 and "Holm" in rec.test


def test_forgetting_is_judged_against_base_not_sft(tmp_path):
    # sft forgets 30 points; r2 forgets 20 (less than sft, so the old rule passed it) -> r8
    rec = recommendation(tmp_path, {"base": (0.2, 0.9), "sft": (0.6, 0.6), "r2": (0.6, 0.7), "r8": (0.6, 0.9)})
    assert rec.decided and rec.rank == 8
    assert "r=2: forgetting on capitals" in rec.reason


def test_every_rank_shown_to_fail(tmp_path):
    rec = recommendation(tmp_path, {"base": (0.2, 0.9), "sft": (0.6, 0.9), "r2": (0.6, 0.6), "r8": (0.6, 0.6)})
    assert not rec.decided and rec.rank is None and "shown to fail" in rec.reason


def test_undecided_with_the_items_that_would_decide(tmp_path):
    # r2 trails the best by 2 points with a 3-point margin: on 60 items neither shown in nor out
    rec = recommendation(tmp_path, {"base": (0.2, 0.9), "sft": (0.62, 0.9), "r2": (0.60, 0.9)}, n=60)
    assert not rec.decided and rec.reason.startswith("Undecided")
    assert rec.needed_items[IN] > 60
    assert f"{IN}: about" in rec.reason


def test_undecided_when_no_arm_beats_base(tmp_path):
    rec = recommendation(tmp_path, {"base": (0.50, 0.9), "sft": (0.51, 0.9), "r1": (0.51, 0.9), "r8": (0.5, 0.9)})
    assert not rec.decided and "No arm beats the base model" in rec.reason


def test_near_sets_are_transfer_and_do_not_decide(tmp_path):
    datasets = {IN: ("reasoning", "in"), "gsm": ("reasoning", "out"), OUT: ("recall", "out")}
    spec = [Arm("base", acc={IN: 0.2, "gsm": 0.5, OUT: 0.9}), Arm("sft", acc={IN: 0.6, "gsm": 0.2, OUT: 0.9}),
            Arm("lora", 2, acc={IN: 0.6, "gsm": 0.2, OUT: 0.9})]
    run = build_run_store(tmp_path / "run", spec, datasets=datasets, n=400, margins=(0.03, 0.03), analysis=False)
    rec = load_run(run).recommendations[0]
    assert rec.decided and rec.rank == 2  # losing 30 points on the near set does not block it
    assert "transfer to near sets" in rec.reason and "gsm -30.0" in rec.reason


def test_comparison_deltas_recompute_from_the_item_files(tmp_path):
    run = build_run_store(tmp_path / "run", n=200, analysis=False)
    write_verdicts(run)
    rows = list(csv.DictReader((run / "comparisons.csv").open()))
    assert rows and {r["test"] for r in rows} == {"mcnemar-exact"}
    for row in rows:
        a = {r["uid"]: r["correct"] for r in read_items(find_items(run / "arms" / row["arm_a"], row["dataset"]))}
        b = {r["uid"]: r["correct"] for r in read_items(find_items(run / "arms" / row["arm_b"], row["dataset"]))}
        delta = np.mean([a[u] - b[u] for u in a])
        assert float(row["delta"]) == pytest.approx(delta, abs=1e-6)
        assert float(row["ci_low"]) <= float(row["delta"]) <= float(row["ci_high"])
        assert float(row["p_value"]) <= float(row["p_holm"]) <= 1
        assert int(row["n_pairs"]) == 200 and row["n_seeds"] == "1"
    recommendation = json.loads((run / "recommendation.json").read_text())
    assert set(recommendation) >= {"rank", "rule", "test", "gain_margin", "forgetting_margin", "decided", "reason",
                                   "train_set"}


def test_seeds_are_pooled_hierarchically_and_named_by_group(tmp_path):
    spec = [Arm("base", acc={IN: 0.2, OUT: 0.9})]
    for seed, (a_in, a_out) in enumerate([(0.55, 0.88), (0.6, 0.86), (0.58, 0.9)]):
        spec += [Arm("sft", seed=seed, acc={IN: a_in + 0.02, OUT: a_out - 0.2}),
                 Arm("lora", 8, seed=seed, acc={IN: a_in, OUT: a_out})]
    run = build_run_store(tmp_path / "run", spec, n=200, analysis=False)
    rows = load_run(run).comparisons
    pooled = [r for r in rows if r.level == "group"]
    assert pooled and all(r.result.test == "hierarchical-bootstrap" and r.result.n_seeds == 3 for r in pooled)
    gain = next(r for r in pooled if r.comparison == "vs_base" and r.dataset == IN and r.group_a.startswith("lora"))
    assert gain.arm_a == gain.group_a == "lora-r8-a16-lr0.001" and gain.arm_b == "base-0000abcd"
    assert gain.result.delta == pytest.approx(np.mean([0.55, 0.6, 0.58]) - 0.2)
    per_seed = [r for r in rows if r.level == "seed" and r.comparison == "vs_base" and r.dataset == IN
                and r.group_a == gain.group_a]
    assert len(per_seed) == 3 and all(r.result.test == "mcnemar-exact" for r in per_seed)
