"""Per-arm learning rates: the grid, selection on the validation split (never the test split),
promotion of the selected candidates, and what results.csv and the report show."""

from __future__ import annotations

import csv
import json
import random

import pytest

from rankscope.config import config_from_dict
from rankscope.errors import ConfigError
from rankscope.sweep.plan import plan_arms
from rankscope.sweep.runner import run_sweep
from rankscope.verdicts.learning_rates import NOT_TUNED, Candidate, RateSummary, select_rates, summarize


def grid_config(model_dir, lora=(3e-4, 1e-3, 3e-3), sft=5e-5, seeds=(0,), **train):
    return config_from_dict({
        "name": "grid",
        "model": {"id": str(model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 24, "n_test": 6, "n_val": 6}],
                 "eval": [{"name": "capitals", "n_test": 6}]},
        "arms": {"sft": True, "lora": {"ranks": [1, 4]}, "seeds": list(seeds)},
        "train": {"steps": 2, "batch_size": 4, "max_length": 64, "lr": {"lora": list(lora) if isinstance(lora, tuple)
                                                                      else lora, "sft": sft}, **train},
        "eval": {"batch_size": 8, "max_new_tokens": 4, "nll": {"max_tokens": 64, "chunk_tokens": 32}},
        "analysis": {"enabled": False},
    })


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# --- the pure selection rule ----------------------------------------------------------------

def _candidate(lr, seed, acc, loss, rank=4, failed=False):
    return Candidate(f"lora-r{rank}-lr{lr}-s{seed}", "lora", rank, 2.0 * rank, "t", seed, lr, acc, loss, failed)


def test_selection_uses_the_mean_over_seeds_and_breaks_ties_by_loss():
    candidates = [_candidate(1e-3, 0, 0.6, 1.0), _candidate(1e-3, 1, 0.2, 1.0),  # mean 0.4
                  _candidate(3e-3, 0, 0.5, 0.9), _candidate(3e-3, 1, 0.5, 0.9),  # mean 0.5: wins
                  _candidate(1e-2, 0, 0.5, 0.8), _candidate(1e-2, 1, 0.5, 0.7)]  # mean 0.5, lower loss
    (choice,) = select_rates(candidates, "val_accuracy")
    assert choice.selected == 1e-2 and "tied" in choice.reason
    assert choice.at_edge  # the highest of three rates: the grid should be widened
    (by_loss,) = select_rates(candidates, "val_loss")
    assert by_loss.selected == 1e-2
    # the seed that scores 0.6 alone does not decide: 1e-3's mean is 0.4
    assert [s.val_accuracy for s in choice.scores] == pytest.approx([0.4, 0.5, 0.5])


def test_a_rate_with_a_failed_seed_is_not_eligible():
    candidates = [_candidate(1e-3, 0, 0.9, 0.5), _candidate(1e-3, 1, None, None, failed=True),
                  _candidate(3e-3, 0, 0.3, 1.0), _candidate(3e-3, 1, 0.3, 1.0)]
    (choice,) = select_rates(candidates)
    assert choice.selected == 3e-3 and choice.scores[0].failed_seeds == 1
    (nothing,) = select_rates([_candidate(1e-3, 0, None, None, failed=True)])
    assert nothing.selected is None
    assert "nothing to select" in RateSummary([nothing]).warnings()[0]


def test_selection_is_by_group_and_picks_the_best_of_random_scores():
    rng = random.Random(3)
    candidates = [_candidate(lr, seed, rng.random(), rng.random(), rank=rank)
                  for rank in (1, 8) for lr in (1e-4, 1e-3, 1e-2) for seed in (0, 1, 2)]
    for choice in select_rates(candidates):
        means = {s.lr: s.val_accuracy for s in choice.scores}
        assert means[choice.selected] == max(means.values())
        mine = [c for c in candidates if c.rank == choice.rank and c.lr == choice.selected]
        assert means[choice.selected] == pytest.approx(sum(c.val_accuracy for c in mine) / 3)


