"""Per-arm analysis: one base reference per sweep, then ``analyze_arm`` for every arm.

Usage from the sweep (driver or executor)::

    base_model = load_base(...)                          # before any adapter is injected
    reference = BaseReference.compute(base_model, probes)   # ONCE per sweep
    for arm in arms:
        model = apply_arm(base_model, arm); train(...)      # peft model / fine-tuned model / base
        result = analyze_arm(arm.arm_id, model, reference, probes, config.analysis)
        write_arm_analysis(run_dir, result)                  # driver only (rankscope.runstore.analysis_files)

``probes`` are already tokenized: ``input_ids [b, n]`` and ``attention_mask [b, n]`` (right
padding), as a dict / ``BatchEncoding`` with those keys, a ``(input_ids, attention_mask)`` pair or a
:class:`Probes`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from rankscope.analysis.attention import DEFAULT_MAP_MAX_LEN, attention_structure, eager_attention
from rankscope.analysis.representation import forward_probes, representation_drift
from rankscope.runstore.analysis_rows import ArmAnalysis
from rankscope.analysis.spectral import (
    DEFAULT_ENERGY_KS,
    left_singular_vectors,
    snapshot_block_weights,
    weight_update_spectra,
)


def probe_states(model: nn.Module, probes: "Probes", batch_size: int | None) -> tuple[list[Tensor], list[Tensor]]:
    """Hidden states (per layer ``[n_tokens, hidden]``) and attentions (per layer
    ``[b, heads, n, n]``) on the probes, through the eager attention path that returns weights."""
    with eager_attention(model):
        hidden, attn = forward_probes(model, probes.input_ids, probes.attention_mask,
                                      hidden_states=True, attentions=True, batch_size=batch_size)
    assert hidden is not None and attn is not None
    return hidden, attn


@dataclass(frozen=True)
class Probes:
    """Tokenized probe prompts: ``input_ids [b, n]`` (long), ``attention_mask [b, n]`` (1 = real)."""

    input_ids: Tensor
    attention_mask: Tensor

    @classmethod
    def of(cls, probes: Any) -> "Probes":
        """Accept a :class:`Probes`, a mapping with ``input_ids``/``attention_mask``, or a pair."""
        if isinstance(probes, Probes):
            return probes
        if isinstance(probes, Mapping) or hasattr(probes, "keys"):
            ids, mask = probes["input_ids"], probes.get("attention_mask")
        elif isinstance(probes, (tuple, list)) and len(probes) == 2:
            ids, mask = probes
        else:
            ids, mask = getattr(probes, "input_ids", None), getattr(probes, "attention_mask", None)
        if ids is None:
            raise ValueError("probes need input_ids [b, n] (and attention_mask [b, n])")
        ids = torch.as_tensor(ids).to("cpu")
        mask = torch.ones_like(ids) if mask is None else torch.as_tensor(mask).to("cpu")
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"probes: input_ids {tuple(ids.shape)} and attention_mask {tuple(mask.shape)} must both be [b, n]")
        return cls(ids.long(), mask.long())


@dataclass
class AnalysisOptions:
    """Knobs read from the config's ``analysis`` spec (missing attributes keep these defaults)."""

    enabled: bool = True
    intruders: bool = True
    intruder_k: int = 10
    intruder_threshold: float = 0.5
    energy_ks: tuple[int, ...] = DEFAULT_ENERGY_KS
    map_max_len: int = DEFAULT_MAP_MAX_LEN
    batch_size: int | None = None
    #: torch CPU threads for the SVD-heavy spectral step (None: leave torch's setting). Default 1:
    #: on the shared 2-core dev box the 210 SVDs of SmolLM2-135M's base weights took 12 s with
    #: 1 thread and 559 s with 2 (multi-threaded LAPACK under oversubscription); on an idle
    #: multi-core machine one thread costs at most a few x on these small matrices.
    spectral_threads: int | None = 1

    @classmethod
    def of(cls, spec: Any) -> "AnalysisOptions":
        if isinstance(spec, AnalysisOptions):
            return spec
        options = cls()
        if spec is None:
            return options
        for name in cls.__dataclass_fields__:
            if isinstance(spec, Mapping):
                if name not in spec:
                    continue
                value = spec[name]
            elif hasattr(spec, name):
                value = getattr(spec, name)
            else:
                continue
            setattr(options, name, tuple(value) if name == "energy_ks" else value)
        return options


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily ``torch.set_num_threads(n)`` (no-op for None), restored afterwards."""
    if n is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class BaseReference:
    """What every arm is compared against, computed once per sweep from the base model.

    - ``probes``: the probes it was computed on (``analyze_arm`` checks they are the same);
    - ``hidden_states``: per layer ``[n_tokens, hidden]`` (layer 0 = embeddings);
    - ``attentions``: per layer ``[b, heads, n, n]``;
    - ``weights``: CPU float32 snapshot of the block projection weights, state-dict keys
      (``model.layers.0.self_attn.q_proj.weight``), ``[d_out, d_in]``;
    - ``left_singular_vectors``: module name -> ``U0 [d_out, min(d_out, d_in)]`` of each base
      weight, for the intruder test (None when ``intruders=False``).
    """

    probes: Probes
    hidden_states: list[Tensor]
    attentions: list[Tensor]
    weights: dict[str, Tensor]
    left_singular_vectors: dict[str, Tensor] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def compute(
        cls,
        base_model: nn.Module,
        probes: Any,
        *,
        intruders: bool = True,
        batch_size: int | None = None,
        spectral_threads: int | None = 1,
    ) -> "BaseReference":
        """Base hidden states, attentions and weight snapshot (plus ``W_0``'s SVD for intruders).

        Call it on the base model before training (the snapshot is a copy, so in-place training
        afterwards does not change it). A peft-wrapped model is accepted too: its adapters are
        disabled for the forward pass and its ``base_layer`` weights are snapshotted.
        """
        probes = Probes.of(probes)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        disable = getattr(base_model, "disable_adapter", None)
        with disable() if callable(disable) else nullcontext():
            hidden, attn = probe_states(base_model, probes, batch_size)
        timings["forward_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        weights = snapshot_block_weights(base_model)
        timings["snapshot_s"] = time.perf_counter() - t0
        U = None
        if intruders:
            t0 = time.perf_counter()
            with torch_threads(spectral_threads):
                U = {key[: -len(".weight")]: left_singular_vectors(W) for key, W in weights.items()}
            timings["base_svd_s"] = time.perf_counter() - t0
        assert hidden is not None and attn is not None
        return cls(probes, hidden, attn, weights, U, timings)


def analyze_arm(
    arm_id: str,
    model: nn.Module,
    base_reference: BaseReference,
    probes: Any,
    spec: Any = None,
) -> ArmAnalysis:
    """Weight-update spectra, representation drift and attention structure of one arm.

    Args:
        arm_id: the arm's stable id (no '/').
        model: LoRA arms: the peft model with its adapter active; sft: the fine-tuned model;
            base: the base model itself (then every update is 0 and CKA is exactly 1).
        base_reference: from :meth:`BaseReference.compute`, shared by all arms of the sweep.
        probes: the same probes the reference was computed on.
        spec: the config's ``AnalysisSpec`` (or a mapping / :class:`AnalysisOptions`); reads
            ``enabled``, ``intruders``, ``intruder_k``, ``intruder_threshold``, ``energy_ks``,
            ``map_max_len``, ``batch_size`` where present. ``enabled=False`` returns an empty result.

    Returns:
        :class:`~rankscope.runstore.analysis_rows.ArmAnalysis` (numpy only) for
        :func:`rankscope.runstore.analysis_files.write_arm_analysis`.
    """
    if not arm_id or "/" in arm_id:
        raise ValueError(f"arm id {arm_id!r} must be non-empty and contain no '/'")
    options = AnalysisOptions.of(spec)
    result = ArmAnalysis(arm_id=arm_id)
    if not options.enabled:
        return result
    probes = Probes.of(probes)
    ref = base_reference.probes
    if not (torch.equal(probes.input_ids, ref.input_ids) and torch.equal(probes.attention_mask, ref.attention_mask)):
        raise ValueError(
            f"arm {arm_id!r}: the probes differ from those of the base reference; "
            "compute BaseReference once with the sweep's probes and pass the same probes to every arm"
        )

    t0 = time.perf_counter()
    with torch_threads(options.spectral_threads):
        spectral = weight_update_spectra(
            arm_id,
            model,
            base_reference.weights,
            base_left_singular_vectors=base_reference.left_singular_vectors,
            intruder_k=options.intruder_k,
            intruder_threshold=options.intruder_threshold,
            energy_ks=options.energy_ks,
            intruders=options.intruders,
        )
    result.method = spectral.method
    result.spectral = spectral.rows
    result.singular_values = spectral.singular_values
    result.timings["spectral_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    hidden, attn = probe_states(model, probes, options.batch_size)
    result.timings["forward_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    result.representation = representation_drift(arm_id, base_reference.hidden_states, hidden)
    result.attention, result.attention_maps = attention_structure(
        arm_id, base_reference.attentions, attn, probes.attention_mask, map_max_len=options.map_max_len
    )
    result.timings["drift_s"] = time.perf_counter() - t0
    return result


__all__ = ["AnalysisOptions", "BaseReference", "Probes", "analyze_arm", "torch_threads"]
