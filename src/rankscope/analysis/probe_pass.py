"""The probe forward pass: hidden states kept, each layer's attention reduced as it is computed.

One eager forward per batch of probes (``batch_size`` probes at a time) with
``output_hidden_states=True`` and ``output_attentions=False``; a forward hook on every decoder
layer's attention module receives that layer's ``[b, heads, n, n]`` weights (transformers' eager
attention returns them whether or not they are collected), hands them to a callback and lets
them go. So at most one layer's attention map is alive at a time, whatever the model's depth
(issue 15; before, ``output_attentions`` kept every layer's map on the device and fp32 copies
on the host). :class:`PassStats` measures that: the largest total size of attention maps alive
at once during the pass.

- :func:`reference_pass` (base model, once per sweep): hidden states, the base attention per
  layer (float32 CPU, kept for ``js_divergence``: ``layers x b x heads x n^2`` floats, bounded by
  ``analysis.probe_size`` and ``analysis.probe_max_length``) and the :class:`TokenMask`;
- :func:`analyze_probes` (every arm): representation rows, attention rows and heatmaps.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from rankscope.analysis.attention import (
    DEFAULT_MAP_MAX_LEN,
    add_sums,
    attention_sums,
    eager_attention,
    layer_rows,
    map_length,
    map_sum,
    means_from_sums,
)
from rankscope.analysis.probes import Probes
from rankscope.analysis.representation import (
    DEFAULT_SINK_NORM_RATIO,
    TokenMask,
    _hf_model,
    _model_device,
    representation_drift,
)
from rankscope.runstore.analysis_rows import AttentionRow, RepresentationRow

ATTENTION_ATTRS = ("self_attn", "attn", "attention", "self_attention")


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The attention module of every decoder layer, in order (through a peft wrapper).

    Finds the ``nn.ModuleList`` with ``num_hidden_layers`` entries and, in each layer, the first
    of ``self_attn`` / ``attn`` / ``attention`` / ``self_attention`` (Llama, Qwen, Mistral, Gemma,
    Phi, GPT-2 style).
    """
    hf = _hf_model(model)
    n_layers = getattr(getattr(hf, "config", None), "num_hidden_layers", None)
    for module in hf.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers:
            found = [next((getattr(layer, a) for a in ATTENTION_ATTRS if hasattr(layer, a)), None) for layer in module]
            if all(isinstance(f, nn.Module) for f in found):
                return found  # type: ignore[return-value]
    raise RuntimeError(
        f"analysis: cannot find the attention module of each of the {n_layers} decoder layers of "
        f"{type(hf).__name__}; set analysis.enabled: false for this model"
    )


@dataclass
class PassStats:
    """Measured during a pass: the largest total bytes of attention maps alive at the same time."""

    peak_attention_bytes: int = 0
    attention_calls: int = 0


@torch.no_grad()
def run_probe_pass(
    model: nn.Module,
    probes: Probes,
    on_attention: Callable[[int, slice, Tensor], None],
    *,
    batch_size: int | None = None,
) -> tuple[list[Tensor], PassStats]:
    """Hidden states per layer ``[n_tokens, hidden]`` (float32 CPU, real tokens, probe-major) and
    the pass statistics; ``on_attention(layer, probe_slice, attn [b_chunk, heads, n, n])`` is called
    once per layer and batch, and must not keep ``attn``."""
    stats = PassStats()
    alive: list[weakref.ref] = []
    current = slice(0, 0)

    def hook_for(layer: int) -> Callable:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if not isinstance(weights, Tensor) or weights.ndim != 4:
                raise RuntimeError("the attention module returned no weights; run inside eager_attention(model)")
            alive.append(weakref.ref(weights))
            live = [r() for r in alive]
            alive[:] = [r for r, t in zip(alive, live) if t is not None]
            stats.peak_attention_bytes = max(stats.peak_attention_bytes,
                                             sum(t.numel() * t.element_size() for t in live if t is not None))
            stats.attention_calls += 1
            del live
            on_attention(layer, current, weights)

        return hook

    device = _model_device(model)
    was_training = model.training
    model.eval()
    handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(attention_modules(model))]
    chunks: list[list[Tensor]] = []
    try:
        with eager_attention(model):
            b = probes.input_ids.shape[0]
            step = batch_size or b
            for start in range(0, b, step):
                current = slice(start, min(b, start + step))
                ids, am = probes.input_ids[current], probes.attention_mask[current]
                out = model(input_ids=ids.to(device), attention_mask=am.to(device),
                            output_hidden_states=True, output_attentions=False, use_cache=False)
                keep = am.bool()
                chunks.append([h.detach().to(device="cpu", dtype=torch.float32)[keep] for h in out.hidden_states])
                del out
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return [torch.cat(parts, dim=0) for parts in zip(*chunks)], stats