def test_warnings_say_when_rates_were_not_tuned():
    assert summarize([], {"lora", "sft"}).warnings() == [NOT_TUNED]
    inner = select_rates([_candidate(lr, 0, acc, 1.0) for lr, acc in ((1e-4, 0.1), (1e-3, 0.5), (1e-2, 0.2))])
    summary = summarize(inner, {"lora", "sft"})
    assert not inner[0].at_edge
    assert summary.warnings() == [NOT_TUNED + " (sft trained at a single rate)"]


# --- config and plan ------------------------------------------------------------------------

def test_a_grid_plans_one_candidate_per_rate_and_a_single_rate_one_arm(tiny_model_dir):
    arms = plan_arms(grid_config(tiny_model_dir, seeds=(0, 1)))
    lora = [a for a in arms if a.method == "lora"]
    assert len(lora) == 2 * 3 * 2 and all(a.stage == "candidate" for a in lora)
    assert {a.lr for a in lora} == {3e-4, 1e-3, 3e-3} and all(f"-lr{a.lr:g}-" in a.arm_id for a in lora)
    sft = [a for a in arms if a.method == "sft"]
    assert len(sft) == 2 and all(a.stage == "final" and a.lr == 5e-5 for a in sft)
    assert len({a.arm_id for a in arms}) == len(arms)


def test_a_grid_needs_validation_rows_and_distinct_positive_rates(tiny_model_dir):
    config = grid_config(tiny_model_dir).model_dump(mode="json")
    config["data"]["train"][0]["n_val"] = 0
    with pytest.raises(ConfigError, match="n_val"):
        plan_arms(config_from_dict(config))
    for bad in ([1e-3, 1e-3], [], [-1e-3]):
        with pytest.raises(ConfigError):
            grid_config(tiny_model_dir, lora=tuple(bad))


# --- the sweep: candidates on validation only, the selected rate promoted -------------------

