"""Representation drift: how far an arm's hidden states moved from the base model's.

Definitions (the metric map is in docs/architecture.md, "What is measured, and where"):

- linear CKA (Kornblith, Norouzi, Lee & Hinton 2019, "Similarity of Neural Network
  Representations Revisited", ICML): for representations ``X [n, d1]`` and ``Y [n, d2]`` of the
  same ``n`` tokens, centered over the tokens (the HSIC centering),
  ``CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` (their eq. (5), the feature-space form
  of linear HSIC normalized; cost ``O(n d^2)``, no ``n x n`` Gram matrix). Computed in float64.
  In ``[0, 1]``; invariant to orthogonal transforms and isotropic scaling, not to arbitrary
  invertible linear maps. Identical inputs give exactly 1; a constant (zero-variance) input
  against a non-identical one gives 0 (the ratio is 0/0; we report "no shared variance").
- debiased CKA (the ``cka`` rows): the same ratio with the unbiased HSIC estimator of Song, Smola,
  Gretton, Bedo & Borgwardt 2012 (JMLR, "Feature Selection via Dependence Maximization", eq. (5)),
  as Kornblith et al. 2019 use it for small samples. Plain linear CKA is biased upward when the
  number of tokens is not much larger than the hidden size; the unbiased estimator is used
  always (one estimator for every layer and model, and its bias correction vanishes for many
  tokens), in a feature-space form, ``O(n d^2)``, that never builds the ``n x n`` Gram matrices.
  It can be slightly negative or above 1 by sampling noise; it is reported as computed.
- which tokens count (:class:`TokenMask`): only content tokens (question and answer, not chat
  template; :mod:`rankscope.analysis.probes`) that are not attention sinks. A sink is the first
  token of each probe (Xiao, Tian, Chen, Han & Lewis 2023, "Efficient Streaming Language Models
  with Attention Sinks") or a token whose base hidden-state norm at that layer exceeds
  ``sink_norm_ratio`` x the layer's median norm (massive activations, Sun, Chen, Kolter & Liu
  2024, "Massive Activations in Large Language Models"). On SmolLM2-135M the first token's norm
  is ~25,000 against a median of 140-680 in layers 12-29 (ratio 40-180) while content tokens
  stay under 2.5x the median, so linear CKA over all tokens measures that one token and reads
  0.9998+ for every arm (:func:`linear_cka` on every token, the former definition, is kept for
  comparison: ``bench/probe_cka.py`` prints both).
- effective rank of a hidden-state matrix (Roy & Vetterli 2007): ``exp(H(p))``,
  ``p = s / sum(s)`` over the singular values ``s`` of the token-centered matrix ``[n, d]``
  (centering removes the shared mean direction, which otherwise dominates the spectrum of
  transformer residual streams).

Layer convention (``collect_hidden_states``): index 0 is the embedding output, index ``l >= 1``
the output of decoder block ``l - 1``; the last entry is after the model's final norm, as
transformers returns ``output_hidden_states``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rankscope.runstore.analysis_rows import RepresentationRow
from rankscope.analysis.spectral import entropy_effective_rank

REPRESENTATION_METRICS = (
    "cka", "effective_rank", "cka_tokens", "masked_template", "masked_sink", "arm_outliers",
)
DEFAULT_SINK_NORM_RATIO = 5.0


def _center(X: Tensor) -> Tensor:
    X = X.detach().to(device="cpu", dtype=torch.float64)
    return X - X.mean(dim=0, keepdim=True)


def linear_cka(X: Tensor, Y: Tensor) -> float:
    """Linear CKA between ``X [n, d1]`` and ``Y [n, d2]`` (Kornblith et al. 2019), in ``[0, 1]``.

    Rows are the same ``n`` examples (tokens) in both. Centered, float64, feature-space formula
    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)``. Exactly 1 when ``X`` and ``Y`` are equal.
    """
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"CKA needs [n, d1] and [n, d2] with the same n, got {tuple(X.shape)} and {tuple(Y.shape)}")
    if X.shape == Y.shape and torch.equal(X, Y):
        return 1.0
    Xc, Yc = _center(X), _center(Y)  # [n, d1], [n, d2]
    cross = torch.linalg.matrix_norm(Yc.T @ Xc) ** 2  # ||Y^T X||_F^2
    denom = torch.linalg.matrix_norm(Xc.T @ Xc) * torch.linalg.matrix_norm(Yc.T @ Yc)
    if not bool(denom > 0):
        return 0.0
    return float((cross / denom).clamp(0.0, 1.0))


def _hsic_terms(cross_fro2: Tensor, kx: Tensor, ly: Tensor, k1: Tensor, l1: Tensor) -> Tensor:
    """Song et al. 2012 eq. (5) from ``||Y^T X||_F^2``, the Gram diagonals ``kx``, ``ly`` [n] and
    the row sums ``k1``, ``l1`` [n] of the zero-diagonal Gram matrices."""
    n = kx.shape[0]
    trace = cross_fro2 - (kx * ly).sum()
    total = trace + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1 @ l1)
    return total / (n * (n - 3))


def _unbiased_hsic(X: Tensor, Y: Tensor) -> Tensor:
    """Unbiased linear HSIC (Song et al. 2012, eq. (5)) of ``X [n, d1]``, ``Y [n, d2]`` (float64).

    With ``K = X X^T``, ``L = Y Y^T`` and their diagonals zeroed (``K~``, ``L~``)::

        HSIC_1 = [tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2)) - 2/(n-2) 1^T K~ L~ 1] / (n (n-3))

    evaluated without Gram matrices: ``tr(K~ L~) = ||Y^T X||_F^2 - sum_i |x_i|^2 |y_i|^2``,
    ``K~ 1 = X (X^T 1) - diag(K)``. Needs ``n >= 4``.
    """
    kx, ly = (X * X).sum(1), (Y * Y).sum(1)  # [n] diagonals of K and L
    k1, l1 = X @ X.sum(0) - kx, Y @ Y.sum(0) - ly  # [n] row sums of K~ and L~
    return _hsic_terms(torch.linalg.matrix_norm(Y.T @ X) ** 2, kx, ly, k1, l1)


def debiased_cka(X: Tensor, Y: Tensor) -> float:
    """Debiased linear CKA (Kornblith et al. 2019 with Song et al. 2012's unbiased HSIC).

    ``HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))`` for ``X [n, d1]``, ``Y [n, d2]``, float64,
    centered first (the estimator is translation invariant; centering only improves rounding).
    Exactly 1 for equal inputs; 0 when either side has no variance estimate (denominator <= 0);
    NaN for fewer than 4 tokens (the estimator is undefined).
    """
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"CKA needs [n, d1] and [n, d2] with the same n, got {tuple(X.shape)} and {tuple(Y.shape)}")
    if X.shape == Y.shape and torch.equal(X, Y):
        return 1.0
    if X.shape[0] < 4:
        return float("nan")
    Xc, Yc = _center(X), _center(Y)
    denom = _unbiased_hsic(Xc, Xc) * _unbiased_hsic(Yc, Yc)
    if not bool(denom > 0):
        return 0.0
    return float(_unbiased_hsic(Xc, Yc) / denom.sqrt())


def norm_outliers(X: Tensor, ratio: float) -> Tensor:
    """``[n]`` bool: rows of ``X [n, d]`` whose L2 norm exceeds ``ratio`` x the median row norm."""
    norms = X.detach().to(device="cpu", dtype=torch.float64).norm(dim=1)
    if norms.numel() == 0:
        return torch.zeros(0, dtype=torch.bool)
    return norms > ratio * norms.median()


@dataclass(frozen=True)
class TokenMask:
    """Which real probe tokens enter CKA, effective rank and the attention statistics, per layer.

    ``keep[l]`` is ``[n_tokens]`` bool over the real tokens in :func:`forward_probes` order
    (probe-major), for hidden-state layer ``l``; attention block ``i`` uses ``keep[i]``, the mask
    of its input. Computed once from the BASE model's hidden states and applied to the base and
    every arm: the compared token sets must be identical, and arms are analysed one at a time (a
    union over arms would change finished arms' rows). An arm that grows a new outlier is visible
    in its ``arm_outliers`` rows. Counts: ``template`` tokens (not content), ``sink[l]`` tokens
    masked as sinks that are not already template (first tokens and norm outliers).
    """

    keep: list[Tensor]
    template: int
    sink: list[int]
    sink_norm_ratio: float = DEFAULT_SINK_NORM_RATIO

    @classmethod
    def from_base(cls, base_states: Sequence[Tensor], content: Tensor, first: Tensor,
                  sink_norm_ratio: float = DEFAULT_SINK_NORM_RATIO) -> "TokenMask":
        """``content``/``first``: ``[n_tokens]`` bool (content token / first token of a probe)."""
        content, first = content.bool(), first.bool()
        keep, sink = [], []
        for X in base_states:
            if X.shape[0] != content.shape[0]:
                raise ValueError(f"token mask: {content.shape[0]} tokens but hidden states have {X.shape[0]}")
            sinks = first | norm_outliers(X, sink_norm_ratio)
            keep.append(content & ~sinks)
            sink.append(int((content & sinks).sum()))
        return cls(keep, int((~content).sum()), sink, sink_norm_ratio)

    @classmethod
    def everything(cls, n_tokens: int, n_layers: int) -> "TokenMask":
        """Keep every token (no masking)."""
        return cls([torch.ones(n_tokens, dtype=torch.bool)] * n_layers, 0, [0] * n_layers, float("inf"))


def hidden_effective_rank(X: Tensor, center: bool = True) -> float:
    """Effective rank (Roy & Vetterli 2007) of a hidden-state matrix ``X [n, d]``; 0 if ``X`` is 0."""
    Xd = _center(X) if center else X.detach().to(device="cpu", dtype=torch.float64)
    return entropy_effective_rank(torch.linalg.svdvals(Xd))


def _hf_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a peft wrapper (or the model itself)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@torch.no_grad()
def forward_probes(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    *,
    hidden_states: bool = True,
    attentions: bool = False,
    batch_size: int | None = None,
) -> tuple[list[Tensor] | None, list[Tensor] | None]:
    """One pass over the probes in eval mode, returning CPU float32 outputs.

    Args:
        input_ids, attention_mask: ``[b, n]`` (padding marked by ``attention_mask == 0``).
        hidden_states: collect ``output_hidden_states``.
        attentions: collect ``output_attentions`` (the caller must have switched to eager
            attention, see :func:`rankscope.analysis.attention.eager_attention`).
        batch_size: forward in chunks of this many probes (default: all at once).

    Returns:
        ``(hidden, attn)``: ``hidden[l]`` is ``[n_tokens, hidden]`` with only the non-padding
        positions (row-major over probes, then positions), ``l = 0`` the embedding output;
        ``attn[l]`` is ``[b, heads, n, n]``. ``None`` for what was not asked for.
    """
    if input_ids.shape != attention_mask.shape or input_ids.ndim != 2:
        raise ValueError(f"probes need input_ids and attention_mask of one shape [b, n], got {tuple(input_ids.shape)} and {tuple(attention_mask.shape)}")
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        mask = attention_mask.bool()  # [b, n]
        step = batch_size or input_ids.shape[0]
        hidden_chunks: list[list[Tensor]] = []
        attn_chunks: list[list[Tensor]] = []
        for start in range(0, input_ids.shape[0], step):
            ids = input_ids[start : start + step]
            am = attention_mask[start : start + step]
            out = model(
                input_ids=ids.to(device),
                attention_mask=am.to(device),
                output_hidden_states=hidden_states,
                output_attentions=attentions,
                use_cache=False,
            )
            keep = mask[start : start + step]  # [b_chunk, n]
            if hidden_states:
                hidden_chunks.append(
                    [h.detach().to(device="cpu", dtype=torch.float32)[keep] for h in out.hidden_states]
                )
            if attentions:
                if not out.attentions or any(a is None for a in out.attentions):
                    raise RuntimeError(
                        "the model returned no attention weights; run inside eager_attention(model)"
                    )
                attn_chunks.append([a.detach().to(device="cpu", dtype=torch.float32) for a in out.attentions])
    finally:
        model.train(was_training)
    hidden = [torch.cat(parts, dim=0) for parts in zip(*hidden_chunks)] if hidden_states else None
    attn = [torch.cat(parts, dim=0) for parts in zip(*attn_chunks)] if attentions else None
    return hidden, attn


def collect_hidden_states(
    model: nn.Module, input_ids: Tensor, attention_mask: Tensor, *, batch_size: int | None = None
) -> list[Tensor]:
    """Per layer ``[n_tokens, hidden]`` float32 CPU hidden states on the probes' real tokens.

    ``input_ids``/``attention_mask`` ``[b, n]``; index 0 is the embedding output, index ``l`` the
    output of block ``l - 1`` (``num_hidden_layers + 1`` entries). Padding positions dropped.
    """
    hidden, _ = forward_probes(model, input_ids, attention_mask, hidden_states=True, batch_size=batch_size)
    assert hidden is not None
    return hidden


def _side(X: Tensor, keep: Tensor) -> dict[str, Tensor]:
    """One side's pieces: kept tokens centered (``Xk [n_k, d]``), squared row norms, column sums."""
    Xk = X.detach().to(device="cpu", dtype=torch.float64)[keep]
    if Xk.shape[0]:
        Xk = Xk - Xk.mean(0)
    return {"k": Xk, "sq": (Xk * Xk).sum(1), "sum": Xk.sum(0)}


def layer_similarity(X: Tensor, Y: Tensor, keep: Tensor) -> dict[str, float]:
    """``cka`` (debiased, kept tokens) and ``effective_rank`` (of ``Y``'s kept tokens) of base
    ``X [n, d1]`` vs arm ``Y [n, d2]`` for one layer.

    Equal to :func:`debiased_cka` and :func:`hidden_effective_rank` (tested) but sharing the
    product ``Y_k^T Y_k`` between them (the effective rank from its eigenvalues, the squared
    singular values, or from the smaller token Gram matrix), which the quick preset's analysis time
    needs.
    """
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0] or keep.shape != (X.shape[0],):
        raise ValueError(f"layer_similarity needs [n, d1], [n, d2] and keep [n], got {tuple(X.shape)}, "
                         f"{tuple(Y.shape)}, {tuple(keep.shape)}")
    keep = keep.bool()
    n_k = int(keep.sum())
    a, b = _side(X, keep), _side(Y, keep)
    yy_k = b["k"].T @ b["k"]  # [d2, d2]
    # squared singular values of Y_k: eigenvalues of the smaller of Y_k^T Y_k [d2, d2] and Y_k Y_k^T [n_k, n_k]
    gram = yy_k if n_k >= yy_k.shape[0] else b["k"] @ b["k"].T
    eig = torch.linalg.eigvalsh(gram).clamp_min(0.0) if n_k else torch.zeros(1, dtype=torch.float64)
    effective_rank = entropy_effective_rank(eig.sqrt().flip(0))
    if X.shape == Y.shape and torch.equal(X, Y):
        return {"cka": 1.0, "effective_rank": effective_rank}
    if n_k < 4:
        return {"cka": float("nan"), "effective_rank": effective_rank}
    xx_k = a["k"].T @ a["k"]  # [d1, d1]
    xy_k = a["k"].T @ b["k"]  # [d1, d2]
    k1, l1 = a["k"] @ a["sum"] - a["sq"], b["k"] @ b["sum"] - b["sq"]  # row sums of the zero-diagonal Grams
    fro2 = lambda M: torch.linalg.matrix_norm(M) ** 2  # noqa: E731
    hxy = _hsic_terms(fro2(xy_k), a["sq"], b["sq"], k1, l1)
    denom = _hsic_terms(fro2(xx_k), a["sq"], a["sq"], k1, k1) * _hsic_terms(fro2(yy_k), b["sq"], b["sq"], l1, l1)
    return {"cka": float(hxy / denom.sqrt()) if bool(denom > 0) else 0.0, "effective_rank": effective_rank}


