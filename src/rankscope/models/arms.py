"""Apply an arm to the base model: nothing (base), all weights trainable (sft), or a LoRA adapter.

LoRA arms wrap the *same* in-memory base model with peft and are unloaded afterwards, so the
sweep never holds a second copy of the base weights for them; only sft needs its own copy.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedModel

from rankscope.config import LoraSpec
from rankscope.errors import ConfigError

ATTENTION_PARENTS = ("self_attn", "attn", "attention", "self_attention")
MLP_PARENTS = ("mlp", "feed_forward", "ffn")
NEVER_TARGET = ("lm_head", "embed_out", "output_layer")


@dataclass(frozen=True)
class LinearModule:
    name: str  # full module path, e.g. model.layers.0.self_attn.q_proj
    d_in: int
    d_out: int

    @property
    def short_name(self) -> str:
        return self.name.rsplit(".", 1)[-1]

    @property
    def parent(self) -> str:
        parts = self.name.split(".")
        return parts[-2] if len(parts) > 1 else ""


def linear_modules(model: nn.Module) -> list[LinearModule]:
    """Every nn.Linear inside the transformer blocks (the output head excluded)."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and not name.endswith(NEVER_TARGET):
            found.append(LinearModule(name=name, d_in=module.in_features, d_out=module.out_features))
    return found


def resolve_targets(model: nn.Module, targets: str | list[str]) -> list[LinearModule]:
    """The linear modules a LoRA arm adapts, by preset or by explicit short names."""
    return select_targets(linear_modules(model), targets)


def select_targets(modules: list[LinearModule], targets: str | list[str]) -> list[LinearModule]:
    """resolve_targets on an already listed set of modules (`rankscope plan` keeps only the list)."""
    if targets == "all-linear":
        chosen = modules
    elif targets == "attention":
        chosen = [m for m in modules if m.parent in ATTENTION_PARENTS]
    elif targets == "mlp":
        chosen = [m for m in modules if m.parent in MLP_PARENTS]
    else:
        wanted = set(targets)
        chosen = [m for m in modules if m.short_name in wanted]
        missing = wanted - {m.short_name for m in chosen}
        if missing:
            available = sorted({m.short_name for m in modules})
            raise ConfigError("arms.lora.targets", f"no linear module named {sorted(missing)} in this model",
                              f"use names among {available} or a preset: attention, mlp, all-linear")
    if not chosen:
        raise ConfigError("arms.lora.targets", f"preset {targets!r} matches no linear module in this model",
                          "name the modules explicitly, e.g. [q_proj, v_proj]")
    return chosen


def lora_parameter_count(modules: list[LinearModule], rank: int) -> int:
    """A LoRA adapter on a d_in -> d_out linear adds A [r, d_in] and B [d_out, r]."""
    return sum(rank * (m.d_in + m.d_out) for m in modules)


def apply_lora(base: PreTrainedModel, spec: LoraSpec, rank: int, seed: int) -> PeftModel:
    """Wrap the base model with a fresh LoRA adapter (B = 0, so outputs equal the base's at step 0)."""
    targets = sorted({m.short_name for m in resolve_targets(base, spec.targets)})
    config = LoraConfig(
        r=rank,
        lora_alpha=spec.alpha_for(rank),
        target_modules=targets,
        lora_dropout=spec.dropout,
        use_rslora=spec.alpha == "rslora",
        bias="none",
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)  # the initialisation of A
    return get_peft_model(base, config)


def remove_lora(model: PeftModel) -> PreTrainedModel:
    """Take the adapter out and give the untouched base model back."""
    return model.unload()


def make_sft_copy(base: PreTrainedModel) -> PreTrainedModel:
    """A trainable copy of every weight; the base model in memory stays untouched for the next arms."""
    model = copy.deepcopy(base)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model
