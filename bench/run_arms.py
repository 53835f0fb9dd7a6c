"""The finished trained arms of a run directory, loaded onto the base model (shared by bench scripts).

A finished run directory holds ``arms/<id>/arm.json`` (``status: done``) with ``model.safetensors``
for sft arms and ``adapter/`` (peft, safetensors) for LoRA arms.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from torch import nn


@dataclass(frozen=True)
class FinishedArm:
    """One finished trained arm: its id (folder name), ``sft`` / ``r<rank>`` label and folder."""

    arm_id: str
    label: str
    folder: Path


def finished_arms(run_dir: Path) -> list[FinishedArm]:
    """Every finished sft and LoRA arm of ``run_dir`` (sorted by id; the base arm has no weights)."""
    found = []
    for arm_json in sorted(Path(run_dir).glob("arms/*/arm.json")):
        arm = json.loads(arm_json.read_text())
        if arm.get("status") != "done" or arm.get("method") not in ("sft", "lora"):
            continue
        label = "sft" if arm["method"] == "sft" else f"r{arm['rank']}"
        found.append(FinishedArm(arm_json.parent.name, label, arm_json.parent))
    return found


@contextmanager
def arm_model(base_model: nn.Module, folder: Path) -> Iterator[nn.Module]:
    """The arm's model: the base with its peft adapter injected (removed again on exit), or a
    copy of the base holding the arm's ``model.safetensors`` (the base stays untouched)."""
    if (folder / "adapter").is_dir():
        from peft import PeftModel

        model = PeftModel.from_pretrained(base_model, str(folder / "adapter"))
        try:
            yield model
        finally:
            model.unload()
        return
    from safetensors.torch import load_file

    model = copy.deepcopy(base_model)
    state = load_file(str(folder / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"}
    if unexpected or set(missing) - tied:
        raise SystemExit(f"{folder}: weights do not match the base model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.tie_weights()
    yield model
