"""Attention structure on the probe prompts: entropy, distance, and change vs the base model.

Definitions (the metric map is in docs/architecture.md, "What is measured, and where"; the per-head statistics follow Clark, Khandelwal, Levy &
Manning 2019, "What Does BERT Look At?", and Vig & Belinkov 2019, "Analyzing the Structure of
Attention in a Transformer Language Model"), for attention probabilities ``p_ij`` of query ``i``
over keys ``j`` of one head:

- entropy: ``H_i = -sum_j p_ij log p_ij`` (nats, ``0 log 0 = 0``), averaged over every real query
  position of every probe. Only real (non-padding) keys at causal positions ``j <= i`` count (the
  row is renormalized over them; for a causal LM's own attention this changes nothing). So
  ``0 <= H_i <= log(i + 1)``, and the first query position, which can only attend to itself,
  always has entropy 0 and is included in the mean (as every position is).
- distance: ``D_i = sum_j p_ij |i - j|`` (in tokens), averaged over real queries the same way.
- entropy_change: ``entropy(arm) - entropy(base)`` per head.
- js_divergence: Jensen-Shannon divergence (Lin 1991) between the arm's and the base's
  attention rows, ``JS(p, q) = KL(p || m)/2 + KL(q || m)/2``, ``m = (p + q)/2``, nats, in
  ``[0, log 2]``; averaged over real queries.

Heatmaps (``analysis/attention_maps.safetensors``, bounded by ``map_max_len``: at most
``layers x heads x map_max_len^2`` float32 per arm, whatever the probe length): per layer a float32 ``[heads, L, L]`` map, the
mean over all probes of the attention restricted to each probe's first ``L`` real tokens, with
``L = min(shortest probe's real length, max_len)`` (default ``max_len`` 64). Because attention is
causal, each cropped row still holds the query's whole distribution (rows sum to 1), so the mean
is a proper attention map.

Masking (issue 13): in a sweep, only content queries count (question and answer tokens, not chat
template, not attention sinks; :class:`~rankscope.analysis.representation.TokenMask`); the means
above are then over those queries, with ``query_weight`` 1 for them and 0 otherwise. Keys are not
masked: a query's row stays the distribution the model computed (removing the sink key and
renormalizing would describe attention the model never paid).

Bounded memory (issue 15): :func:`attention_sums` reduces one layer's ``[b, heads, n, n]``
attention in chunks of ``head_chunk`` heads x ``query_chunk`` queries (float64 only per chunk) to
per-head sums; :mod:`rankscope.analysis.probe_pass` calls it from a forward hook on each layer's
attention module, so at most one layer's attention map is alive during the pass, whatever the
depth of the model. The chunked sums equal the unchunked ones up to summation order.

Attention weights need the eager implementation: :func:`collect_attentions` switches the model
with transformers' ``PreTrainedModel.set_attn_implementation("eager")`` for the one forward pass
and restores the previous implementation afterwards (:func:`eager_attention`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn

from rankscope.analysis.representation import _hf_model, forward_probes
from rankscope.runstore.analysis_rows import AttentionRow

ATTENTION_METRICS = ("entropy", "distance", "entropy_change", "js_divergence")
DEFAULT_MAP_MAX_LEN = 64


# --------------------------------------------------------------------------- eager switch


def attn_implementation(model: nn.Module) -> str | None:
    """The attention implementation the (possibly peft-wrapped) model currently uses."""
    config = getattr(_hf_model(model), "config", None)
    return getattr(config, "_attn_implementation", None)


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[None]:
    """Run the block with eager attention, then restore the previous implementation (even on error).

    Uses ``PreTrainedModel.set_attn_implementation`` (transformers >= 4.5x, 5.x) on the model
    inside a peft wrapper.
    """
    hf = _hf_model(model)
    previous = attn_implementation(hf)
    if previous == "eager" or previous is None:
        yield
        return
    hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        hf.set_attn_implementation(previous)


def collect_attentions(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, *, batch_size: int | None = None
) -> list[Tensor]:
    """Per layer ``[b, heads, n, n]`` float32 CPU attention probabilities on the probes.

    ``input_ids``/``attention_mask`` are ``[b, n]``. Switches to eager attention only for this pass.
    """
    with eager_attention(model):
        _, attn = forward_probes(
            model, input_ids, attention_mask, hidden_states=False, attentions=True, batch_size=batch_size
        )
    assert attn is not None
    return attn


# --------------------------------------------------------------------------- statistics


def row_entropy(p: Tensor) -> Tensor:
    """Shannon entropy (nats) of distributions along the last dim, ``0 log 0 = 0``: ``[...]``."""
    p = p.to(torch.float64)
    return -torch.where(p > 0, p * torch.log(p.clamp_min(torch.finfo(torch.float64).tiny)), 0.0).sum(-1)


def row_js_divergence(p: Tensor, q: Tensor) -> Tensor:
    """Jensen-Shannon divergence (nats) between distributions along the last dim: ``[...]``."""
    p, q = p.to(torch.float64), q.to(torch.float64)
    m = 0.5 * (p + q)
    tiny = torch.finfo(torch.float64).tiny

    def kl(a: Tensor) -> Tensor:
        return torch.where(a > 0, a * (torch.log(a.clamp_min(tiny)) - torch.log(m.clamp_min(tiny))), 0.0).sum(-1)

    return (0.5 * kl(p) + 0.5 * kl(q)).clamp_min(0.0)


def _masks(attn: Tensor, attention_mask: Tensor | None, causal: bool) -> tuple[Tensor, Tensor]:
    """``(allowed [b, 1, n, n] keys per query, query_valid [b, n])`` as float64."""
    b, _, n, n_k = attn.shape
    if n != n_k:
        raise ValueError(f"expected attention [batch, heads, n, n], got {tuple(attn.shape)}")
    valid = (
        torch.ones(b, n, dtype=torch.float64)
        if attention_mask is None
        else attention_mask.to(device="cpu", dtype=torch.float64)
    )
    if valid.shape != (b, n):
        raise ValueError(f"attention_mask {tuple(valid.shape)} does not match attention {tuple(attn.shape)}")
    allowed = valid[:, None, None, :].expand(b, 1, n, n)  # real keys
    if causal:
        allowed = allowed * torch.tril(torch.ones(n, n, dtype=torch.float64))
    return allowed, valid


def _rows(attn: Tensor, attention_mask: Tensor | None, causal: bool) -> tuple[Tensor, Tensor]:
    """Rows restricted to allowed keys and renormalized ``[b, h, n, n]``, and query weights ``[b, n]``."""
    allowed, valid = _masks(attn, attention_mask, causal)
    p = attn.detach().to(device="cpu", dtype=torch.float64) * allowed
    total = p.sum(-1, keepdim=True)
    p = torch.where(total > 0, p / total.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    return p, valid


def _mean_over_queries(per_query: Tensor, valid: Tensor) -> Tensor:
    """``per_query [b, h, n]`` averaged over real queries of all probes -> ``[h]``."""
    weights = valid[:, None, :]  # [b, 1, n]
    count = valid.sum()
    if count == 0:
        return torch.zeros(per_query.shape[1], dtype=torch.float64)
    return (per_query * weights).sum(dim=(0, 2)) / count


def attention_entropy(attn: Tensor, attention_mask: Tensor | None = None, *, causal: bool = True) -> Tensor:
    """Mean attention entropy per head, ``[heads]`` (nats).

    Args:
        attn: ``[b, heads, n, n]`` attention probabilities (query, key).
        attention_mask: ``[b, n]``, 1 for real tokens; padded queries are skipped, padded keys
            removed (rows renormalized). None: all real.
        causal: also restrict query ``i`` to keys ``j <= i`` (a no-op on a causal LM's attention).
    """
    p, valid = _rows(attn, attention_mask, causal)
    return _mean_over_queries(row_entropy(p), valid)


def mean_attention_distance(attn: Tensor, attention_mask: Tensor | None = None, *, causal: bool = True) -> Tensor:
    """Mean attention distance per head ``[heads]``: ``sum_j p_ij |i - j|`` averaged over real queries."""
    p, valid = _rows(attn, attention_mask, causal)
    n = attn.shape[-1]
    pos = torch.arange(n, dtype=torch.float64)
    dist = (pos[:, None] - pos[None, :]).abs()  # [n, n]
    return _mean_over_queries((p * dist).sum(-1), valid)


def js_divergence(
    p_attn: Tensor, q_attn: Tensor, attention_mask: Tensor | None = None, *, causal: bool = True
) -> Tensor:
    """Mean Jensen-Shannon divergence per head ``[heads]`` between two ``[b, heads, n, n]`` attentions."""
    if p_attn.shape != q_attn.shape:
        raise ValueError(f"attention shapes differ: {tuple(p_attn.shape)} vs {tuple(q_attn.shape)}")
    p, valid = _rows(p_attn, attention_mask, causal)
    q, _ = _rows(q_attn, attention_mask, causal)
    return _mean_over_queries(row_js_divergence(p, q), valid)


def attention_sums(
    attn: Tensor,
    query_weight: Tensor,
    key_mask: Tensor,
    base: Tensor | None = None,
    *,
    head_chunk: int | None = None,
    query_chunk: int | None = None,
    causal: bool = True,
) -> dict[str, Tensor]:
    """Per-head SUMS over weighted queries of one layer's attention, reduced chunk by chunk.

    Args:
        attn: ``[b, heads, n, n]`` attention probabilities (any device, any float dtype).
        query_weight: ``[b, n]``, 1 for a query that counts (0 for padding, template, sinks).
        key_mask: ``[b, n]``, 1 for real keys (rows are restricted to them and renormalized).
        base: the base model's ``[b, heads, n, n]`` attention on the same probes (any device), or
            None; then no ``js_divergence`` / ``base_entropy`` sums.
        head_chunk, query_chunk: chunk sizes (None: all heads / all queries at once); only the
            float64 copy of one ``[b, head_chunk, query_chunk, n]`` chunk exists at a time.

    Returns:
        ``entropy``, ``distance`` (and ``js_divergence``, ``base_entropy``) float64 CPU ``[heads]``
        sums of per-query values times ``query_weight``, plus ``count`` (0-d, the weight total).
        Divide by ``count`` for the means of the module docstring.
    """
    b, h, n, n_k = attn.shape
    if n != n_k:
        raise ValueError(f"expected attention [batch, heads, n, n], got {tuple(attn.shape)}")
    if query_weight.shape != (b, n) or key_mask.shape != (b, n):
        raise ValueError(f"query_weight {tuple(query_weight.shape)} / key_mask {tuple(key_mask.shape)} must be [{b}, {n}]")
    if base is not None and base.shape != attn.shape:
        raise ValueError(f"base attention {tuple(base.shape)} vs arm {tuple(attn.shape)}")
    device, f64 = attn.device, torch.float64
    qw = query_weight.to(device=device, dtype=f64)  # [b, n]
    km = key_mask.to(device=device, dtype=f64)  # [b, n]
    pos = torch.arange(n, device=device, dtype=f64)
    hc, qc = max(1, head_chunk or h), max(1, query_chunk or n)
    names = ("entropy", "distance") + (("js_divergence", "base_entropy") if base is not None else ())
    sums = {name: torch.zeros(h, dtype=f64, device=device) for name in names}
    tiny = torch.finfo(f64).tiny

    def rows(chunk: Tensor, select: Tensor, allowed: Tensor) -> Tensor:
        """``chunk [b, hc, qc, n]`` -> the selected queries' rows ``[hc, m, n]``, float64,
        restricted to allowed keys and renormalized (an all-zero row stays zero)."""
        p = chunk.transpose(0, 1)[:, select].to(device=device, dtype=f64) * allowed  # [hc, m, n]
        return p / p.sum(-1, keepdim=True).clamp_min(tiny)

    for q0 in range(0, n, qc):
        q1 = min(n, q0 + qc)
        weight = qw[:, q0:q1]  # [b, qc]
        select = weight != 0  # only queries that count are reduced at all
        if not bool(select.any()):
            continue
        w = weight[select]  # [m]
        allowed = km[:, None, :].expand(b, q1 - q0, n)  # real keys
        if causal:
            allowed = allowed * (pos[None, :] <= pos[q0:q1, None])  # [b, qc, n]
        allowed = allowed[select]  # [m, n]
        dist = (pos[q0:q1, None] - pos[None, :]).abs().expand(b, q1 - q0, n)[select]  # [m, n]
        for h0 in range(0, h, hc):
            h1 = min(h, h0 + hc)
            p = rows(attn[:, h0:h1, q0:q1, :], select, allowed)  # [hc, m, n]
            hp = torch.special.entr(p).sum(-1)  # [hc, m] entropy per row (0 log 0 = 0)
            sums["entropy"][h0:h1] += hp @ w
            sums["distance"][h0:h1] += (p * dist).sum(-1) @ w
            if base is not None:
                r = rows(base[:, h0:h1, q0:q1, :], select, allowed)
                hr = torch.special.entr(r).sum(-1)
                # JS(p, r) = H((p + r)/2) - H(p)/2 - H(r)/2 (Lin 1991), the KL form of
                # row_js_divergence in one entropy; exactly 0 when p == r
                js = (torch.special.entr(0.5 * (p + r)).sum(-1) - 0.5 * hp - 0.5 * hr).clamp_min(0.0)
                sums["js_divergence"][h0:h1] += js @ w
                sums["base_entropy"][h0:h1] += hr @ w
                del r
            del p
    out = {name: value.cpu() for name, value in sums.items()}
    out["count"] = qw.sum().cpu()
    return out


def add_sums(total: dict[str, Tensor] | None, part: dict[str, Tensor]) -> dict[str, Tensor]:
    """Accumulate :func:`attention_sums` results (e.g. over batches of probes)."""
    if total is None:
        return {k: v.clone() for k, v in part.items()}
    for k, v in part.items():
        total[k] += v
    return total


def means_from_sums(sums: dict[str, Tensor]) -> dict[str, Tensor]:
    """Per-head metrics ``entropy``, ``distance`` (and ``entropy_change``, ``js_divergence``)."""
    count = float(sums["count"])
    mean = {k: (v / count if count > 0 else torch.zeros_like(v)) for k, v in sums.items() if k != "count"}
    out = {"entropy": mean["entropy"], "distance": mean["distance"]}
    if "js_divergence" in mean:
        out["entropy_change"] = mean["entropy"] - mean["base_entropy"]
        out["js_divergence"] = mean["js_divergence"]
    return out


def map_length(attention_mask: Tensor | None, n: int, max_len: int = DEFAULT_MAP_MAX_LEN) -> int:
    """``L = min(shortest probe's real length, max_len)`` of the heatmaps."""
    shortest = n if attention_mask is None else int(attention_mask.to("cpu").long().sum(-1).min())
    return max(0, min(max_len, shortest))


def map_sum(attn: Tensor, attention_mask: Tensor | None, L: int) -> Tensor:
    """float64 CPU ``[heads, L, L]``: the sum over probes of each one's first ``L`` real tokens' attention."""
    b, h, n, _ = attn.shape
    valid = torch.ones(b, n, dtype=torch.bool) if attention_mask is None else attention_mask.to("cpu").bool()
    total = torch.zeros(h, L, L, dtype=torch.float64)
    for i in range(b):
        idx = torch.nonzero(valid[i]).flatten()[:L].to(attn.device)
        total += attn[i][:, idx][:, :, idx].to(device="cpu", dtype=torch.float64)
    return total


def mean_attention_map(
    attn: Tensor, attention_mask: Tensor | None = None, *, max_len: int = DEFAULT_MAP_MAX_LEN
) -> np.ndarray:
    """float32 ``[heads, L, L]``: mean over probes of each probe's first ``L`` real tokens' attention.

    ``L = min(shortest real length, max_len)``; see the module docstring.
    """
    b, h, n, _ = attn.shape
    L = map_length(attention_mask, n, max_len)
    if L == 0:
        return np.zeros((h, 0, 0), dtype=np.float32)
    return (map_sum(attn, attention_mask, L) / b).to(torch.float32).numpy()


def attention_structure(
    arm_id: str,
    base_attn: Sequence[Tensor] | None,
    arm_attn: Sequence[Tensor],
    attention_mask: Tensor | None,
    *,
    map_max_len: int = DEFAULT_MAP_MAX_LEN,
    causal: bool = True,
    query_weights: Sequence[Tensor] | None = None,
    head_chunk: int | None = None,
    query_chunk: int | None = None,
) -> tuple[list[AttentionRow], dict[str, np.ndarray]]:
    """Rows and heatmaps of one arm's attention from materialized maps (per layer, per head).

    The sweep uses the hook-based :func:`rankscope.analysis.probe_pass.analyze_probes`, which
    computes the same numbers without holding all layers; this is the reference form.

    Args:
        arm_id: written into every row and key.
        base_attn: the base model's :func:`collect_attentions` on the same probes, or None (then
            only ``entropy`` and ``distance`` rows).
        arm_attn: the arm's :func:`collect_attentions`; per layer ``[b, heads, n, n]``.
        attention_mask: the probes' ``[b, n]`` mask.
        query_weights: per layer ``[b, n]`` queries that count (None: every real query).

    Returns:
        ``(rows, maps)``: rows with metrics ``entropy``, ``distance``, ``entropy_change``,
        ``js_divergence``; ``maps["<arm_id>/<layer>"]`` float32 ``[heads, L, L]``.
    """
    if base_attn is not None and len(base_attn) != len(arm_attn):
        raise ValueError(f"base has {len(base_attn)} attention layers but arm {arm_id!r} has {len(arm_attn)}")
    rows: list[AttentionRow] = []
    maps: dict[str, np.ndarray] = {}
    for layer, attn in enumerate(arm_attn):
        b, _, n, _ = attn.shape
        keys = torch.ones(b, n) if attention_mask is None else attention_mask
        weight = keys if query_weights is None else query_weights[layer]
        base = None if base_attn is None else base_attn[layer]
        if base is not None and base.shape != attn.shape:
            raise ValueError(f"layer {layer}: base attention {tuple(base.shape)} vs arm {tuple(attn.shape)}")
        sums = attention_sums(attn, weight, keys, base, head_chunk=head_chunk, query_chunk=query_chunk, causal=causal)
        rows.extend(layer_rows(arm_id, layer, means_from_sums(sums)))
        maps[f"{arm_id}/{layer}"] = mean_attention_map(attn, attention_mask, max_len=map_max_len)
    return rows, maps


def layer_rows(arm_id: str, layer: int, per_metric: dict[str, Tensor]) -> list[AttentionRow]:
    """One :class:`AttentionRow` per (metric, head) of one layer."""
    return [AttentionRow(arm_id, layer, head, metric, float(value))
            for metric, values in per_metric.items() for head, value in enumerate(values.tolist())]


def max_entropy(n: int) -> float:
    """``log n``: the entropy of uniform attention over ``n`` keys (the upper bound)."""
    return math.log(n)
