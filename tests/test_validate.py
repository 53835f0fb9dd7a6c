"""``rankscope validate`` runs ``run``'s pre-flight: each mistake is exit 2 and one line naming the place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rankscope.cli import main

def write_config(folder: Path, model_dir: Path, **changes) -> Path:
    raw = {
        "name": "check",
        "model": {"id": str(model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 8, "n_test": 4}],
                 "eval": [{"name": "capitals", "n_test": 4}]},
        "arms": {"sft": False, "lora": {"ranks": [1, 2], "targets": ["q_proj", "v_proj"]}, "seeds": [0]},
        "train": {"steps": 2, "batch_size": 2, "max_length": 48},
        "eval": {"batch_size": 4, "max_new_tokens": 4},
        "analysis": {"enabled": False},
    }
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def refused(capsys, argv: list[str]) -> str:
    """Exit 2 and exactly one line on stderr; returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def test_a_valid_config_lists_datasets_and_arms_as_json(tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_model_dir)
    assert main(["validate", str(config), "--json"]) == 0
    checked = json.loads(capsys.readouterr().out)
    assert checked["valid"] is True
    assert checked["model"]["where"] == "folder"
    assert checked["lora_targets"] == ["q_proj", "v_proj"]
    by_name = {d["name"]: d for d in checked["datasets"]}
    assert by_name["arith_chain"]["role"] == "train" and by_name["arith_chain"]["n_train"] == 8
    assert by_name["capitals"]["n_test"] == 4 and by_name["capitals"]["format"] == "mc"
    assert by_name["arith_chain"]["answer_type"] == "number"
    assert [a["method"] for a in checked["arms"]] == ["base", "lora", "lora"]


def test_the_table_names_every_dataset_and_arm(tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_model_dir)
    assert main(["validate", str(config)]) == 0
    out = capsys.readouterr().out
    assert "arith_chain" in out and "capitals" in out and "valid; 3 arm(s)" in out


def test_misspelt_builtin_dataset(tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_model_dir, data__eval=[{"name": "capitls"}])
    line = refused(capsys, ["validate", str(config)])
    assert "capitls" in line and "did you mean 'capitals'" in line


def test_missing_file(tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_model_dir, data__eval=[
        {"name": "mine", "path": "nowhere.jsonl", "format": "mc", "kind": "recall"}])
    line = refused(capsys, ["validate", str(config)])
    assert "nowhere.jsonl" in line


def test_a_field_the_file_lacks_lists_its_columns(tiny_model_dir, tmp_path, capsys):
    (tmp_path / "mine.jsonl").write_text(json.dumps({"prompt": "Sky?", "options": ["blue", "red"], "gold": 0}) + "\n")
    config = write_config(tmp_path, tiny_model_dir, data__eval=[
        {"name": "mine", "path": "mine.jsonl", "format": "mc", "kind": "recall"}])
    line = refused(capsys, ["validate", str(config)])
    assert "mine.jsonl:1" in line and "'question'" in line
    assert "['prompt', 'options', 'gold']" in line
    assert "fields: {question: prompt, choices: options, answer: gold}" in line


def test_the_suggested_fields_line_loads_the_file(tmp_path):
    """The fix the error prints is a working config line, not just advice."""
    from rankscope.config import DatasetSpec
    from rankscope.data.registry import load_dataset
    from rankscope.errors import DatasetError

    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"prompt": "Sky?", "options": ["blue", "red"], "gold": 0}) + "\n")
    spec = {"name": "mine", "path": str(path), "format": "mc", "kind": "recall"}
    with pytest.raises(DatasetError) as caught:
        load_dataset(DatasetSpec(**spec))
    fields_line = caught.value.fix.split("e.g. ", 1)[1]
    spec["fields"] = yaml.safe_load(fields_line)["fields"]
    assert load_dataset(DatasetSpec(**spec)).test[0].answer == "blue"


def test_a_lora_target_the_model_lacks(tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_model_dir, arms__lora={"ranks": [1], "targets": ["q_proj", "vv_proj"]})
    line = refused(capsys, ["validate", str(config)])
    assert "arms.lora.targets" in line and "vv_proj" in line and "v_proj" in line


def test_a_duplicate_training_set_name(tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_model_dir, data__train=[{"name": "arith_chain"},
                                                                 {"name": "arith_chain", "n_train": 5}])
    line = refused(capsys, ["validate", str(config)])
    assert "data.train[1].name" in line


def test_an_unreachable_model_id_offline_touches_no_network(tmp_path, monkeypatch, capsys):
    """HF_HUB_OFFLINE: refused from the (empty) local cache alone, without one request."""
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("offline validation made a hub request")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_network)
    config = write_config(tmp_path, Path("nobody-here/no-such-model"))
    line = refused(capsys, ["validate", str(config)])
    assert "model.id=nobody-here/no-such-model" in line and "HF_HUB_OFFLINE" in line


def test_an_unreachable_hub_is_asked_once(tmp_path, monkeypatch, capsys):
    """Online but unreachable: one metadata request with a timeout, no retries."""
    import huggingface_hub

    from rankscope.models import resolve

    calls = []

    def unreachable(self, repo_id, **kwargs):
        calls.append(kwargs.get("timeout"))
        raise ConnectionError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    config = write_config(tmp_path, Path("nobody-here/no-such-model"))
    line = refused(capsys, ["validate", str(config)])
    assert "unreachable" in line and calls == [resolve.HUB_TIMEOUT_S]