def token_flags(probes: Probes) -> tuple[Tensor, Tensor]:
    """``(content, first)``: ``[n_tokens]`` bool over real tokens (probe-major): content token,
    first real token of its probe."""
    real = probes.attention_mask.bool()  # [b, n]
    first = real & (real.long().cumsum(-1) == 1)
    return probes.content()[real], first[real]


def query_weights(probes: Probes, mask: TokenMask) -> list[Tensor]:
    """Per hidden-state layer ``[b, n]`` float: 1 where the token is kept by ``mask``."""
    real = probes.attention_mask.bool()
    out = []
    for keep in mask.keep:
        w = torch.zeros(real.shape, dtype=torch.float64)
        w[real] = keep.to(torch.float64)
        out.append(w)
    return out


def reference_pass(
    model: nn.Module, probes: Probes, *, batch_size: int | None = None,
    sink_norm_ratio: float = DEFAULT_SINK_NORM_RATIO,
) -> tuple[list[Tensor], list[Tensor], TokenMask, PassStats]:
    """The base model's ``(hidden_states, attentions, token_mask, stats)`` on the probes.

    ``attentions[l]`` is a float32 CPU ``[b, heads, n, n]`` copy per layer (for ``js_divergence``).
    The mask comes from the base alone (see :class:`TokenMask` for why).
    """
    stored: dict[int, Tensor] = {}
    b = probes.input_ids.shape[0]

    def keep(layer: int, part: slice, attn: Tensor) -> None:
        if layer not in stored:
            stored[layer] = torch.zeros((b,) + tuple(attn.shape[1:]), dtype=torch.float32)
        stored[layer][part] = attn.detach().to(device="cpu", dtype=torch.float32, copy=True)

    hidden, stats = run_probe_pass(model, probes, keep, batch_size=batch_size)
    content, first = token_flags(probes)
    mask = TokenMask.from_base(hidden, content, first, sink_norm_ratio)
    return hidden, [stored[i] for i in sorted(stored)], mask, stats


@dataclass
class ProbeAnalysis:
    """What :func:`analyze_probes` returns for one arm."""

    representation: list[RepresentationRow]
    attention: list[AttentionRow]
    attention_maps: dict[str, np.ndarray]
    stats: PassStats


def analyze_probes(
    arm_id: str,
    model: nn.Module,
    probes: Probes,
    base_hidden: Sequence[Tensor],
    base_attentions: Sequence[Tensor] | None,
    mask: TokenMask,
    *,
    batch_size: int | None = None,
    head_chunk: int | None = None,
    query_chunk: int | None = None,
    map_max_len: int = DEFAULT_MAP_MAX_LEN,
) -> ProbeAnalysis:
    """One hooked pass of ``model`` over ``probes``: representation rows vs ``base_hidden`` on the
    tokens ``mask`` keeps, attention rows (block ``i`` over the queries kept at hidden layer ``i``)
    vs ``base_attentions`` (None: no change metrics), heatmaps of the first ``map_max_len`` tokens."""
    weights = query_weights(probes, mask)
    am = probes.attention_mask
    b, n = am.shape
    L = map_length(am, n, map_max_len)
    sums: dict[int, dict[str, Tensor]] = {}
    maps: dict[int, Tensor] = {}

    def reduce(layer: int, part: slice, attn: Tensor) -> None:
        base = None if base_attentions is None else base_attentions[layer][part]
        got = attention_sums(attn, weights[layer][part], am[part], base, head_chunk=head_chunk, query_chunk=query_chunk)
        sums[layer] = add_sums(sums.get(layer), got)
        mapped = map_sum(attn, am[part], L)
        maps[layer] = mapped if layer not in maps else maps[layer] + mapped

    hidden, stats = run_probe_pass(model, probes, reduce, batch_size=batch_size)
    representation = representation_drift(arm_id, base_hidden, hidden, mask=mask)
    attention = [row for layer in sorted(sums) for row in layer_rows(arm_id, layer, means_from_sums(sums[layer]))]
    heatmaps = {f"{arm_id}/{layer}": (maps[layer] / b).to(torch.float32).numpy() for layer in sorted(maps)}
    return ProbeAnalysis(representation, attention, heatmaps, stats)


__all__ = ["PassStats", "ProbeAnalysis", "analyze_probes", "attention_modules", "reference_pass", "run_probe_pass"]
