"""Config validation: every mistake is one ConfigError naming the key; the CLI exits 2."""

from __future__ import annotations

import pytest
import yaml

from rankscope.cli import main, preset_path
from rankscope.config import apply_overrides, config_from_dict, load_config
from rankscope.errors import ConfigError

MINIMAL = {"data": {"train": [{"name": "arith_chain"}]}}


def write(tmp_path, payload) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(payload) if not isinstance(payload, str) else payload)
    return str(path)


def test_minimal_config_fills_defaults():
    config = config_from_dict(MINIMAL)
    assert config.model.id == "default"
    assert config.arms.lora.ranks == [8]
    assert config.model.trust_remote_code is False


@pytest.mark.parametrize("name", ["smoke", "quick", "paper"])
def test_presets_are_valid(name):
    config = load_config(preset_path(name))
    assert config.arms.sft and config.arms.lora is not None


@pytest.mark.parametrize(
    "payload, key",
    [
        ({**MINIMAL, "arms": {"lora": {"ranks": [4, -3]}}}, "arms.lora.ranks"),
        ({**MINIMAL, "arms": {"lora": {"ranks": []}}}, "arms.lora.ranks"),
        ({**MINIMAL, "arms": {"lora": {"ranks": [0]}}}, "arms.lora.ranks"),
        ({**MINIMAL, "trian": {"steps": 3}}, "trian"),
        ({**MINIMAL, "train": {"steps": "many"}}, "train.steps"),
        ({**MINIMAL, "train": {"steps": 0}}, "train.steps"),
        ({**MINIMAL, "arms": {"lora": {"alpha": "3r"}}}, "arms.lora.alpha"),
        ({"data": {"train": []}}, "data.train"),
        ({"model": {"id": "default"}}, "data"),
        ({"data": {"train": [{"name": "../evil"}]}}, "data.train[0].name"),
    ],
)
def test_bad_configs_name_the_key(payload, key):
    with pytest.raises(ConfigError) as caught:
        config_from_dict(payload, source="c.yaml")
    assert f"c.yaml: {key}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_negative_rank_message_names_the_rank():
    with pytest.raises(ConfigError, match=r"-3"):
        config_from_dict({**MINIMAL, "arms": {"lora": {"ranks": [4, -3]}}})


def test_validate_cli_exit_code_and_one_line(tmp_path, capsys):
    path = write(tmp_path, {**MINIMAL, "arms": {"lora": {"ranks": [4, -3]}}})
    assert main(["validate", path]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "arms.lora.ranks" in err and "Traceback" not in err


def test_validate_cli_ok_lists_arms(tmp_path, capsys):
    path = write(tmp_path, {**MINIMAL, "arms": {"lora": {"ranks": [2, 4]}}})
    assert main(["validate", path]) == 0
    out = capsys.readouterr().out
    assert "lora-r2" in out and "lora-r4" in out and "sft-s0" in out and "base-" in out


def test_missing_file_and_bad_yaml(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["validate", write(tmp_path, "data: [unclosed")]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_overrides_are_typed_and_validated(tmp_path):
    raw = apply_overrides({**MINIMAL}, ["train.steps=7", "arms.lora.ranks=[1, 2]"])
    config = config_from_dict(raw)
    assert config.train.steps == 7 and config.arms.lora.ranks == [1, 2]
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, MINIMAL), ["train.steps=-1"])


def test_relative_dataset_paths_resolve_against_the_config(tmp_path):
    path = write(tmp_path, {"data": {"train": [{"name": "mine", "path": "d/x.jsonl", "format": "mc",
                                                 "kind": "recall"}]}})
    config = load_config(path)
    assert config.data.train[0].path == str((tmp_path / "d" / "x.jsonl").resolve())


def test_rslora_scaling():
    config = config_from_dict({**MINIMAL, "arms": {"lora": {"alpha": "rslora", "alpha_value": 16}}})
    assert config.arms.lora.scaling_for(16) == pytest.approx(16 / 4)
    config = config_from_dict({**MINIMAL, "arms": {"lora": {"alpha": "2r"}}})
    assert config.arms.lora.scaling_for(8) == pytest.approx(2.0)


def test_shipped_example_sweep_validates_and_its_user_file_loads(capsys):
    from pathlib import Path

    from rankscope.data.registry import load_dataset

    example = Path(__file__).resolve().parents[1] / "examples" / "my-sweep.yaml"
    assert main(["validate", str(example)]) == 0
    config = load_config(example)
    facts = next(spec for spec in config.data.eval if spec.name == "my_facts")
    rows = load_dataset(facts).test
    assert [r.answer for r in rows] == ["Mars", "Pacific Ocean", "eight"]  # index, letter and text answers
    assert config.arms.lora.scaling_for(16) == 16 / 4  # rsLoRA: alpha / sqrt(r)
