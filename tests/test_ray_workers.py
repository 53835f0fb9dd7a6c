"""Ray on GPUs: the worker that ran a GPU arm exits (no model left on a GPU Ray counts as free),
and full fine-tuning weights reach the arm folder through the staging folder, not the object store.

A local Ray cluster on CPUs that declares one (fake) GPU: Ray schedules ``num_gpus=1`` tasks on it
exactly as on a GPU node, while torch finds no CUDA and trains on the CPU.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from rankscope.config import config_from_dict
from rankscope.errors import RankscopeError
from rankscope.sweep.executors import RayExecutor
from rankscope.sweep.runner import run_sweep


def ray_config(model_dir, **sweep):
    return config_from_dict({
        "name": "ray-gpu",
        "model": {"id": str(model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 12, "n_test": 4}]},
        "arms": {"sft": True, "lora": None, "seeds": [0]},  # two arms: base and sft
        "train": {"steps": 2, "batch_size": 4, "max_length": 48},
        "eval": {"batch_size": 8, "max_new_tokens": 4},
        "analysis": {"enabled": False},
        "sweep": {"executor": "ray", **sweep},
    })


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def fake_gpu_cluster():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'rankscope[ray]'")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_worker_release_after_a_gpu_arm(tiny_model_dir, tmp_path, fake_gpu_cluster):
    config = ray_config(tiny_model_dir, gpus_per_arm=1)
    run_dir = tmp_path / "run"
    executor = RayExecutor(config, run_dir)
    from rankscope.sweep.plan import plan_arms
    from rankscope.runstore.writer import RunWriter

    arms = plan_arms(config)
    results = list(executor.run(arms))
    assert all(r.error is None for r in results), [r.error for r in results]
    pids = [r.worker_pid for r in results]
    assert len(set(pids)) == len(arms)  # every GPU arm in a fresh worker: none reused the cached model
    deadline = time.time() + 30
    while any(alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(alive(pid) for pid in pids)  # and each worker is gone, its memory with it
    sft = next(r for r in results if r.arm.method == "sft")
    assert "model.safetensors" in sft.staged and "model.safetensors" not in sft.files  # not via the object store
    assert os.path.isfile(sft.staged["model.safetensors"])
    # The driver records the staged weights into the arm folder and alone marks the arm done.
    from rankscope.sweep.runner import record_arm

    store = RunWriter(run_dir)
    record_arm(store, run_dir, sft, "fingerprint")
    folder = store.arm_dir(sft.arm.arm_id)
    assert (folder / "model.safetensors").is_file() and not os.path.exists(sft.staged["model.safetensors"])
    assert json.loads((folder / "arm.json").read_text())["status"] == "done"


def test_ray_feasibility_is_per_node(tiny_model_dir, tmp_path, fake_gpu_cluster):
    # The cluster has one GPU on one node: two GPUs for the sft arm can never be scheduled.
    config = ray_config(tiny_model_dir, gpus_per_arm=1, sft_gpus=2)
    with pytest.raises(RankscopeError, match="sweep.sft_gpus.*no node"):
        run_sweep(config, tmp_path / "run", announce=lambda *_: None)
