"""Float32 linear layers run through oneDNN with their weights packed once, for decoding on a CPU.

A decoding step multiplies 1-32 rows by every weight matrix of the model. For such thin products
torch's default CPU matrix product (MKL's ``sgemm`` in the pinned build) runs far below the memory
bound on the CPU measured (an AMD EPYC; MKL's own pre-packed product was no faster). oneDNN,
which torch ships, takes the weight laid out once in its own blocked format
(``torch.ops.mkldnn._reorder_linear_weight``, the op torch's inductor compiler uses for frozen
float32 linear layers on CPU) and computes the product from that, about twice as fast on 2
AVX-512 cores (``python bench/generate.py --ablate``: rankscope's decoder without it takes 2.1x
as long; docs/performance.md has the numbers).

The sums are the same float32 dot products accumulated in another order, so the outputs differ
from the default product in the last bits (about 1e-6 here). A greedy token whose two best logits
are that close (a near-tie) may come out the other way; ``bench/generate.py`` counts such cases
apart, and the evaluator checks the fast decoder against transformers' ``generate`` before using
it. oneDNN computes each row independently of the others in the batch, so a row's tokens do not
depend on which rows decode beside it, which the default product does not promise.

The packed copy costs the weights' memory again while it is in use, so it is made per call of the
decoder and dropped after, and only when it takes less than half of the memory available at that
moment (a large float32 model on a laptop decodes unpacked rather than swapping).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

PACK_ROWS_HINT = 16  # oneDNN picks the blocked layout for this many rows; any row count works with it
UNKNOWN_MEMORY_LIMIT = 2 * 2**30  # bytes packed at most where the available memory cannot be read

log = logging.getLogger(__name__)


def available_memory() -> int | None:
    """Bytes of memory available now, or None where it cannot be read.

    Linux's MemAvailable counts the page cache the kernel would give back; elsewhere the free
    pages (a lower figure) are the best estimate.
    """
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def packs_here(module: nn.Module) -> bool:
    """Whether ``module`` is a plain float32 CPU ``nn.Linear``, torch has oneDNN, and no one else
    has set the module's ``forward`` (accelerate's device hooks do, and so does an enclosing
    ``packed_linears``: such a layer is left to them)."""
    return (type(module) is nn.Linear and "forward" not in vars(module) and module.weight.dtype == torch.float32
            and module.weight.device.type == "cpu" and torch.backends.mkldnn.is_available())


def _packed_forward(weight: torch.Tensor, bias: torch.Tensor | None):
    packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), PACK_ROWS_HINT)  # [out, in], oneDNN layout
    bias = bias.detach() if bias is not None else None

    def forward(inputs: torch.Tensor) -> torch.Tensor:  # [..., in] -> [..., out]
        if inputs.dtype != torch.float32 or torch.is_grad_enabled():
            return nn.functional.linear(inputs, weight, bias)
        return torch.ops.mkldnn._linear_pointwise(inputs.contiguous(), packed, bias, "none", [], "")

    return forward


@contextmanager
def packed_linears(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Within the block, every plain float32 CPU ``nn.Linear`` of ``model`` runs on packed weights.

    Yields how many layers were switched (0 on a GPU, in another dtype, without oneDNN or when
    ``enabled`` is false). The layers stay the same modules (hooks and adapters that hold them are
    unaffected): an instance ``forward`` is set and removed again on leaving, also on an error.
    Outside ``torch.no_grad`` or for other dtypes a switched layer computes as before.
    """
    switched = [module for module in model.modules() if enabled and packs_here(module)]
    packed_bytes = sum(module.weight.numel() * module.weight.element_size() for module in switched)
    available = available_memory()
    if packed_bytes > (available // 2 if available is not None else UNKNOWN_MEMORY_LIMIT):
        log.info("decoding without packed linear layers: their copy (%.1f GiB) would take over half of the "
                 "available memory", packed_bytes / 2**30)
        switched = []
    for module in switched:
        module.forward = _packed_forward(module.weight, module.bias)
    try:
        yield len(switched)
    finally:
        for module in switched:
            del module.forward
