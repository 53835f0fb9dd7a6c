"""Arms trained outside rankscope: read a PEFT LoRA adapter or a full checkpoint folder, check it
against the base model before anything runs, and apply it to the base in memory.

Why its own module: an adapter from TRL, axolotl, LLaMA-Factory or unsloth says what it is in its
own files (``adapter_config.json``: rank, alpha, rsLoRA, target modules); rankscope reads those
settings instead of asking the user to repeat them, and refuses, in one line, a folder whose
tensors do not fit the base model (another architecture or size), before any arm is scored.

Safetensors only: ``*.bin`` / ``*.pt`` weights are pickles that run code when loaded, so they are
refused with the conversion to make, never unpickled. Tensor names and shapes are read from the
safetensors header alone (8-byte length + JSON), so checking an adapter loads no weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rankscope.errors import ConfigError

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
NOT_WEIGHTS = ("training_args.bin", "optimizer.pt", "scheduler.pt", "rng_state.pth", "scaler.pt")
PEFT_PREFIX = "base_model.model."
SAFE_CONVERSION = ("load it once in Python and save it with save_pretrained(DIR, safe_serialization=True) "
                   "(adapter_model.safetensors / model.safetensors)")


@dataclass(frozen=True)
class ImportedWeights:
    """What an imported folder holds. LoRA: rank, alpha, scaling (alpha/r, or alpha/sqrt(r) with
    rsLoRA) and the adapted modules' short names, read from its files; full: only the files."""

    kind: Literal["lora", "full"]
    path: Path
    files: tuple[Path, ...]  # the safetensors files that hold the weights
    digest: str  # sha256 of every file that decides the weights (config and tensors), 16 hex digits
    rank: int | None = None
    alpha: float | None = None
    rslora: bool = False
    targets: tuple[str, ...] = ()

    @property
    def scaling(self) -> float | None:
        if self.rank is None or self.alpha is None:
            return None
        return self.alpha / math.sqrt(self.rank) if self.rslora else self.alpha / self.rank


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, without reading any tensor data."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > 100_000_000:
            raise ConfigError(str(path), "not a safetensors file (header length is implausible)",
                              "point at a folder saved with safe_serialization=True")
        header = json.loads(handle.read(length))
    return {name: tuple(entry["shape"]) for name, entry in header.items() if name != "__metadata__"}


_DIGESTS: dict[tuple, str] = {}


