"""Inside-the-network analysis of sweep arms: weight-update spectra, representation drift, attention.

- :mod:`~rankscope.analysis.spectral` — singular values of ``dW`` (LoRA from its factors), norms,
  ranks, energy, intruder dimensions (Shuttleworth et al. 2024);
- :mod:`~rankscope.analysis.probes` — probes: question/answer dialogues with a content mask;
- :mod:`~rankscope.analysis.representation` — debiased CKA vs the base (Kornblith et al. 2019;
  Song et al. 2012) on content tokens, sinks masked (:class:`TokenMask`), hidden-state effective
  rank (Roy & Vetterli 2007);
- :mod:`~rankscope.analysis.attention` — per-head entropy, distance, change vs base, heatmaps,
  reduced in chunks of heads and queries;
- :mod:`~rankscope.analysis.probe_pass` — one hooked forward per model: attention reduced layer by
  layer, never all layers at once;
- :mod:`~rankscope.analysis.pipeline` — :class:`BaseReference` (once per sweep) and
  :func:`analyze_arm` (per arm).

The result rows and the ``analysis/`` files of the run directory live below this package, in
:mod:`rankscope.runstore` (no torch), so the report reads them without importing analysis code.
Importing this package does not import torch either: the torch-backed names below are loaded on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rankscope.runstore.analysis_rows import ArmAnalysis, AttentionRow, RepresentationRow, SpectralRow

_LAZY = {
    "AnalysisOptions": "rankscope.analysis.pipeline",
    "BaseReference": "rankscope.analysis.pipeline",
    "Probes": "rankscope.analysis.pipeline",
    "analyze_arm": "rankscope.analysis.pipeline",
    "SpectralResult": "rankscope.analysis.weight_spectra",
    "weight_update_spectra": "rankscope.analysis.weight_spectra",
}

if TYPE_CHECKING:  # pragma: no cover
    from rankscope.analysis.pipeline import AnalysisOptions, BaseReference, Probes, analyze_arm
    from rankscope.analysis.weight_spectra import SpectralResult, weight_update_spectra


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rankscope.analysis' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AnalysisOptions",
    "ArmAnalysis",
    "AttentionRow",
    "BaseReference",
    "Probes",
    "RepresentationRow",
    "SpectralResult",
    "SpectralRow",
    "analyze_arm",
    "weight_update_spectra",
]
