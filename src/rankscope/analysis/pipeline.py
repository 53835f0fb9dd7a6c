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

from rankscope.analysis.attention import DEFAULT_MAP_MAX_LEN
from rankscope.analysis.base_cache import BaseWeightCache
from rankscope.analysis.probe_pass import analyze_probes, reference_pass
from rankscope.analysis.probes import Probes
from rankscope.analysis.ranks import DEFAULT_ENERGY_KS
from rankscope.analysis.representation import DEFAULT_SINK_NORM_RATIO, TokenMask
from rankscope.analysis.topk import DEFAULT_TOL, TopKSettings
from rankscope.analysis.weight_spectra import (
    DEFAULT_GRID_EPS,
    DEFAULT_GRID_K,
    SpectralSettings,
    build_base_reference,
    weight_update_spectra,
)
from rankscope.runstore.analysis_rows import ArmAnalysis


@dataclass
class AnalysisOptions:
    """Knobs read from the config's ``analysis`` spec (missing attributes keep these defaults)."""

    enabled: bool = True
    intruders: bool = True
    intruder_k: int = 10
    intruder_threshold: float = 0.5
    intruder_grid_k: tuple[int, ...] = DEFAULT_GRID_K
    intruder_grid_eps: tuple[float, ...] = DEFAULT_GRID_EPS
    energy_ks: tuple[int, ...] = DEFAULT_ENERGY_KS
    map_max_len: int = DEFAULT_MAP_MAX_LEN
    batch_size: int | None = None
    head_chunk: int | None = 4
    query_chunk: int | None = 128
    sink_norm_ratio: float = DEFAULT_SINK_NORM_RATIO
    #: torch CPU threads for the SVD-heavy spectral step (None: leave torch's setting). Default 1:
    #: on the shared 2-core dev box the 210 SVDs of SmolLM2-135M's base weights took 12 s with
    #: 1 thread and 559 s with 2 (multi-threaded LAPACK under oversubscription); on an idle
    #: multi-core machine one thread costs at most a few x on these small matrices.
    spectral_threads: int | None = 1
    # weight pass (rankscope.analysis.weight_spectra): method, device, top-k sizes and accuracy
    method: str = "topk"
    device: str = "auto"
    full_spectrum: bool = False
    spectrum_k: int = 64
    intruder_reference_k: int | None = None
    topk_tol: float = DEFAULT_TOL
    topk_power_iters: int = 4
    rank_dtype: str = "auto"

    def spectral_settings(self) -> SpectralSettings:
        return SpectralSettings(method=self.method, device=self.device, full_spectrum=self.full_spectrum,
                                spectrum_k=self.spectrum_k, reference_k=self.intruder_reference_k,
                                rank_dtype=self.rank_dtype,
                                topk=TopKSettings(n_iter=self.topk_power_iters, tol=self.topk_tol))

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
            setattr(options, name, tuple(value) if name in _TUPLES else value)
        return options


_TUPLES = ("energy_ks", "intruder_grid_k", "intruder_grid_eps")


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
    - ``attentions``: per layer ``[b, heads, n, n]`` float32 CPU (for ``js_divergence``);
    - ``token_mask``: the tokens CKA and attention statistics use (:class:`TokenMask`, from the
      base's hidden states: template and sink tokens masked);
    - ``weights``: per module ``W_0`` and the base singular vectors the intruder test compares
      against, streamed to ``cache_dir`` (``RUN_DIR/analysis/base_reference``) or kept in memory
      (:class:`~rankscope.analysis.base_cache.BaseWeightCache`; a rerun reuses a matching one).
    """

    probes: Probes
    hidden_states: list[Tensor]
    attentions: list[Tensor]
    weights: BaseWeightCache
    timings: dict[str, float] = field(default_factory=dict)
    token_mask: TokenMask | None = None

    @classmethod
    def compute(
        cls,
        base_model: nn.Module,
        probes: Any,
        *,
        intruders: bool = True,
        batch_size: int | None = None,
        spectral_threads: int | None = 1,
        sink_norm_ratio: float = DEFAULT_SINK_NORM_RATIO,
        spec: Any = None,
        cache_dir: Any = None,
        key: str = "",
    ) -> "BaseReference":
        """Base hidden states, attentions and the per-module weight reference (plus ``W_0``'s
        singular vectors for intruders, all of them or the top ones per ``spec.method``).

        Call it on the base model before training (the reference holds copies, so in-place
        training afterwards does not change it). A peft-wrapped model is accepted too: its
        adapters are disabled for the forward pass and its ``base_layer`` weights are used.
        ``cache_dir``: where the weight reference is streamed to and resumed from (None: memory);
        ``key``: the base arm's identity, part of the cache fingerprint.
        """
        options = AnalysisOptions.of(spec)
        probes = Probes.of(probes)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        disable = getattr(base_model, "disable_adapter", None)
        with disable() if callable(disable) else nullcontext():
            hidden, attn, token_mask, _ = reference_pass(base_model, probes, batch_size=batch_size,
                                                         sink_norm_ratio=sink_norm_ratio)
        timings["forward_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch_threads(spectral_threads), torch.no_grad():
            weights = build_base_reference(base_model, cache_dir, options.spectral_settings(), intruders=intruders,
                                           intruder_k=options.intruder_k, key=key)
        timings["base_weights_s"] = time.perf_counter() - t0
        assert hidden is not None and attn is not None
        return cls(probes, hidden, attn, weights, timings, token_mask)


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
            ``map_max_len``, ``batch_size``, ``head_chunk``, ``query_chunk`` where present.
            ``enabled=False`` returns an empty result.

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
    if not probes.equals(ref):
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
            intruder_k=options.intruder_k,
            intruder_threshold=options.intruder_threshold,
            energy_ks=options.energy_ks,
            intruders=options.intruders,
            settings=options.spectral_settings(),
            intruder_grid_k=options.intruder_grid_k,
            intruder_grid_eps=options.intruder_grid_eps,
        )
    result.method = spectral.method
    result.spectral = spectral.rows
    result.singular_values = spectral.singular_values
    result.timings["spectral_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    mask = base_reference.token_mask or TokenMask.everything(int(probes.attention_mask.sum()),
                                                             len(base_reference.hidden_states))
    probed = analyze_probes(arm_id, model, probes, base_reference.hidden_states, base_reference.attentions, mask,
                            batch_size=options.batch_size, head_chunk=options.head_chunk,
                            query_chunk=options.query_chunk, map_max_len=options.map_max_len)
    result.representation, result.attention = probed.representation, probed.attention
    result.attention_maps = probed.attention_maps
    result.timings["probes_s"] = time.perf_counter() - t0
    return result


__all__ = ["AnalysisOptions", "BaseReference", "Probes", "analyze_arm", "torch_threads"]
