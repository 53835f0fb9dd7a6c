"""A model's shape from its config alone: built on the meta device, so no weight is read or allocated."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PretrainedConfig

from rankscope.config import LoraSpec, ModelSpec
from rankscope.errors import ModelLoadError
from rankscope.models.arms import LinearModule, linear_modules, lora_parameter_count, select_targets
from rankscope.models.load import _gguf_cache_dir, cache_root, resolve_model_source


@dataclass(frozen=True)
class ModelShape:
    name: str
    n_params: int  # unique parameters (a tied output head counted once)
    n_layers: int
    hidden: int
    intermediate: int
    n_heads: int
    kv_dim: int  # n_kv_heads * head_dim: the width of k and v
    vocab: int
    linears: tuple[LinearModule, ...]  # every nn.Linear in the blocks (LoRA candidates)

    def lora_params(self, spec: LoraSpec, rank: int) -> int:
        return lora_parameter_count(select_targets(list(self.linears), spec.targets), rank)

    def lora_inputs(self, spec: LoraSpec) -> int:
        """Summed input widths of the adapted modules (each saves its input for A's gradient)."""
        return sum(m.d_in for m in select_targets(list(self.linears), spec.targets))


def read_model_config(spec: ModelSpec) -> tuple[PretrainedConfig, str]:
    """The transformers config of ``model.id``: config.json, or a GGUF file's metadata."""
    source, gguf_file, name = resolve_model_source(spec)
    try:
        if gguf_file is not None:
            gguf_path = Path(source) / gguf_file
            cached = _gguf_cache_dir(gguf_path, cache_root(spec)) if gguf_path.is_file() else None
            if cached is not None and (cached / "config.json").is_file():
                return AutoConfig.from_pretrained(cached), name
            return AutoConfig.from_pretrained(source, gguf_file=gguf_file, revision=spec.revision), name
        return AutoConfig.from_pretrained(source, revision=spec.revision, trust_remote_code=spec.trust_remote_code), name
    except (OSError, ValueError, json.JSONDecodeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"model.id={spec.id}", f"cannot read the model's config ({first})",
                             "point model.id at a folder with config.json, a .gguf file, or a cached hub id") from None


def model_shape(spec: ModelSpec) -> ModelShape:
    config, name = read_model_config(spec)
    with torch.device("meta"):  # shapes only: nothing is allocated
        model = AutoModelForCausalLM.from_config(config)
    seen: set[int] = set()
    n_params = 0
    for param in model.parameters():
        if id(param) not in seen:
            seen.add(id(param))
            n_params += param.numel()
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    n_heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // n_heads
    n_kv = getattr(text, "num_key_value_heads", None) or n_heads
    return ModelShape(name=name, n_params=n_params, n_layers=text.num_hidden_layers, hidden=text.hidden_size,
                      intermediate=getattr(text, "intermediate_size", 4 * text.hidden_size), n_heads=n_heads,
                      kv_dim=n_kv * head_dim, vocab=text.vocab_size, linears=tuple(linear_modules(model)))
