"""Typed result rows of the inside-the-network analysis (no torch: the report reads these).

One row is one number in one of the run-level tables described in ``docs/run-store.md``:

- ``analysis/spectral.csv``        ``arm_id, layer, module, metric, value``
- ``analysis/representation.csv``  ``arm_id, layer, metric, value``
- ``analysis/attention.csv``       ``arm_id, layer, head, metric, value``

Layer indices follow the Hugging Face conventions and differ between tables on purpose:

- spectral and attention rows: ``layer`` is the 0-based decoder block index
  (``model.layers.{layer}``), i.e. the block whose weights / attention are measured;
- representation rows: ``layer`` indexes ``output_hidden_states``: 0 is the embedding output and
  ``l >= 1`` the output of block ``l - 1`` (the last one after the final norm, as transformers
  returns it). So block ``i``'s attention (attention ``layer=i``) produces representation
  ``layer=i+1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SPECTRAL_COLUMNS = ("arm_id", "layer", "module", "metric", "value")
REPRESENTATION_COLUMNS = ("arm_id", "layer", "metric", "value")
ATTENTION_COLUMNS = ("arm_id", "layer", "head", "metric", "value")
CONTROL_COLUMNS = ("arm_id", "variant", "lam", "dataset", "metric", "value", "n")


@dataclass(frozen=True)
class SpectralRow:
    """One weight-update metric of one module (see :mod:`rankscope.analysis.spectral`)."""

    arm_id: str
    layer: int
    module: str  # short name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, ...
    metric: str
    value: float


@dataclass(frozen=True)
class RepresentationRow:
    """One representation metric of one layer (see :mod:`rankscope.analysis.representation`)."""

    arm_id: str
    layer: int
    metric: str  # cka | effective_rank
    value: float


@dataclass(frozen=True)
class AttentionRow:
    """One attention metric of one head (see :mod:`rankscope.analysis.attention`)."""

    arm_id: str
    layer: int
    head: int
    metric: str  # entropy | distance | entropy_change | js_divergence
    value: float


@dataclass(frozen=True)
class ControlRow:
    """One score of an arm with its intruders scaled by ``lam`` or its update shrunk as much
    (``variant`` intruder | uniform; rankscope.analysis.intruder_control). ``dataset`` is an evaluated
    set (its primary metric), ``generic_text`` (``nll``) or ``weights`` (what the edit changed)."""

    arm_id: str
    variant: str
    lam: float
    dataset: str
    metric: str
    value: float
    n: int


@dataclass
class ArmAnalysis:
    """Everything the analysis of one arm produces; plain data (numpy), cheap to pickle.

    ``singular_values`` maps ``"<arm_id>/<layer>/<module>"`` to a float32 vector (descending) and
    ``attention_maps`` maps ``"<arm_id>/<layer>"`` to a float32 ``[heads, n, n]`` map, exactly the
    keys of ``analysis/singular_values.safetensors`` and ``analysis/attention_maps.safetensors``.
    ``method`` says how the weight update was obtained: ``"lora"`` (from the adapter factors) or
    ``"dense"`` (fine-tuned weights minus the base snapshot; sft and base arms).
    """

    arm_id: str
    method: str = "dense"
    spectral: list[SpectralRow] = field(default_factory=list)
    representation: list[RepresentationRow] = field(default_factory=list)
    attention: list[AttentionRow] = field(default_factory=list)
    singular_values: dict[str, np.ndarray] = field(default_factory=dict)
    attention_maps: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    control: list[ControlRow] = field(default_factory=list)  # only with analysis.intruder_control
