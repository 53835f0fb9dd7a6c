"""``rankscope eval``: score one model (default, hub id, directory, GGUF file, or a run's arm) on a
list of datasets and write the same tidy results.csv a sweep writes (one arm, method ``base`` or
the arm's own)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from rankscope.config import DatasetSpec, EvalSpec, ModelSpec, first_error, read_yaml, resolve_spec_paths
from rankscope.data.registry import load_dataset
from rankscope.errors import ConfigError, ModelLoadError
from rankscope.evaluate.suite import evaluate_model
from rankscope.models.load import LoadedModel, load_base_model
from rankscope.models.resolve import resolve_model
from rankscope.atomic import atomic_write_json
from rankscope.runstore.arms import ArmPlan
from rankscope.runstore.writer import EvalTarget, RunWriter


@dataclass(frozen=True)
class EvalJob:
    model: str
    datasets: list[DatasetSpec]
    limit: int | None
    seed: int = 0
    adapter: str | None = None  # a PEFT adapter folder applied to ``model`` (trained elsewhere)


def read_dataset_list(path: Path) -> list[DatasetSpec]:
    """A YAML list of dataset specs, or a mapping with a ``datasets:`` list."""
    if not path.is_file():
        raise ConfigError(str(path), "datasets file not found", "check the path")
    raw = read_yaml(path)  # a YAML syntax error is one line with the line number
    if isinstance(raw, dict):
        raw = raw.get("datasets")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(str(path), "expected a non-empty list of datasets", "write e.g. - {name: capitals}")
    try:
        specs = TypeAdapter(list[DatasetSpec]).validate_python(raw)
    except ValidationError as error:  # the same wording as a config error, with "did you mean"
        raise first_error(error, str(path), DatasetSpec) from None
    base_dir = path.resolve().parent
    return [resolve_spec_paths(s, base_dir) for s in specs]


def load_model_for_eval(model: str) -> tuple[LoadedModel, str]:
    """``RUN_DIR/arms/<arm_id>`` loads the sweep's base model with that arm's adapter or weights."""
    arm_dir = Path(model)
    if (arm_dir / "arm.json").is_file():
        run_dir = arm_dir.parent.parent
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        spec = ModelSpec.model_validate(config["model"])
        resolve_model(spec)  # an unreachable hub id fails in seconds, not after retries
        loaded = load_base_model(spec)
        if (arm_dir / "adapter").is_dir():
            from peft import PeftModel

            loaded.model = PeftModel.from_pretrained(loaded.model, arm_dir / "adapter").eval()
        elif (arm_dir / "model.safetensors").is_file():
            from safetensors.torch import load_file

            missing, _ = loaded.model.load_state_dict(load_file(arm_dir / "model.safetensors"), strict=False)
            if any("lm_head" not in key for key in missing):
                raise ModelLoadError(str(arm_dir), "stored weights do not match the base model", "check the run")
        return loaded, json.loads((arm_dir / "arm.json").read_text())["arm_id"]
    spec = ModelSpec(id=model)
    resolve_model(spec)
    return load_base_model(spec), "model"


def apply_adapter(loaded: LoadedModel, adapter: str) -> tuple[LoadedModel, str]:
    """``rankscope eval --adapter DIR``: a PEFT LoRA adapter (safetensors) on the loaded model, checked
    against it first (rankscope.models.imported); the arm is named after the folder."""
    from peft import PeftModel

    from rankscope.models.imported import check_against_base, read_imported

    weights = read_imported(adapter, "--adapter")
    if weights.kind != "lora":
        raise ConfigError("--adapter", f"{adapter} is a full checkpoint, not an adapter",
                          "evaluate it with --model DIR")
    check_against_base(weights, loaded.model, "--adapter")
    loaded.model = PeftModel.from_pretrained(loaded.model, str(weights.path)).eval()
    return loaded, Path(adapter).resolve().name


def run_eval(job: EvalJob, out: Path, eval_spec: EvalSpec) -> Path:
    if not (Path(job.model) / "arm.json").is_file():
        resolve_model(ModelSpec(id=job.model))  # a bad model id fails before any dataset loads
    datasets = {}
    for spec in job.datasets:
        if job.limit is not None:
            spec = spec.model_copy(update={"n_test": min(job.limit, spec.n_test or job.limit)})
        datasets[spec.name] = load_dataset(spec, seed=job.seed)
    loaded, arm_id = load_model_for_eval(job.model)
    if job.adapter is not None:
        loaded, arm_id = apply_adapter(loaded, job.adapter)
    items: dict[str, list[dict]] = {}
    evaluation = evaluate_model(loaded.model, loaded.tokenizer, datasets, eval_spec, items)
    store = RunWriter(out)
    arm = ArmPlan(arm_id=arm_id.replace("/", "_"), method="base")
    store.arm_dir(arm.arm_id).mkdir(parents=True, exist_ok=True)
    atomic_write_json(store.arm_dir(arm.arm_id) / "eval.json", evaluation)
    for name, rows in items.items():
        store.write_items(arm.arm_id, name, rows)
    store.finish_arm(arm, fingerprint="eval")
    targets = {"eval": [EvalTarget(dataset=name, kind=d.info.kind, format=d.info.format,
                                   domain=spec.domain or "out",
                                   primary_metric=evaluation["datasets"][name]["primary_metric"]
                                   if spec.primary_metric == "auto" else spec.primary_metric)
                        for (name, d), spec in zip(datasets.items(), job.datasets)]}
    return store.write_results(store.result_rows([arm], targets))
