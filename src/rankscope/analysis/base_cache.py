"""The weight half of the base reference, one module at a time, cached to disk.

At 8B scale an fp32 copy of every block weight plus every base singular basis is ~50 GB; kept in
host memory it does not fit. Instead each block projection's entry is computed once per sweep and
written to ``RUN_DIR/analysis/base_reference/<module name>.safetensors`` with

- ``weight``: ``W_0 [d_out, d_in]`` in the dtype the model holds it (an exact copy; sft arms
  subtract it from their fine-tuned weight);
- ``left_vectors``: ``U_0 [d_out, m]`` float32, the base's left singular vectors the intruder test
  compares against (all of them for ``method: exact``, the top ``m`` for ``method: topk``);
- ``singular_values``: ``S_0 [m]`` float32, descending.

Each file's metadata holds the reference's fingerprint (the base model's identity, its weights'
shapes and a content sample, and the settings that shaped ``left_vectors``), and ``manifest.json``
(written last) lists the modules. A rerun reuses every file whose fingerprint matches and
recomputes the rest, so an interrupted reference resumes and one from another model is never used.
Host memory is bounded by the module being processed. With no directory the entries are kept in
memory (small models, tests).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save as save_tensors
from torch import Tensor

from rankscope.atomic import atomic_write_bytes

BASE_REFERENCE_DIR = "base_reference"
MANIFEST = "manifest.json"


@dataclass
class ModuleReference:
    """One base module: ``weight [d_out, d_in]`` (model dtype, CPU), ``left_vectors [d_out, m]`` and
    ``singular_values [m]`` (float32, CPU; empty when the intruder test is off)."""

    weight: Tensor
    left_vectors: Tensor | None = None
    singular_values: Tensor | None = None


def fingerprint_weights(named_weights: list[tuple[str, Tensor]], identity: str, settings: str) -> str:
    """sha256 of the model identity, every block weight's name/shape/dtype, a strided content sample
    of the first, middle and last weight, and the reference settings (16 hex digits)."""
    digest = hashlib.sha256(identity.encode())
    digest.update(settings.encode())
    for name, weight in named_weights:
        digest.update(f"{name}:{tuple(weight.shape)}:{weight.dtype}".encode())
    picks = {0, len(named_weights) // 2, len(named_weights) - 1} if named_weights else set()
    for index in sorted(picks):
        flat = named_weights[index][1].detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 4096)].to(device="cpu", dtype=torch.float32)
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def _file_name(module: str) -> str:
    if not module or "/" in module or os.sep in module or module.startswith("."):
        raise ValueError(f"module name {module!r} cannot name a file")
    return f"{module}.safetensors"


class BaseWeightCache:
    """Per-module base reference entries, on disk under ``directory`` (or in memory if None)."""

    def __init__(self, directory: str | os.PathLike | None, fingerprint: str):
        self.directory = Path(directory) if directory is not None else None
        self.fingerprint = fingerprint
        self._memory: dict[str, ModuleReference] = {}
        self.modules: list[str] = []
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    # -- writing --------------------------------------------------------------------------
    def put(self, module: str, entry: ModuleReference) -> None:
        if module not in self.modules:
            self.modules.append(module)
        if self.directory is None:  # an independent copy: training the model later must not change it
            self._memory[module] = ModuleReference(entry.weight.detach().to("cpu").clone(), entry.left_vectors,
                                                   entry.singular_values)
            return
        tensors = {"weight": entry.weight.detach().to("cpu").contiguous()}
        if entry.left_vectors is not None:
            tensors["left_vectors"] = entry.left_vectors.detach().to("cpu", torch.float32).contiguous()
            tensors["singular_values"] = entry.singular_values.detach().to("cpu", torch.float32).contiguous()
        data = save_tensors(tensors, metadata={"fingerprint": self.fingerprint, "module": module})
        atomic_write_bytes(self.directory / _file_name(module), data)

    def finish(self) -> None:
        """Write the manifest (the reference is complete)."""
        if self.directory is not None:
            manifest = {"fingerprint": self.fingerprint, "modules": self.modules}
            atomic_write_bytes(self.directory / MANIFEST, json.dumps(manifest, indent=1).encode())

    # -- reading --------------------------------------------------------------------------
    def has(self, module: str) -> bool:
        """True when an entry with this cache's fingerprint exists (a file from another model
        or other settings does not count)."""
        if self.directory is None:
            return module in self._memory
        path = self.directory / _file_name(module)
        if not path.exists():
            return False
        try:
            with safe_open(str(path), framework="pt") as handle:
                return (handle.metadata() or {}).get("fingerprint") == self.fingerprint
        except Exception:  # a torn or foreign file: recompute it
            return False

    def get(self, module: str) -> ModuleReference | None:
        """The module's entry, read from its own file (only that module enters host memory)."""
        if self.directory is None:
            return self._memory.get(module)
        if not self.has(module):
            return None
        with safe_open(str(self.directory / _file_name(module)), framework="pt") as handle:
            keys = set(handle.keys())
            weight = handle.get_tensor("weight")
            vectors = handle.get_tensor("left_vectors") if "left_vectors" in keys else None
            values = handle.get_tensor("singular_values") if "singular_values" in keys else None
        return ModuleReference(weight, vectors, values)

    def complete(self) -> bool:
        """A manifest with this fingerprint exists and every module it lists is present."""
        if self.directory is None:
            return bool(self._memory)
        path = self.directory / MANIFEST
        if not path.exists():
            return False
        manifest = json.loads(path.read_text())
        if manifest.get("fingerprint") != self.fingerprint:
            return False
        self.modules = list(manifest.get("modules", []))
        return all(self.has(m) for m in self.modules)

    def __contains__(self, module: str) -> bool:
        return self.has(module)


__all__ = ["BASE_REFERENCE_DIR", "BaseWeightCache", "ModuleReference", "fingerprint_weights"]