def test_grid_sweep_selects_on_validation_and_evaluates_only_the_selected(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = grid_config(tiny_model_dir)
    outcome = run_sweep(config, run_dir, announce=lambda *_: None)
    assert not outcome.failed
    rows = read_rows(run_dir / "results.csv")
    assert all(r["lr"] for r in rows if r["method"] != "base")
    lora_arms = {r["arm_id"] for r in rows if r["method"] == "lora"}
    assert len(lora_arms) == 6
    records = {a: json.loads((run_dir / "arms" / a / "arm.json").read_text()) for a in lora_arms}
    for rank in (1, 4):
        mine = {a: rec for a, rec in records.items() if rec["rank"] == rank}
        stages = sorted(rec["stage"] for rec in mine.values())
        assert stages == ["candidate", "candidate", "selected"]
        val = {rec["lr"]: next(float(r["value"]) for r in rows if r["arm_id"] == a and r["metric"] == "val_accuracy")
               for a, rec in mine.items()}
        loss = {rec["lr"]: next(float(r["value"]) for r in rows if r["arm_id"] == a and r["metric"] == "val_loss")
                for a, rec in mine.items()}
        chosen = next(rec["lr"] for rec in mine.values() if rec["stage"] == "selected")
        assert val[chosen] == max(val.values())
        assert loss[chosen] == min(v for lr, v in loss.items() if val[lr] == val[chosen])
        for a, rec in mine.items():
            scored = {r["metric"] for r in rows if r["arm_id"] == a}
            if rec["stage"] == "candidate":  # the test and out-of-domain sets never see a candidate
                assert scored == {"val_accuracy", "val_loss"}
                assert not (run_dir / "arms" / a / "items").exists() or not any((run_dir / "arms" / a / "items").iterdir())
            else:
                assert {"accuracy", "val_accuracy", "val_loss", "nll"} <= scored
    assert not any(r["metric"] == "accuracy" and r["dataset"] == "arith_chain" and r["arm_id"] in lora_arms
                   and records[r["arm_id"]]["stage"] == "candidate" for r in rows)
    # the verdicts see only the selected arms
    comparisons = read_rows(run_dir / "comparisons.csv")
    arms_compared = {r["arm_a"] for r in comparisons} | {r["arm_b"] for r in comparisons}
    assert not any(records.get(a, {}).get("stage") == "candidate" for a in arms_compared)
    rec = json.loads((run_dir / "recommendation.json").read_text())
    assert any("sft" in w and "single rate" in w for w in rec["warnings"])
    # the report: rate and alpha beside every arm, the rate table, the U-curves, the warning
    from rankscope.report.build import write_report

    html = write_report(run_dir).read_text(encoding="utf-8")
    assert "Learning rate per arm (chosen on the validation split)" in html
    assert "<th scope=\"col\">learning rate</th><th scope=\"col\">alpha</th>" in html
    assert (run_dir / "figures" / "learning_rate_curves.png").is_file()
    assert "rates not tuned" in html and "sft trained at a single rate" in html
    # a rerun finds everything finished and trains nothing
    again = run_sweep(config, run_dir, announce=lambda *_: None)
    assert again.ran == []
    assert read_rows(run_dir / "results.csv") == rows


def test_selected_arm_is_scored_from_its_candidates_weights(tiny_model_dir, tmp_path):
    """The model scored on the test split is the one the validation split chose: its validation
    scores, recomputed from the saved adapter after promotion, equal the candidate's."""
    run_dir = tmp_path / "run"
    config = grid_config(tiny_model_dir, lora=(1e-3, 3e-3))
    run_sweep(config, run_dir, announce=lambda *_: None)
    from rankscope.models.arms import apply_lora
    from rankscope.models.load import load_base_model
    from rankscope.models.weights import load_adapter_weights
    from rankscope.sweep.context import SweepContext
    from rankscope.sweep.validation import validation_scores

    selected = [json.loads(p.read_text()) for p in (run_dir / "arms").glob("*/arm.json")]
    selected = [a for a in selected if a.get("stage") == "selected" and a["rank"] == 4][0]
    stored = json.loads((run_dir / "arms" / selected["arm_id"] / "eval.json").read_text())["validation"]
    context = SweepContext(config)
    model = apply_lora(load_base_model(config.model).model, config.arms.lora, 4, 0)
    load_adapter_weights(model, run_dir / "arms" / selected["arm_id"] / "adapter" / "adapter_model.safetensors")
    again = validation_scores(model, context.tokenizer, context.data.train_sets["arith_chain"],
                              context.encoded_validation("arith_chain"), config.eval, stored["metric"])
    assert again["metrics"]["val_loss"]["value"] == pytest.approx(stored["metrics"]["val_loss"]["value"], rel=1e-5)
    assert again["metrics"]["val_accuracy"]["value"] == stored["metrics"]["val_accuracy"]["value"]


def test_selection_follows_validation_when_the_test_split_ranks_rates_the_other_way(tiny_model_dir, tmp_path,
                                                                                     monkeypatch):
    """A fixture whose validation ranking of rates (3e-4 > 1e-3 > 3e-3) is the reverse of its test
    ranking: the validation winner is selected, and no other candidate is ever scored on test."""
    from rankscope.sweep.arm import ArmRunner

    validation_rank = {3e-4: 0.9, 1e-3: 0.5, 3e-3: 0.1}
    test_rank = {3e-4: 0.1, 1e-3: 0.5, 3e-3: 0.9}  # what the test split would have chosen: 3e-3
    original_validate, original_evaluate = ArmRunner._validate, ArmRunner._evaluate
    tested: list = []

    def rigged_validate(self, arm, model):
        scores = original_validate(self, arm, model)
        if arm.method == "lora":
            scores["metrics"]["val_accuracy"]["value"] = validation_rank[arm.lr]
        return scores

    def rigged_evaluate(self, arm, model, items):
        evaluation = original_evaluate(self, arm, model, items)
        if arm.method == "lora":
            tested.append((arm.rank, arm.lr, arm.stage))
            evaluation["datasets"]["arith_chain"]["metrics"]["accuracy"]["value"] = test_rank[arm.lr]
        return evaluation

    monkeypatch.setattr(ArmRunner, "_validate", rigged_validate)
    monkeypatch.setattr(ArmRunner, "_evaluate", rigged_evaluate)
    run_dir = tmp_path / "run"
    run_sweep(grid_config(tiny_model_dir), run_dir, announce=lambda *_: None)
    assert sorted(tested) == [(1, 3e-4, "selected"), (4, 3e-4, "selected")]
    rows = read_rows(run_dir / "results.csv")
    in_domain = {(r["rank"], float(r["lr"])) for r in rows
                 if r["method"] == "lora" and r["metric"] == "accuracy" and r["dataset"] == "arith_chain"}
    assert in_domain == {("1", 3e-4), ("4", 3e-4)}


def test_an_sft_grid_promotes_the_selected_full_fine_tune_from_its_saved_weights(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    config = grid_config(tiny_model_dir, lora=(1e-3, 3e-3), sft=[1e-5, 1e-4])
    outcome = run_sweep(config, run_dir, announce=lambda *_: None)
    assert not outcome.failed
    records = [json.loads(p.read_text()) for p in (run_dir / "arms").glob("sft*/arm.json")]
    assert sorted(r["stage"] for r in records) == ["candidate", "selected"]
    selected = next(r for r in records if r["stage"] == "selected")
    train = json.loads((run_dir / "arms" / selected["arm_id"] / "train.json").read_text())
    assert train["steps"] == 2  # the candidate's training record is kept, not a second training
    rows = read_rows(run_dir / "results.csv")
    assert {r["metric"] for r in rows if r["arm_id"] == selected["arm_id"]} >= {"accuracy", "val_accuracy"}
    summary = json.loads((run_dir / "recommendation.json").read_text())
    assert not any("single rate" in w for w in summary["warnings"])


def test_widening_the_grid_reuses_candidates_and_demotes_a_beaten_selection(tiny_model_dir, tmp_path, monkeypatch):
    from rankscope.sweep.arm import ArmRunner

    score = {1e-3: 0.5, 3e-3: 0.6, 1e-2: 0.9}
    original = ArmRunner._validate

    def rigged(self, arm, model):
        scores = original(self, arm, model)
        scores["metrics"]["val_accuracy"]["value"] = score[arm.lr]
        return scores

    monkeypatch.setattr(ArmRunner, "_validate", rigged)
    run_dir = tmp_path / "run"
    config = grid_config(tiny_model_dir, lora=(1e-3, 3e-3)).model_dump(mode="json")
    config["arms"]["lora"]["ranks"] = [2]
    config["arms"]["sft"] = False
    run_sweep(config_from_dict(config), run_dir, announce=lambda *_: None)
    first = {json.loads(p.read_text())["lr"]: json.loads(p.read_text())["stage"] for p in (run_dir / "arms").glob("lora*/arm.json")}
    assert first == {1e-3: "candidate", 3e-3: "selected"}
    config["train"]["lr"]["lora"] = [1e-3, 3e-3, 1e-2]
    outcome = run_sweep(config_from_dict(config), run_dir, announce=lambda *_: None)
    assert sum(1 for arm in outcome.ran if "-lr0.01-" in arm) == 2  # trained once as a candidate, then promoted
    assert not any("-lr0.001-" in arm or "-lr0.003-" in arm for arm in outcome.ran)
    second = {json.loads(p.read_text())["lr"]: json.loads(p.read_text())["stage"] for p in (run_dir / "arms").glob("lora*/arm.json")}
    assert second == {1e-3: "candidate", 3e-3: "candidate", 1e-2: "selected"}
    rows = read_rows(run_dir / "results.csv")
    tested = {float(r["lr"]) for r in rows if r["method"] == "lora" and r["metric"] == "accuracy"}
    assert tested == {1e-2}
    rec = json.loads((run_dir / "recommendation.json").read_text())
    assert any("highest of its grid" in w for w in rec["warnings"])
