"""Cached load of the default model vs dequantizing its GGUF file every time.

Both paths are measured in this run on this machine: the reference loads tokenizer and model
straight from the GGUF file with transformers (``gguf_file=``, dequantizing every time);
rankscope's path loads the safetensors copy it cached on its first load. Prints the median of a
few loads each and, last, ``speedup: N.Nx``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import torch

from rankscope.config import ModelSpec
from rankscope.models.load import default_model_file, load_base_model


def timed_gguf_load() -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = default_model_file()
    started = time.perf_counter()
    AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    elapsed = time.perf_counter() - started
    assert model.config.num_hidden_layers > 0
    return elapsed


def timed_load(cache_dir: str) -> float:
    started = time.perf_counter()
    loaded = load_base_model(ModelSpec(cache_dir=cache_dir))
    elapsed = time.perf_counter() - started
    assert loaded.model.config.num_hidden_layers > 0
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    folder = tempfile.mkdtemp(prefix="rankscope-bench-cache-")
    try:
        timed_load(folder)  # the first load dequantizes once and writes the cache
        uncached = [timed_gguf_load() for _ in range(args.repeats)]
        cached = [timed_load(folder) for _ in range(args.repeats)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    reference, ours = statistics.median(uncached), statistics.median(cached)
    print(f"GGUF dequantize load (reference): median {reference:.2f} s over {args.repeats}")
    print(f"rankscope cached safetensors load: median {ours:.2f} s over {args.repeats}")
    print(f"speedup: {reference / ours:.1f}x")


if __name__ == "__main__":
    main()
