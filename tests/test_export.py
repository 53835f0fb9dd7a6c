"""docs/export.md: a rankscope-written adapter loads in plain transformers + peft (rankscope not
importable) and in lm-eval's HFLM(peft=...), with the logits rankscope's own loading gives."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from rankscope.config import config_from_dict
from rankscope.sweep.runner import run_sweep

PLAIN_PEFT = """
import sys
sys.modules["rankscope"] = None  # rankscope cannot be imported here: plain libraries only
import json, torch
from peft import AutoPeftModelForCausalLM
model = AutoPeftModelForCausalLM.from_pretrained(sys.argv[1]).eval()  # base read from adapter_config.json
ids = torch.tensor(json.loads(sys.argv[2]))
with torch.no_grad():
    print(json.dumps(model(input_ids=ids).logits.tolist()))
"""


@pytest.fixture(scope="module")
def lora_arm(tiny_model_dir, tmp_path_factory):
    """A trained rankscope LoRA arm (r=4) of a tiny run: its folder."""
    config = config_from_dict({
        "model": {"id": str(tiny_model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 16, "n_test": 4}]},
        "arms": {"sft": False, "lora": {"ranks": [4]}},
        "train": {"steps": 3, "batch_size": 4, "max_length": 48, "lr": {"lora": 0.05}},
        "eval": {"batch_size": 4, "max_new_tokens": 2, "nll": {"enabled": False}},
        "analysis": {"enabled": False},
    })
    run_dir = tmp_path_factory.mktemp("export") / "run"
    outcome = run_sweep(config, run_dir, announce=lambda *_: None)
    arm = next(a for a in outcome.arms if a.method == "lora")
    return run_dir / "arms" / arm.arm_id


def rankscope_logits(arm_dir, ids: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The arm as rankscope loads it (rankscope eval --model RUN/arms/ID), and the bare base."""
    from rankscope.evaluate.standalone import load_model_for_eval

    loaded, _ = load_model_for_eval(str(arm_dir))
    with torch.no_grad():
        ours = loaded.model(input_ids=ids).logits.numpy()
        with loaded.model.disable_adapter():
            base = loaded.model(input_ids=ids).logits.numpy()
    return ours, base


def test_plain_peft_loads_the_adapter_with_rankscopes_logits(lora_arm):
    ids = torch.tensor([[5, 17, 42, 9, 77, 3]])
    ours, base = rankscope_logits(lora_arm, ids)
    assert np.abs(ours - base).max() > 1e-4  # the adapter changes the model: the check can fail
    done = subprocess.run([sys.executable, "-c", PLAIN_PEFT, str(lora_arm / "adapter"), json.dumps(ids.tolist())],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    plain = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(plain, ours, atol=1e-5)


def test_lm_eval_hflm_loads_the_adapter(lora_arm, tiny_model_dir):
    pytest.importorskip("lm_eval", reason="lm-eval is the `lmeval` extra")
    from lm_eval.models.huggingface import HFLM

    ids = torch.tensor([[5, 17, 42, 9, 77, 3]])
    ours, base = rankscope_logits(lora_arm, ids)
    lm = HFLM(pretrained=str(tiny_model_dir), peft=str(lora_arm / "adapter"), device="cpu", batch_size=1,
              dtype="float32")
    with torch.no_grad():
        theirs = lm.model(input_ids=ids).logits.numpy()
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    assert np.abs(theirs - base).max() > 1e-4
