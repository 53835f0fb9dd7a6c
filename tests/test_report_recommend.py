"""The recommendation rule, one test per branch, on synthetic numbers (no files, no figures)."""

from __future__ import annotations

from rankscope.report.recommend import RULE, recommend
from rankscope.report.tables import ArmKey, DatasetInfo, Estimate, View

IN, OUT = "arith", "capitals"
SE = 0.02  # every estimate below has this stderr unless stated; a difference then has se 0.028


def key(label: str) -> ArmKey:
    if label.startswith("r"):
        rank = int(label[1:])
        return ArmKey("lora", rank, 2.0 * rank, None if label == "base" else "t", f"lora r{rank}")
    return ArmKey(label, None, None, None if label == "base" else "t", label)


def make_view(arms: dict[str, tuple[float, float | None]], out: bool = True, inn: bool = True) -> View:
    """arms: label ('base', 'sft', 'r8') -> (in-domain acc, out-of-domain acc or None)."""
    datasets = ([DatasetInfo(IN, "reasoning", "in")] if inn else []) + ([DatasetInfo(OUT, "recall", "out")] if out else [])
    accuracy = {}
    for label, (a_in, a_out) in arms.items():
        if inn:
            accuracy[(key(label), IN)] = Estimate(a_in, SE)
        if out and a_out is not None:
            accuracy[(key(label), OUT)] = Estimate(a_out, SE)
    groups = sorted((key(label) for label in arms), key=lambda g: g.order)
    return View("t", groups, datasets, accuracy, {g: [] for g in groups})


def test_decided_smallest_rank_within_one_stderr_of_best():
    rec = recommend(make_view({"base": (0.2, 0.9), "sft": (0.6, 0.7), "r1": (0.45, 0.9),
                               "r4": (0.59, 0.88), "r16": (0.61, 0.85)}))
    assert rec.decided and rec.rank == 4 and rec.label == "lora r4"
    assert rec.rule == RULE and "r=1 trails" in rec.reason


def test_rank_that_forgets_more_than_sft_is_skipped():
    rec = recommend(make_view({"base": (0.2, 0.9), "sft": (0.6, 0.8), "r2": (0.6, 0.6), "r8": (0.6, 0.8)}))
    assert rec.decided and rec.rank == 8
    assert "r=2 forgets" in rec.reason


def test_undecided_when_every_candidate_forgets_more_than_sft():
    rec = recommend(make_view({"base": (0.2, 0.9), "sft": (0.6, 0.85), "r2": (0.6, 0.6), "r8": (0.6, 0.6)}))
    assert not rec.decided and rec.rank is None
    assert "No LoRA rank satisfies the rule" in rec.reason


def test_undecided_when_no_arm_beats_base_beyond_stderr():
    # best gain 0.02 with stderr 0.028: within noise
    rec = recommend(make_view({"base": (0.50, 0.9), "sft": (0.52, 0.88), "r1": (0.51, 0.9), "r8": (0.52, 0.9)}))
    assert not rec.decided and rec.rank is None
    assert "within noise" in rec.reason


def test_undecided_with_only_one_rank():
    rec = recommend(make_view({"base": (0.2, 0.9), "sft": (0.6, 0.7), "r8": (0.6, 0.9)}))
    assert not rec.decided and "Only one LoRA rank" in rec.reason


def test_undecided_without_base():
    rec = recommend(make_view({"sft": (0.6, 0.7), "r1": (0.5, 0.9), "r8": (0.6, 0.9)}))
    assert not rec.decided and "base model" in rec.reason


def test_undecided_without_lora():
    rec = recommend(make_view({"base": (0.2, 0.9), "sft": (0.6, 0.7)}))
    assert not rec.decided and "No LoRA arm" in rec.reason


def test_undecided_without_in_domain_set():
    rec = recommend(make_view({"base": (0.2, 0.9), "r1": (0.5, 0.9), "r8": (0.6, 0.9)}, inn=False))
    assert not rec.decided and "in-domain" in rec.reason


def test_without_sft_forgetting_condition_is_stated_as_not_applied():
    rec = recommend(make_view({"base": (0.2, 0.9), "r2": (0.57, 0.5), "r8": (0.58, 0.9)}))
    assert rec.decided and rec.rank == 2 and "no sft arm" in rec.reason


def test_without_out_of_domain_sets_forgetting_is_not_checked():
    rec = recommend(make_view({"base": (0.2, None), "sft": (0.6, None), "r2": (0.59, None), "r8": (0.6, None)}, out=False))
    assert rec.decided and rec.rank == 2 and "no out-of-domain set" in rec.reason


def test_rank_that_does_not_beat_base_is_not_recommended():
    # r1 is within noise of base but also (with big noise) of the best; it must not win
    view = make_view({"base": (0.50, 0.9), "sft": (0.56, 0.9), "r1": (0.52, 0.9), "r8": (0.56, 0.9)})
    rec = recommend(view)
    assert rec.decided and rec.rank == 8 and "r=1 does not beat base" in rec.reason


def test_smallest_rank_tried_gets_a_lower_edge_caveat():
    rec = recommend(make_view({"base": (0.2, 0.9), "sft": (0.6, 0.7), "r4": (0.6, 0.9), "r8": (0.6, 0.9)}))
    assert rec.rank == 4 and "add ranks below 4" in rec.reason


def test_largest_rank_as_best_gets_an_upper_edge_caveat():
    rec = recommend(make_view({"base": (0.2, 0.9), "sft": (0.6, 0.7), "r4": (0.5, 0.9), "r64": (0.8, 0.85)}))
    assert rec.decided and rec.rank == 64
    assert "is the best arm in-domain" in rec.reason and "add ranks above 64" in rec.reason


def test_largest_rank_that_only_ties_the_best_gets_no_upper_edge_caveat():
    rec = recommend(make_view({"base": (0.2, 0.9), "sft": (0.6, 0.7), "r1": (0.45, 0.9), "r8": (0.58, 0.86)}))
    assert rec.rank == 8 and "add ranks above" not in rec.reason
