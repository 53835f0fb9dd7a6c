"""Gain, forgetting, seed aggregation and tables, stated as identities on synthetic stores."""

from __future__ import annotations

import math

import pytest
from fixtures_report import Arm, build_run_store

from rankscope.runstore.reader import load_run
from rankscope.report.tables import (Estimate, accuracy_table, build_views, cost_table, failed_table,
                                     gain_forgetting_table, mean_of, over_seeds)


def _se(p: float, n: int = 200) -> float:
    return math.sqrt(p * (1 - p) / n)


def test_gain_and_forgetting_are_paired_differences_with_the_comparisons_interval(tmp_path):
    store = load_run(build_run_store(tmp_path / "run", analysis=False))
    view = build_views(store)[0]
    lora8 = next(g for g in view.groups if g.label == "lora r8")
    gain = view.gain(lora8, "arith_chain")
    forget = view.forgetting(lora8, "capitals")
    assert gain.value == pytest.approx(0.58 - 0.20)
    assert forget.value == pytest.approx(0.90 - 0.86)
    row = view.paired(lora8, "arith_chain")
    assert row.group_a.startswith("lora-r8") and row.group_b == "base"
    assert gain.ci == (row.result.ci_low, row.result.ci_high)
    far = view.paired(lora8, "capitals")
    assert far.group_a == "base"  # forgetting rows are "base vs arm"
    assert forget.ci == (far.result.ci_low, far.result.ci_high)
    # the arms agree on most items, so the paired interval is narrower than the unpaired one
    unpaired = 2 * 1.959964 * math.sqrt(_se(0.86) ** 2 + _se(0.90) ** 2)
    assert forget.ci[1] - forget.ci[0] < unpaired
    assert view.in_domain == ["arith_chain"] and view.out_domain == ["capitals"] and view.far == ["capitals"]


def test_without_item_records_the_unpaired_stderr_is_used_and_said(tmp_path):
    store = load_run(build_run_store(tmp_path / "run", analysis=False, items=False))
    view = build_views(store)[0]
    lora8 = next(g for g in view.groups if g.label == "lora r8")
    gain = view.gain(lora8, "arith_chain")
    assert gain.ci is None
    assert gain.stderr == pytest.approx(math.sqrt(_se(0.58) ** 2 + _se(0.20) ** 2))
    assert "independent" in gain_forgetting_table(view).note
    assert any("no per-item records" in n for n in store.notes)
    assert not store.recommendations[0].decided


def test_mean_over_sets_and_over_seeds():
    m = mean_of([Estimate(0.2, 0.03), Estimate(0.4, 0.04)])
    assert m.value == pytest.approx(0.3) and m.stderr == pytest.approx(0.025)
    one = over_seeds([0.5], [0.03])
    assert (one.value, one.stderr, one.spread) == (0.5, 0.03, None)
    # evaluation noise dominates: propagated stderr sqrt(2 * 0.05^2) / 2
    calm = over_seeds([0.50, 0.51], [0.05, 0.05])
    assert calm.stderr == pytest.approx(math.sqrt(2) * 0.05 / 2)
    # seeds disagree: between-seed stderr sd / sqrt(k) dominates
    wild = over_seeds([0.3, 0.7], [0.01, 0.01])
    assert wild.spread == pytest.approx(math.sqrt(0.08)) and wild.stderr == pytest.approx(math.sqrt(0.08) / math.sqrt(2))
    assert wild.n_seeds == 2 and wild.samples == (0.3, 0.7)


def test_seeds_are_grouped_into_one_arm(tmp_path):
    arms = [Arm("base", acc={"arith_chain": 0.2, "capitals": 0.9}),
            Arm("lora", 4, seed=0, acc={"arith_chain": 0.5, "capitals": 0.88}),
            Arm("lora", 4, seed=1, acc={"arith_chain": 0.6, "capitals": 0.86})]
    view = build_views(load_run(build_run_store(tmp_path / "run", arms, analysis=False)))[0]
    assert [g.label for g in view.groups] == ["base", "lora r4"]
    est = view.accuracy[(view.groups[1], "arith_chain")]
    assert est.n_seeds == 2 and est.value == pytest.approx(0.55)
    table = accuracy_table(view)
    assert table.columns[:4] == ["arm", "learning rate", "alpha", "seeds"]
    assert table.rows[1][1:4] == ["0.001", "8", "2"] and "sd" in table.rows[1][4]


