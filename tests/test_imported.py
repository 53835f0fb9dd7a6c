"""Imported arms (arms.imported, `rankscope compare`): adapters and a full checkpoint trained by
peft + Trainer outside rankscope, scored, analysed, compared and reported beside a trained arm."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from external_arms import train_adapter, train_full
from rankscope.config import config_from_dict
from rankscope.errors import ConfigError
from rankscope.models.imported import check_against_base, read_imported
from rankscope.sweep.plan import plan_arms
from rankscope.sweep.runner import run_sweep

EVAL_SETS = [{"name": "arith_mc", "n_test": 6}, {"name": "capitals", "n_test": 6}]


@pytest.fixture(scope="session")
def external(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """Two adapters (r=2 plain, r=4 rsLoRA) and a full checkpoint, trained outside rankscope."""
    root = tmp_path_factory.mktemp("external")
    return {
        "r2": train_adapter(tiny_model_dir, root / "trl-r2", rank=2, alpha=4),
        "r4_rslora": train_adapter(tiny_model_dir, root / "axolotl-r4-rslora", rank=4, alpha=8, rslora=True),
        "full": train_full(tiny_model_dir, root / "full-ft"),
    }


def mixed_config(model_dir, external, **arms):
    return config_from_dict({
        "name": "mixed",
        "model": {"id": str(model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 24, "n_test": 6}], "eval": EVAL_SETS},
        "arms": {"sft": False, "lora": {"ranks": [2]}, "seeds": [0],
                 "imported": [{"path": str(external["r2"]), "name": "trl_r2"},
                              {"path": str(external["r4_rslora"]), "name": "axo_r4"},
                              {"path": str(external["full"]), "name": "full"}], **arms},
        "train": {"steps": 3, "batch_size": 4, "max_length": 64},
        "eval": {"batch_size": 8, "max_new_tokens": 4},
        "analysis": {"enabled": True, "probe_size": 3, "probe_max_length": 32},
    })


def test_settings_are_read_from_the_files(external):
    r2, rs = read_imported(external["r2"], "t"), read_imported(external["r4_rslora"], "t")
    assert (r2.kind, r2.rank, r2.alpha, r2.rslora, r2.scaling) == ("lora", 2, 4.0, False, 2.0)
    assert (rs.rank, rs.alpha, rs.rslora, rs.scaling) == (4, 8.0, True, pytest.approx(8 / 2))
    assert r2.targets == ("down_proj", "q_proj", "v_proj")
    assert read_imported(external["full"], "t").kind == "full"
    assert r2.digest != rs.digest and r2.digest == read_imported(external["r2"], "t").digest


def test_mismatched_and_pickled_folders_are_refused_in_one_line(external, tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from rankscope.config import ModelSpec
    from rankscope.models.resolve import meta_model

    base = meta_model(ModelSpec(id=str(tiny_model_dir)))
    for key in external:  # every good folder passes
        check_against_base(read_imported(external[key], key), base, key)
    # a base of another width: adapters and full checkpoints trained on it do not fit
    other = tmp_path / "wide"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2)).save_pretrained(other)
    tokenizer.save_pretrained(other)
    wrong_adapter = train_adapter(other, tmp_path / "wide-r2", rank=2, alpha=4)
    with pytest.raises(ConfigError) as refused:
        check_against_base(read_imported(wrong_adapter, "arms.imported[0]"), base, "arms.imported[0]")
    message = str(refused.value)
    assert "\n" not in message and "adapter_model.safetensors" in message and "fix:" in message
    assert "the base's model.layers.0." in message and "needs" in message  # names what the base has
    with pytest.raises(ConfigError, match="does not exist in the base|the base's is"):
        check_against_base(read_imported(other, "x"), base, "x")
    # pickled weights are never loaded
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4}))
    (pickled / "adapter_model.bin").write_bytes(b"not read")
    with pytest.raises(ConfigError, match="pickled weights.*safe_serialization=True"):
        read_imported(pickled, "x")
    # a sweep with a mismatched adapter stops before any arm runs
    config = mixed_config(tiny_model_dir, {**external, "r2": wrong_adapter})
    with pytest.raises(ConfigError, match=r"arms.imported\[0\] \(trl_r2\)"):
        run_sweep(config, tmp_path / "run", announce=lambda *_: None)
    assert not (tmp_path / "run" / "arms").exists()


def test_imported_arm_ids_follow_the_content(external, tiny_model_dir, tmp_path):
    import shutil

    arms = plan_arms(mixed_config(tiny_model_dir, external))
    imported = [a for a in arms if a.imported]
    assert [a.method for a in imported] == ["sft", "lora", "lora"] and [a.rank for a in imported] == [None, 2, 4]
    assert imported[2].scaling == pytest.approx(4.0) and imported[2].targets == "down_proj,q_proj,v_proj"
    assert all(a.train_set == "arith_chain" and a.seed is None and a.lr is None for a in imported)
    copy = tmp_path / "copy"
    shutil.copytree(external["r2"], copy)
    same = [a for a in plan_arms(mixed_config(tiny_model_dir, {**external, "r2": copy})) if a.name == "trl_r2"]
    assert same[0].arm_id == imported[1].arm_id  # the content, not the folder, names the arm
    from safetensors.torch import load_file, save_file

    tensors = load_file(copy / "adapter_model.safetensors")
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] * 2
    save_file(tensors, copy / "adapter_model.safetensors")
    changed = [a for a in plan_arms(mixed_config(tiny_model_dir, {**external, "r2": copy})) if a.name == "trl_r2"]
    assert changed[0].arm_id != imported[1].arm_id  # a changed adapter is scored again


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_mixed_run_scores_analyses_compares_and_reports(external, tiny_model_dir, tmp_path):
    """Two imported adapters, one imported full checkpoint and one trained LoRA arm in one run."""
    from safetensors.numpy import load_file

    from rankscope.config import EvalSpec
    from rankscope.evaluate.standalone import EvalJob, read_dataset_list, run_eval
    from rankscope.report import write_report

    config = mixed_config(tiny_model_dir, external)
    run_dir = tmp_path / "run"
    outcome = run_sweep(config, run_dir, announce=lambda *_: None)
    assert not outcome.failed and len(outcome.ran) == 5  # base, trained r2, full, two adapters
    rows = read_rows(run_dir / "results.csv")
    by_arm = {a.arm_id: a for a in outcome.arms}
    for arm in outcome.arms:
        record = json.loads((run_dir / "arms" / arm.arm_id / "arm.json").read_text())
        assert record["status"] == "done" and record["source"] == ("imported" if arm.imported else "rankscope")
        assert (run_dir / "arms" / arm.arm_id / "train.json").is_file() == (arm.method != "base" and not arm.imported)
        assert {r["source"] for r in rows if r["arm_id"] == arm.arm_id} == {record["source"]}
    # in-domain, near and far rows for the imported arms, under their training set
    assert {(r["dataset"], r["relation"]) for r in rows if by_arm[r["arm_id"]].imported
            and r["dataset"] != "generic_text"} == {("arith_chain", "in"), ("arith_mc", "near"), ("capitals", "far")}

    # the imported arms' accuracies equal `rankscope eval` on the same folders (same sets, same rows)
    sets = tmp_path / "sets.yaml"
    sets.write_text(json.dumps(EVAL_SETS))
    spec = EvalSpec(batch_size=8, max_new_tokens=4, nll=config.eval.nll)
    for arm in (a for a in outcome.arms if a.imported):
        job = EvalJob(model=str(external["full"]) if arm.method == "sft" else str(tiny_model_dir),
                      adapter=None if arm.method == "sft" else arm.path, datasets=read_dataset_list(sets), limit=None)
        alone = read_rows(run_eval(job, tmp_path / f"eval-{arm.name}", spec))
        for r in alone:
            if r["dataset"] == "generic_text":
                continue
            ours = next(x for x in rows if x["arm_id"] == arm.arm_id and x["dataset"] == r["dataset"]
                        and x["metric"] == r["metric"])
            assert float(ours["value"]) == pytest.approx(float(r["value"]), abs=1e-6), (arm.name, r["metric"])

    # LoRA spectra: rank at most r (scaling * B @ A with B [d_out, r]); the full checkpoint is dense
    values = load_file(str(run_dir / "analysis" / "singular_values.safetensors"))
    for arm in (a for a in outcome.arms if a.method == "lora"):
        mine = {k: v for k, v in values.items() if k.startswith(arm.arm_id + "/")}
        assert mine, arm.arm_id
        for key, s in mine.items():
            assert np.sum(s > 1e-6 * max(float(s.max()), 1e-30)) <= arm.rank, key
            if arm.imported:
                assert key.rsplit("/", 1)[-1] in ("q_proj", "v_proj", "down_proj")
    full = next(a for a in outcome.arms if a.imported and a.method == "sft")
    assert any(k.startswith(full.arm_id + "/") and np.sum(v > 1e-6 * v.max()) > 4 for k, v in values.items())

    # paired comparisons: every imported arm vs base; adapters vs the imported full checkpoint (sft role)
    comparisons = read_rows(run_dir / "comparisons.csv")
    for arm in (a for a in outcome.arms if a.imported):
        assert any(arm.arm_id in (c["arm_a"], c["arm_b"]) and c["comparison"] == "vs_base" for c in comparisons)
    sft_rows = {c["arm_b"] for c in comparisons if c["comparison"] == "vs_sft"}
    assert sft_rows == {full.arm_id}
    groups = {c["group_a"] for c in comparisons} | {c["group_b"] for c in comparisons}
    assert {"lora-r2-a4-imported-trl_r2", "lora-r4-a8-imported-axo_r4", "sft-imported-full"} <= groups
    assert "lora-r2-a4-lr0.001" in groups  # the trained r=2 arm is its own group beside the imported r=2
    recommendation = json.loads((run_dir / "recommendation.json").read_text())
    assert recommendation["train_set"] == "arith_chain" and "rule" in recommendation

    report = write_report([run_dir])
    html = report.read_text()
    assert "imported trl_r2" in html and "imported axo_r4" in html and "full · imported full" in html
    assert (run_dir / "summary.md").is_file()

    again = run_sweep(config, run_dir, announce=lambda *_: None)  # resume: nothing is redone
    assert again.ran == [] and len(again.skipped) == 5


def test_compare_verb_writes_a_run_and_a_report(external, tiny_model_dir, tmp_path, capsys):
    from rankscope.cli import main

    sets = tmp_path / "sets.yaml"
    sets.write_text(json.dumps([{"name": "arith_chain", "n_test": 6}, *EVAL_SETS]))
    out = tmp_path / "cmp"
    args = ["compare", "--model", str(tiny_model_dir), "--datasets", str(sets), "--out", str(out),
            "--set", "eval.batch_size=8", "--set", "eval.max_new_tokens=4", "--set", "analysis.probe_size=3",
            "--set", "analysis.probe_max_length=32", str(external["r2"]), str(external["full"])]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "report:" in printed and "3 arm(s) run" in printed  # base + two imported arms
    for name in ("results.csv", "comparisons.csv", "recommendation.json", "report.html", "analysis/spectral.csv"):
        assert (out / name).is_file(), name
    rows = read_rows(out / "results.csv")
    assert {r["arm_id"].split("-imported-")[-1].rsplit("-", 2)[0] for r in rows if r["source"] == "imported"} \
        == {"trl-r2", "full-ft"}
    # the first datasets entry is the in-domain reference; the others relate to it by kind
    assert {(r["dataset"], r["relation"]) for r in rows if r["dataset"] != "generic_text"} == \
        {("arith_chain", "in"), ("arith_mc", "near"), ("capitals", "far")}
    assert main(args) == 0 and "3 reused" in capsys.readouterr().out  # resumes
    assert main([*args[:-2], "--in-domain", "nope", str(external["r2"])]) == 2
    assert "not in the datasets file" in capsys.readouterr().err
