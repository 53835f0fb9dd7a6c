"""docs/run-store.md against a real run directory: a tiny sweep started without a terminal (like
nohup or Slurm), then every file, JSON key and CSV column the page lists is checked on disk, and
every file on disk against the page."""

from __future__ import annotations

import csv
import fnmatch
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "run-store.md"
FIX = "docs/run-store.md and the run directory disagree: update the page (or the code) so they match"


@pytest.fixture(scope="module")
def run_dir(tiny_model_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("store")
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny",
        "model": {"id": str(tiny_model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 8, "n_test": 4}],
                 "eval": [{"name": "capitals", "n_test": 4}]},
        "arms": {"sft": True, "lora": {"ranks": [1], "targets": ["q_proj", "v_proj"]}, "seeds": [0]},
        "train": {"steps": 2, "batch_size": 2, "max_length": 48, "log_every": 1},
        "eval": {"batch_size": 4, "max_new_tokens": 4},
        "analysis": {"enabled": True, "probe_size": 2, "probe_max_length": 16, "intruder_control": True},
    }))
    out = folder / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    with open(folder / "predict.out", "w") as log:  # prediction.json, as `rankscope predict` writes it
        done = subprocess.run([sys.executable, "-m", "rankscope.cli", "predict", str(config), "--out", str(out),
                               "--probe-steps", "1"], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                              env=env, timeout=900)
    assert done.returncode == 0, (folder / "predict.out").read_text()[-3000:]
    with open(folder / "nohup.out", "w") as log:
        done = subprocess.run([sys.executable, "-m", "rankscope.cli", "run", str(config), "--out", str(out)],
                              stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=900)
    assert done.returncode == 0, (folder / "nohup.out").read_text()[-3000:]
    return out


def _tree() -> list[tuple[str, str]]:
    """(glob relative to RUN_DIR, description) for every line of the page's tree."""
    block = DOC.read_text().split("```\nRUN_DIR/\n", 1)[1].split("```", 1)[0]
    stack: list[tuple[int, str]] = []
    entries = []
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        name, _, description = line.strip().partition(" ")
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = "".join(p for _, p in stack) + name
        entries.append((re.sub(r"<[^>]+>", "*", path).rstrip("/"), description.strip()))
        if name.endswith("/"):
            stack.append((indent, name))
    return entries


def _json_example(section: str) -> dict:
    text = DOC.read_text().split(f"## {section}\n```json\n", 1)[1].split("```", 1)[0]
    return json.loads(text)


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",")]


def test_run_log_has_steps_and_losses_without_a_terminal(run_dir):
    log = (run_dir / "run.log").read_text()
    steps = [line for line in log.splitlines() if " step " in line and " loss " in line]
    assert len(steps) == 4  # two trained arms x train.steps=2 with log_every=1
    assert {line.split(" step ")[0].rsplit(" ", 1)[-1].split("-")[0] for line in steps} == {"sft", "lora"}
    assert log.count(" done") == 3  # one line per finished arm


def test_every_listed_file_exists_and_every_file_is_listed(run_dir):
    entries = _tree()
    on_disk = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*"))
    for pattern, description in entries:
        if "tracking.mlflow" in description:
            continue  # not enabled in this run
        assert fnmatch.filter(on_disk, pattern), f"{pattern} is listed but absent; {FIX}"
    patterns = [p for p, _ in entries]
    for path in on_disk:
        assert any(fnmatch.fnmatch(path, p) for p in patterns), f"{path} is written but not listed; {FIX}"


def test_json_keys_match_the_examples(run_dir):
    arms = sorted((run_dir / "arms").iterdir())
    documented = set(_json_example("arm.json"))
    for arm in arms:
        assert set(json.loads((arm / "arm.json").read_text())) == documented, FIX
    trained = [arm for arm in arms if (arm / "train.json").is_file()]
    assert len(trained) == 2
    for arm in trained:
        assert set(json.loads((arm / "train.json").read_text())) == set(_json_example("train.json")), FIX
    example = _json_example("eval.json")
    doc_sets = example["datasets"]
    for arm in arms:
        stored = json.loads((arm / "eval.json").read_text())
        assert set(stored) == set(example), FIX
        for scores in stored["datasets"].values():
            like = next(d for d in doc_sets.values() if d["format"] == scores["format"])
            assert set(scores) == set(like), FIX
            assert set(scores["samples"][0]) == set(like["samples"][0]), FIX
            for metric in scores["metrics"]:
                assert f"`{metric}`" in DOC.read_text(), f"metric {metric!r} is not described; {FIX}"
    run = json.loads((run_dir / "run.json").read_text())
    assert set(run) == set(_json_example("run.json")), FIX
    assert set(run["invocations"][0]) == set(_json_example("run.json")["invocations"][0]), FIX


def test_csv_columns_match(run_dir):
    text = DOC.read_text()
    documented = _columns(re.search(r"## results.csv\nColumns: `([^`]+)`", text).group(1))
    with open(run_dir / "results.csv", newline="") as handle:
        assert next(csv.reader(handle)) == documented, FIX
    for pattern, description in _tree():
        if pattern.endswith(".csv") and pattern.startswith("analysis/"):
            with open(run_dir / pattern, newline="") as handle:
                assert next(csv.reader(handle)) == _columns(description), FIX


def test_adapters_name_a_base_model_peft_can_load(run_dir, tiny_model_dir):
    from peft import AutoPeftModelForCausalLM

    adapter = next((run_dir / "arms").glob("lora-*/adapter"))
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(Path(tiny_model_dir).resolve())
    model = AutoPeftModelForCausalLM.from_pretrained(adapter)  # plain peft, no rankscope
    adapted = {m.group(1) for name, _ in model.named_parameters() if (m := re.search(r"\.(\w+)\.lora_A\.", name))}
    assert adapted == {"q_proj", "v_proj"}


def test_the_default_model_is_recorded_by_its_hub_id():
    from rankscope.config import ModelSpec
    from rankscope.models.resolve import DEFAULT_MODEL_HUB_ID, peft_base_reference

    assert peft_base_reference(ModelSpec()) == DEFAULT_MODEL_HUB_ID == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert peft_base_reference(ModelSpec(id="org/some-model")) == "org/some-model"


