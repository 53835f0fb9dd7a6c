"""An arm's trained weights on disk and back: the LoRA factors peft saved, or a full fine-tune.

A learning-rate grid trains every rate once; the selected rate is then evaluated from the weights
its candidate saved rather than trained again, so the model scored on the test split is the one
the validation split chose (bit for bit, on any device). Safetensors only: nothing is unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from peft import PeftModel, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from rankscope.errors import RankscopeError

ADAPTER_FILE = "adapter_model.safetensors"  # inside the arm's adapter/ folder (peft's name)
SFT_WEIGHTS = "model.safetensors"  # a full fine-tune's weights, tied tensors stored once


def load_adapter_weights(model: PeftModel, path: Path) -> None:
    """Put saved LoRA factors into a freshly wrapped model of the same rank and targets."""
    state = load_file(str(path))
    result = set_peft_model_state_dict(model, state)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise RankscopeError(str(path), f"{len(unexpected)} tensor(s) do not fit this arm (first: {unexpected[0]})",
                             "remove the arm's folder so it is trained again")


def unique_names(model: torch.nn.Module) -> list[str]:
    """State-dict names with each tied tensor once (under its first name): tied weights
    (embeddings = output head) share storage and are stored once."""
    seen: set[int] = set()
    names = []
    for name, tensor in model.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            names.append(name)
    return names


def save_sft_weights(model: torch.nn.Module, path: Path) -> None:
    """Every tensor once (:func:`unique_names`)."""
    state = model.state_dict()
    save_file({name: state[name].detach().to("cpu").contiguous() for name in unique_names(model)}, str(path),
              metadata={"format": "pt"})


def load_sft_weights(model: torch.nn.Module, path: Path) -> None:
    """Load what :func:`save_sft_weights` wrote; a tensor left out must be tied to one that was loaded."""
    state = load_file(str(path))
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:
        raise RankscopeError(str(path), f"tensor {result.unexpected_keys[0]!r} is not in this model",
                             "remove the arm's folder so it is trained again")
    pointers = {t.data_ptr() for name, t in model.state_dict().items() if name in state}
    untied = [name for name in result.missing_keys if model.state_dict()[name].data_ptr() not in pointers]
    if untied:
        raise RankscopeError(str(path), f"tensor {untied[0]!r} is missing", "remove the arm's folder so it is trained again")