def test_unknown_key_suggests_the_right_one(tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_model_dir, train__warmup_ration=0.2)
    line = refused(capsys, ["validate", str(config)])
    assert "train.warmup_ration" in line and "did you mean 'warmup_ratio'" in line


def test_overrides_reach_list_items(tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_model_dir)
    assert main(["validate", str(config), "--json", "data.train[0].n_train=5", "data.eval[0].n_test=3"]) == 0
    by_name = {d["name"]: d for d in json.loads(capsys.readouterr().out)["datasets"]}
    assert by_name["arith_chain"]["n_train"] == 5 and by_name["capitals"]["n_test"] == 3
    line = refused(capsys, ["validate", str(config), "data.eval[4].n_test=3"])
    assert "data.eval has 1 item(s)" in line


def test_version_and_flags_after_the_verb(tiny_model_dir, tmp_path, capsys):
    from rankscope import __version__
    from rankscope.errors import RankscopeError

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and __version__ in capsys.readouterr().out
    bad = write_config(tmp_path, tiny_model_dir, data__eval=[{"name": "capitls"}])
    for argv in (["-v", "validate", str(bad)], ["validate", str(bad), "-v"]):  # -v shows the traceback
        with pytest.raises(RankscopeError, match="capitls"):
            main(argv)
    good = write_config(tmp_path, tiny_model_dir)
    for argv in (["-q", "validate", str(good)], ["validate", str(good), "-q"]):  # -q: the verdict line only
        assert main(argv) == 0
        assert capsys.readouterr().out.strip().splitlines() == [f"{good}: valid; 3 arm(s)"]


def test_a_hub_path_stays_a_hub_id(tmp_path):
    from rankscope.config import load_config

    path = tmp_path / "hub.yaml"
    path.write_text(yaml.safe_dump({"data": {"train": [{"name": "arith_chain"}], "eval": [
        {"name": "mine", "source": "hub", "path": "org/name", "format": "mc", "kind": "recall"},
        {"name": "local", "path": "rows.jsonl", "format": "mc", "kind": "recall"}]}}))
    paths = {spec.name: spec.path for spec in load_config(path).data.eval}
    assert paths == {"mine": "org/name", "local": str(tmp_path / "rows.jsonl")}


def test_choices_may_be_a_list_of_columns(tmp_path):
    from rankscope.config import DatasetSpec
    from rankscope.data.registry import load_dataset

    path = tmp_path / "rows.csv"
    path.write_text("q,A,B,C,ans\nSky?,green,blue,red,B\nGrass?,green,blue,red,A\n")
    spec = {"name": "rows", "path": str(path), "format": "mc", "kind": "recall"}
    as_list = load_dataset(DatasetSpec(**spec, fields={"question": "q", "choices": ["A", "B", "C"], "answer": "ans"}))
    as_text = load_dataset(DatasetSpec(**spec, fields={"question": "q", "choices": "A,B,C", "answer": "ans"}))
    assert as_list.test == as_text.test
    assert {(e.question, e.answer) for e in as_list.test} == {("Sky?", "blue"), ("Grass?", "green")}


def test_datasets_show_zero_examples_prints_sizes(capsys):
    assert main(["datasets", "show", "capitals", "-n", "0"]) == 0
    out = capsys.readouterr().out
    assert "test rows" in out and "Q: " not in out
    line = refused(capsys, ["datasets", "show", "capitals", "-n", "-1"])
    assert "-n" in line


def test_eval_dataset_list_errors_are_one_line(tmp_path, capsys):
    sets = tmp_path / "sets.yaml"
    sets.write_text("- {name: capitals, n_tset: 3}\n")
    line = refused(capsys, ["eval", "--datasets", str(sets), "--out", str(tmp_path / "o")])
    assert "[0].n_tset" in line and "did you mean 'n_test'" in line


def test_an_offline_hub_id_is_refused_before_torch_is_imported(tmp_path):
    """The refusal needs only the local cache: no torch/transformers import (seconds on a busy
    machine), no request, so it comes back at once instead of after a retry loop."""
    import os
    import subprocess
    import sys

    config = write_config(tmp_path, Path("nobody-here/no-such-model"))
    code = ("import sys; from rankscope.cli import main; rc = main(['validate', sys.argv[1]]); "
            "print(rc, 'torch' in sys.modules, 'transformers' in sys.modules)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert "model.id=nobody-here/no-such-model" in done.stderr and done.stderr.count("\n") == 1


def test_duplicate_eval_names_and_seeds_are_refused_with_their_place(tiny_model_dir, tmp_path, capsys):
    config = write_config(tmp_path, tiny_model_dir, data__eval=[{"name": "capitals"}, {"name": "capitals"}])
    assert "data.eval[1].name" in refused(capsys, ["validate", str(config)])
    config = write_config(tmp_path, tiny_model_dir, arms__seeds=[0, 0])
    assert "arms.seeds" in refused(capsys, ["validate", str(config)])
    other_data = [{"name": "arith_chain", "path": "other.jsonl", "format": "generative", "kind": "reasoning"}]
    config = write_config(tmp_path, tiny_model_dir, data__eval=other_data)
    assert "data.eval[0].name" in refused(capsys, ["validate", str(config)])
