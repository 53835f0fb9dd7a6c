"""Nothing lost when things break: SIGKILL mid-sweep then resume; the Ray executor agrees with
the local one; a GPU request on a CPU-only cluster is refused instead of waiting forever."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rankscope.config import config_from_dict
from rankscope.errors import RankscopeError
from rankscope.sweep.runner import run_sweep


def sweep_dict(model_dir: Path, lr: dict | None = None, **sweep) -> dict:
    return {
        "name": "tiny",
        "model": {"id": str(model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 24, "n_test": 6}],
                 "eval": [{"name": "capitals", "n_test": 6}]},
        "arms": {"sft": True, "lora": {"ranks": [1, 2, 4]}, "seeds": [0]},
        "train": {"steps": 6, "batch_size": 4, "max_length": 64, **({"lr": lr} if lr else {})},
        "eval": {"batch_size": 8, "max_new_tokens": 4},
        "analysis": {"enabled": True, "probe_size": 3, "probe_max_length": 32},
        "sweep": sweep,
    }


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def done_arms(run_dir: Path) -> list[Path]:
    found = []
    for record in (run_dir / "arms").glob("*/arm.json"):
        try:
            if json.loads(record.read_text())["status"] == "done":
                found.append(record.parent)
        except (OSError, json.JSONDecodeError):
            pass
    return found


def test_sigkill_mid_sweep_then_resume_matches_an_uninterrupted_run(tiny_model_dir, tmp_path):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(sweep_dict(tiny_model_dir)))
    reference = tmp_path / "reference"
    run_sweep(config_from_dict(sweep_dict(tiny_model_dir)), reference, announce=lambda *_: None)

    victim = tmp_path / "killed"
    command = [sys.executable, "-m", "rankscope.cli", "run", str(config_path), "--out", str(victim), "--no-report"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while len(done_arms(victim)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, "the sweep finished before it could be killed; make it longer"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = done_arms(victim)
    assert 2 <= len(finished) < 5
    before = {p: p.stat().st_mtime_ns for folder in finished for p in folder.rglob("*") if p.is_file()}

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(finished)} finished arm(s) kept" in resumed.stdout
    assert rows(victim / "results.csv") == rows(reference / "results.csv")
    assert {p: p.stat().st_mtime_ns for p in before} == before  # finished arms untouched


def test_ray_executor_gives_the_local_results(tiny_model_dir, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'rankscope[ray]'")
    import ray

    local = tmp_path / "local"
    remote = tmp_path / "ray"
    grid = {"lora": [1e-3, 3e-3], "sft": 5e-5}  # candidates, then the selected ones promoted, on workers too
    run_sweep(config_from_dict(sweep_dict(tiny_model_dir, lr=grid)), local, announce=lambda *_: None)
    try:
        outcome = run_sweep(config_from_dict(sweep_dict(tiny_model_dir, lr=grid, executor="ray", gpus_per_arm="auto")),
                            remote, announce=lambda *_: None)
    finally:
        ray.shutdown()
    assert not outcome.failed
    assert rows(remote / "results.csv") == rows(local / "results.csv")
    # per-item records travel back from the workers and are written by the driver, like results
    local_items = sorted(p.relative_to(local) for p in local.glob("arms/*/items/*.jsonl.gz"))
    assert local_items and sorted(p.relative_to(remote) for p in remote.glob("arms/*/items/*.jsonl.gz")) == local_items
    assert all((remote / p).read_bytes() == (local / p).read_bytes() for p in local_items)
    for adapter in (remote / "arms").glob("lora-*/adapter/adapter_model.safetensors"):
        assert adapter.stat().st_size > 0
    stages = sorted(json.loads(p.read_text())["stage"] for p in remote.glob("arms/lora-*/arm.json"))
    assert stages == ["candidate"] * 3 + ["selected"] * 3


def test_ray_refuses_a_gpu_request_on_a_cpu_cluster(tiny_model_dir, tmp_path):
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'rankscope[ray]'")
    import ray

    config = config_from_dict(sweep_dict(tiny_model_dir, executor="ray", gpus_per_arm=1))
    try:
        with pytest.raises(RankscopeError, match="gpus_per_arm"):
            run_sweep(config, tmp_path / "gpu", announce=lambda *_: None)
    finally:
        ray.shutdown()
