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

import torch
from torch import Tensor, nn

from rankscope.runstore.analysis_rows import RepresentationRow
from rankscope.analysis.spectral import entropy_effective_rank

REPRESENTATION_METRICS = ("cka", "effective_rank")


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


def representation_drift(
    arm_id: str,
    base_states: Sequence[Tensor],
    arm_states: Sequence[Tensor],
    *,
    center_effective_rank: bool = True,
) -> list[RepresentationRow]:
    """Rows ``cka`` (arm vs base, same tokens) and ``effective_rank`` (of the arm's states) per layer.

    ``base_states`` and ``arm_states`` are :func:`collect_hidden_states` outputs on the same probes.
    """
    if len(base_states) != len(arm_states):
        raise ValueError(f"base has {len(base_states)} hidden-state layers but arm {arm_id!r} has {len(arm_states)}")
    rows: list[RepresentationRow] = []
    for layer, (X, Y) in enumerate(zip(base_states, arm_states)):
        rows.append(RepresentationRow(arm_id, layer, "cka", linear_cka(X, Y)))
        rows.append(RepresentationRow(arm_id, layer, "effective_rank", hidden_effective_rank(Y, center_effective_rank)))
    return rows