def representation_drift(
    arm_id: str,
    base_states: Sequence[Tensor],
    arm_states: Sequence[Tensor],
    *,
    mask: TokenMask | None = None,
    center_effective_rank: bool = True,
) -> list[RepresentationRow]:
    """Per hidden-state layer, rows (metric, value):

    - ``cka``: debiased CKA, arm vs base, on the kept tokens of ``mask``;
    - ``effective_rank``: of the arm's kept tokens;
    - ``cka_tokens``, ``masked_template``, ``masked_sink``: tokens kept / masked as template /
      masked as sinks (see :class:`TokenMask`);
    - ``arm_outliers``: kept tokens that are norm outliers in the ARM's states (a new massive
      activation the base-derived mask does not cover).

    ``base_states`` and ``arm_states`` are :func:`collect_hidden_states` outputs on the same probes;
    ``mask=None`` keeps every token.
    """
    if len(base_states) != len(arm_states):
        raise ValueError(f"base has {len(base_states)} hidden-state layers but arm {arm_id!r} has {len(arm_states)}")
    if mask is None:
        mask = TokenMask.everything(base_states[0].shape[0] if len(base_states) else 0, len(base_states))
    if len(mask.keep) != len(base_states):
        raise ValueError(f"token mask has {len(mask.keep)} layers but there are {len(base_states)} hidden-state layers")
    rows: list[RepresentationRow] = []
    for layer, (X, Y) in enumerate(zip(base_states, arm_states)):
        keep = mask.keep[layer]
        outliers = norm_outliers(Y, mask.sink_norm_ratio) & keep  # all False when the ratio is inf
        if center_effective_rank:
            values = layer_similarity(X, Y, keep)
        else:
            values = {"cka": debiased_cka(X[keep], Y[keep]),
                      "effective_rank": hidden_effective_rank(Y[keep], center=False)}
        values |= {
            "cka_tokens": float(keep.sum()),
            "masked_template": float(mask.template),
            "masked_sink": float(mask.sink[layer]),
            "arm_outliers": float(outliers.sum()),
        }
        rows.extend(RepresentationRow(arm_id, layer, metric, value) for metric, value in values.items())
    return rows