def test_tables_group_columns_and_list_failures(tmp_path):
    datasets = {"arith_chain": ("reasoning", "in"), "capitals": ("recall", "out"), "gsm": ("reasoning", "out")}
    acc = {"arith_chain": 0.5, "capitals": 0.8, "gsm": 0.3}
    arms = [Arm("base", acc=acc), Arm("sft", acc=acc), Arm("lora", 2, acc=acc),
            Arm("lora", 16, status="failed", error="CUDA out of memory")]
    store = load_run(build_run_store(tmp_path / "run", arms, datasets=datasets, analysis=False))
    view = build_views(store)[0]
    assert [d.name for d in view.datasets] == ["arith_chain", "gsm", "capitals"]  # in, then reasoning before recall
    acc_table = accuracy_table(view)
    assert acc_table.groups == [("", 4), ("in-domain · reasoning", 1), ("near (transfer) · reasoning", 1),
                                ("far (forgetting) · recall", 1)]
    gf = gain_forgetting_table(view)
    # gsm is near (same kind as the training set): transfer, not forgetting
    assert gf.columns == ["arm", "learning rate", "alpha", "gain arith_chain", "transfer gsm", "forgetting capitals"]
    assert [r[0] for r in gf.rows] == ["lora r2", "sft"]
    assert gf.rows[0][3] == "+0.0 [+0.0, +0.0]"  # identical items: a point interval
    costs = cost_table(view)
    assert [r[0] for r in costs.rows] == ["lora r2", "sft"]  # base has no train.json
    failed = failed_table(store)
    assert failed.rows == [["lora-r16-a32-s0-0000abcd", "lora", "16", "CUDA out of memory"]]


def test_base_rows_without_train_set_join_every_view(tmp_path):
    run = build_run_store(tmp_path / "run", analysis=False)
    text = (run / "results.csv").read_text().replace("base-0000abcd,base,,,0,arith_chain", "base-0000abcd,base,,,0,")
    (run / "results.csv").write_text(text)
    view = build_views(load_run(run))[0]
    assert view.train_set == "arith_chain" and view.base is not None


def test_missing_stderr_falls_back_to_binomial(tmp_path):
    run = build_run_store(tmp_path / "run", analysis=False)
    lines = (run / "results.csv").read_text().splitlines()
    header = lines[0].split(",")
    rows = [line.split(",") for line in lines[1:]]
    for row in rows:
        row[header.index("stderr")] = ""
    (run / "results.csv").write_text("\n".join([lines[0]] + [",".join(r) for r in rows]) + "\n")
    view = build_views(load_run(run))[0]
    assert view.accuracy[(view.base, "arith_chain")].stderr == pytest.approx(_se(0.2))


def test_each_training_set_gets_its_own_view(tmp_path):
    """The base arm is stored once per training set; gain is a subtraction within one set."""
    import csv
    import shutil

    a = build_run_store(tmp_path / "a", analysis=False)
    arms_b = [Arm("base", acc={"capitals": 0.9, "arith_chain": 0.2}), Arm("lora", 4, acc={"capitals": 0.95, "arith_chain": 0.1})]
    b = build_run_store(tmp_path / "b", arms_b, train_set="capitals", analysis=False,
                        datasets={"capitals": ("recall", "in"), "arith_chain": ("reasoning", "out")})
    with (b / "results.csv").open() as handle:
        extra = [row for row in csv.DictReader(handle)]
    with (a / "results.csv").open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(extra[0]))
        writer.writerows(extra)
    shutil.copytree(b / "arms" / "lora-r4-a8-s0-0000abcd", a / "arms" / "lora-r4-a8-s0-0000abcd")
    (a / "arms" / "lora-r4-a8-s0-0000abcd" / "arm.json").write_text(
        (b / "arms" / "lora-r4-a8-s0-0000abcd" / "arm.json").read_text())
    views = build_views(load_run(a))
    assert [v.train_set for v in views] == ["arith_chain", "capitals"]
    caps = views[1]
    assert [g.label for g in caps.groups] == ["base", "lora r4 [capitals]"]
    assert caps.in_domain == ["capitals"] and caps.out_domain == ["arith_chain"]
    assert caps.gain(caps.groups[1], "capitals").value == pytest.approx(0.05)
    assert [g.label for g in views[0].groups] == ["base", "lora r1 [arith_chain]", "lora r8 [arith_chain]", "sft [arith_chain]"]