def content_digest(files: list[Path]) -> str:
    """sha256 over the files' names and contents (cached per process by path, size and mtime), so an
    arm id changes exactly when the weights or their settings do."""
    key = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        for f in files:
            digest.update(f.name.encode() + b"\0")
            with open(f, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()[:16]
    return _DIGESTS[key]


def _refuse_pickles(folder: Path, place: str, wanted: str) -> None:
    pickled = sorted(p.name for p in folder.iterdir()
                     if p.suffix in PICKLED_SUFFIXES and p.name not in NOT_WEIGHTS)
    if pickled:
        raise ConfigError(place, f"{folder} holds {pickled[0]} (pickled weights, which rankscope never loads) "
                          f"and no {wanted}", SAFE_CONVERSION)


def read_imported(path: str | Path, place: str) -> ImportedWeights:
    """Read an adapter or full checkpoint folder; ``place`` names it in errors (e.g. arms.imported[0])."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ConfigError(place, f"{folder} is not a folder", "point path at an adapter or checkpoint folder")
    if (folder / ADAPTER_CONFIG).is_file():
        return _read_adapter(folder, place)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        _refuse_pickles(folder, place, "*.safetensors")
        raise ConfigError(place, f"{folder} has neither {ADAPTER_CONFIG} (a PEFT adapter) nor *.safetensors "
                          "(a full checkpoint)", "point path at the folder save_pretrained wrote")
    decides = files + [f for f in (folder / "config.json",) if f.is_file()]
    return ImportedWeights(kind="full", path=folder.resolve(), files=tuple(files), digest=content_digest(decides))


def _read_adapter(folder: Path, place: str) -> ImportedWeights:
    config_path = folder / ADAPTER_CONFIG
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(str(config_path), f"unreadable JSON ({error})", "save the adapter again") from None
    weights = folder / ADAPTER_WEIGHTS
    if not weights.is_file():
        _refuse_pickles(folder, place, ADAPTER_WEIGHTS)
        raise ConfigError(place, f"{folder} has no {ADAPTER_WEIGHTS}", "save the adapter with save_pretrained")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ConfigError(str(config_path), f"peft_type {peft_type} is not LoRA",
                          "import LoRA adapters, or merge the adapter into a full checkpoint and import that")
    if config.get("use_dora"):
        raise ConfigError(str(config_path), "a DoRA adapter (use_dora: true): its update is not scaling * B @ A",
                          "merge it (merge_and_unload, then save_pretrained) and import the full checkpoint")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ConfigError(str(config_path), "rank_pattern/alpha_pattern give modules different ranks; an arm "
                          "is compared at one rank", "import an adapter with one r and lora_alpha for every module")
    rank, alpha = config.get("r"), config.get("lora_alpha")
    if not isinstance(rank, int) or rank <= 0 or not isinstance(alpha, (int, float)):
        raise ConfigError(str(config_path), f"r={rank!r}, lora_alpha={alpha!r} are not a positive rank and an alpha",
                          "save the adapter with peft's LoraConfig")
    modules = sorted({_module_of(name).rsplit(".", 1)[-1] for name in safetensors_shapes(weights)
                      if _lora_part(name)})
    return ImportedWeights(kind="lora", path=folder.resolve(), files=(weights,),
                           digest=content_digest([config_path, weights]), rank=rank, alpha=float(alpha),
                           rslora=bool(config.get("use_rslora")), targets=tuple(modules))


def _lora_part(name: str) -> str | None:
    for part in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B"):
        if f".{part}." in name or name.endswith(f".{part}"):
            return part
    return None


def _module_of(name: str) -> str:
    """``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`` -> ``model.layers.0.self_attn.q_proj``."""
    name = name[len(PEFT_PREFIX):] if name.startswith(PEFT_PREFIX) else name
    part = _lora_part(name)
    return name.split(f".{part}", 1)[0] if part else name


def base_module_shapes(model) -> dict[str, tuple[int, int]]:
    """Module name -> (d_in, d_out) of every module a LoRA adapter can wrap (Linear, GPT-2 Conv1D,
    Embedding: num_embeddings -> dim); works on the meta device."""
    from torch import nn

    shapes: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            shapes[name] = (module.in_features, module.out_features)
        elif isinstance(module, nn.Embedding):
            shapes[name] = (module.num_embeddings, module.embedding_dim)
        elif type(module).__name__ == "Conv1D" and hasattr(module, "nf"):  # weight [d_in, d_out]
            shapes[name] = (module.weight.shape[0], module.nf)
    return shapes


def check_against_base(weights: ImportedWeights, base, place: str) -> None:
    """Refuse, in one line, a folder whose tensors do not fit ``base`` (a model, meta device is fine):
    adapter: every adapted module exists with lora_A [r, d_in] and lora_B [d_out, r];
    full: every tensor name exists in the base's state dict with the same shape, none missing
    (a tied output head may be absent)."""
    fix = "import adapters and checkpoints trained from model.id (same architecture and size), or set model.id " \
          "to their base"
    if weights.kind == "lora":
        modules = base_module_shapes(base)
        state = {name: tuple(t.shape) for name, t in base.state_dict().items()}
        file = weights.files[0]
        for name, shape in safetensors_shapes(file).items():
            module, part = _module_of(name), _lora_part(name)
            if part is None:  # modules_to_save and the like: a full tensor of the base
                inner = name[len(PEFT_PREFIX):] if name.startswith(PEFT_PREFIX) else name
                inner = inner.replace(".modules_to_save.default", "").replace(".original_module", "")
                if state.get(inner) != shape:
                    raise ConfigError(place, f"{file}: tensor {name} {list(shape)} has no match in the base "
                                      f"(base: {list(state[inner]) if inner in state else 'no such tensor'})", fix)
                continue
            if module not in modules:
                raise ConfigError(place, f"{file}: adapted module {module} does not exist in the base model", fix)
            d_in, d_out = modules[module]
            r = weights.rank
            expected = {"lora_A": (r, d_in), "lora_B": (d_out, r),
                        "lora_embedding_A": (r, d_in), "lora_embedding_B": (d_out, r)}[part]
            if shape != expected:
                raise ConfigError(place, f"{file}: {name} is {list(shape)}, the base's {module} (d_in={d_in}, "
                                  f"d_out={d_out}) at r={r} needs {list(expected)}", fix)
        if not weights.targets:
            raise ConfigError(place, f"{file}: no lora_A/lora_B tensors", "point path at a LoRA adapter folder")
        return
    state = {name: tuple(t.shape) for name, t in base.state_dict().items()}
    seen: set[str] = set()
    for file in weights.files:
        for name, shape in safetensors_shapes(file).items():
            if name not in state:
                raise ConfigError(place, f"{file}: tensor {name} does not exist in the base model", fix)
            if shape != state[name]:
                raise ConfigError(place, f"{file}: {name} is {list(shape)}, the base's is {list(state[name])}", fix)
            seen.add(name)
    missing = [n for n in state if n not in seen and not _tied_head(base, n)]
    if missing:
        raise ConfigError(place, f"{weights.path}: {len(missing)} base tensor(s) missing, e.g. {missing[0]}",
                          "import a complete checkpoint (every shard of save_pretrained)")


def _tied_head(model, name: str) -> bool:
    """The output head of a model with tied embeddings is stored once (as the embedding)."""
    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    return tied and name.endswith("lm_head.weight")


def load_full_weights(model, weights: ImportedWeights):
    """Copy a full checkpoint's tensors into ``model`` (a copy of the base: same device and dtype),
    shard by shard; returns the model."""
    from safetensors.torch import load_file

    for file in weights.files:
        model.load_state_dict(load_file(str(file)), strict=False)  # names checked by check_against_base
    return model
