"""How every arm is scored and looked inside: the ``eval:`` and ``analysis:`` sections of a sweep.

Split from :mod:`rankscope.config.specs` (the rest of the schema) to keep each module small; both
are documented together in docs/config.md.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rankscope.config.base import Spec


class NllSpec(Spec):
    """Continuous forgetting: mean per-token negative log-likelihood on generic text, per arm
    (results.csv metric ``nll``; ``nll_delta`` = arm minus base). Accuracy on small sets moves in
    coarse steps; the NLL of text no arm trained on shows drift long before (PEFT's method
    comparison reports the same change in cross-entropy vs the base model)."""

    # Score the generic-text NLL for every arm (off: no nll / nll_delta rows).
    enabled: bool = True
    # A UTF-8 text file of your own; None = the shipped sample (rankscope.data.generic_text).
    path: str | None = None
    # Tokens scored at most, from the start of the text (the same for every arm). SmolLM2-135M on
    # 2 CPU cores spends ~9 CPU-seconds per 1k tokens, so 2048 adds ~10 s per arm; the shipped
    # sample holds ~12.5k tokens (12000 scores nearly all of it, at ~6x the time).
    max_tokens: int = Field(default=2048, gt=1)
    # Tokens per forward pass; the text is cut into fixed chunks of this many tokens (the
    # stderr of nll_delta is over these chunks, so more chunks give a tighter interval).
    chunk_tokens: int = Field(default=256, ge=8)


class EvalSpec(Spec):
    """How every arm is scored (the same for every arm).

    batch_size: questions per forward pass when scoring.
    max_new_tokens: greedy-decoding budget for generative answers.
    """

    batch_size: int = Field(default=16, gt=0)
    # Default new tokens for generative sets; a set's own max_new_tokens (or its default) wins.
    max_new_tokens: int = Field(default=24, gt=0)
    nll: NllSpec = Field(default_factory=NllSpec)  # generic-text NLL (continuous forgetting)


class AnalysisSpec(Spec):
    """Inside-the-network analysis after each arm (rankscope.analysis): spectra, CKA, attention.

    intruders: Shuttleworth et al. (2024) intruder dimensions, the top ``intruder_k`` singular
    vectors of the fine-tuned weight whose best |cosine| with the base's is below the threshold.
    spectral_threads: torch threads for the SVD-heavy step (1 is fastest on small shared CPUs).
    enabled: run the analysis (off saves time; the report then has no inside-the-network section).
    probe_size: prompts (from the evaluated sets' test questions) the hidden states are taken on.
    probe_max_length: tokens per probe prompt.
    intruder_k: how many top singular vectors per module are checked for intruders.
    intruder_threshold: best |cosine| with the base's vectors below which a vector is an intruder.
    method/device/full_spectrum/spectrum_k/intruder_reference_k/topk_tol/topk_power_iters/rank_dtype:
    the weight pass at scale (top-k SVDs with a residual check; docs/analysis-scale.md).
    """

    enabled: bool = True
    probe_size: int = Field(default=16, gt=0)  # probes: dialogues of evaluated questions + answers
    # tokens per probe; >= 128 so the content, not the chat template, fills it (issue 13)
    probe_max_length: int = Field(default=128, ge=8)
    # probes per analysis forward pass (None: all at once); bounds activation memory
    batch_size: int | None = Field(default=None, gt=0)
    # attention statistics are reduced this many heads x queries at a time (None: all); the float64
    # work buffer is batch x head_chunk x query_chunk x probe length
    head_chunk: int | None = Field(default=4, gt=0)
    # Queries per chunk of the attention statistics (None = all at once); bounds the work buffer with head_chunk.
    query_chunk: int | None = Field(default=128, gt=0)
    # a token whose base hidden-state norm exceeds this x the layer median is a sink, masked (Sun et al. 2024)
    sink_norm_ratio: float = Field(default=5.0, gt=1)
    # attention_maps.safetensors keeps each layer's mean map over the first this-many tokens
    map_max_len: int = Field(default=64, ge=1)
    intruders: bool = True
    intruder_k: int = Field(default=10, gt=0)
    intruder_threshold: float = Field(default=0.5, gt=0, lt=1)
    # Why a grid: one (k, epsilon) cell says little; at epsilon = 0.5 even random directions count
    # (analysis/intruder_null.py); on 576-wide modules the null is ~1 from 0.15 up, so the grid reaches below.
    intruder_grid_k: list[int] = Field(default_factory=lambda: [1, 5, 10], min_length=1)
    # The epsilons of the intruder grid and of its null rate (random unit directions flagged).
    intruder_grid_eps: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 0.9], min_length=1)
    # Why opt-in: a causal test of intruders costs 6 extra evaluations per trained arm (intruder singular
    # values scaled by 0.75/0.5/0 vs a uniform shrink of the same norm; analysis/intruder_control.py).
    intruder_control: bool = False
    spectral_threads: int | None = Field(default=1, gt=0)
    # weight pass at scale (rankscope.analysis.weight_spectra, docs/analysis-scale.md)
    method: Literal["topk", "exact"] = "topk"  # topk: randomized top-k SVD with a residual check; exact: full SVDs (reference)
    device: str = "auto"  # where the SVDs run: auto = the training device, or cpu / cuda / cuda:N
    full_spectrum: bool = False  # also the full SVD of dense (sft) updates, for effective_rank; off: top-k + ||dW||_F
    spectrum_k: int = Field(default=64, gt=0)  # top singular values of a dense update kept under topk (energy ranks need them)
    intruder_reference_k: int | None = Field(default=None, gt=0)  # base vectors the top-k intruder test compares to; None: max(64, 4 * intruder_k)
    topk_tol: float = Field(default=1e-2, gt=0, lt=1)  # accepted ||A v - s u|| / s of a top-k triplet; above: refine, then exact
    topk_power_iters: int = Field(default=4, ge=0)  # power iterations of the randomized range finder (doubled when the check fails)
    rank_dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # eps of numerical_rank_dtype; auto = the trained weights' dtype

    @model_validator(mode="after")
    def _grid_within_k(self) -> "AnalysisSpec":
        for k in self.intruder_grid_k:
            if not 0 < k <= self.intruder_k:
                raise ValueError(f"intruder_grid_k holds {k}; each k must be between 1 and intruder_k "
                                 f"({self.intruder_k}): raise intruder_k or drop {k}")
        for eps in self.intruder_grid_eps:
            if not 0 < eps <= 1:
                raise ValueError(f"intruder_grid_eps holds {eps}; each epsilon must be in (0, 1]")
        return self
