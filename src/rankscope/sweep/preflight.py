"""Pre-flight: everything ``run`` would refuse, found before the first arm (``rankscope validate``).

``run`` and ``validate`` share these checks, so a config that validates does not fail minutes
later on a typo: the model id resolves (:mod:`rankscope.models.resolve`, never a retry storm),
LoRA target names exist in the model (checked on the meta device: no weights are loaded), and
every dataset loads exactly as the sweep will load it (same seeds, splits and samples).
Duplicate dataset names are refused when the config is read (:mod:`rankscope.config`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rankscope.config import RankscopeConfig
from rankscope.models.resolve import ResolvedModel, meta_model, resolve_model
from rankscope.sweep.plan import ArmPlan, plan_arms

# models.arms (peft, torch) and the data loaders are imported inside the checks that need them,
# so a bad model id is refused before those imports cost seconds.

#: Characters of the first question shown in the preview.
PREVIEW_CHARS = 70


@dataclass(frozen=True)
class DatasetCheck:
    """One dataset as the sweep will see it."""

    name: str
    role: str  # train | eval
    source: str
    kind: str
    format: str
    answer_type: str
    n_train: int
    n_test: int
    preview: str  # the first test (or train) question and its answer, shortened

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Preflight:
    """What ``validate`` prints (and ``--json`` writes)."""

    model: ResolvedModel
    lora_targets: list[str]
    datasets: list[DatasetCheck] = field(default_factory=list)
    arms: list[ArmPlan] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"model": self.model.to_json(), "lora_targets": self.lora_targets,
                "datasets": [d.to_json() for d in self.datasets], "arms": [a.to_json() for a in self.arms]}


def check_model(config: RankscopeConfig) -> tuple[ResolvedModel, list[str]]:
    """Resolve the model and, when LoRA arms are planned, the module names their adapters wrap."""
    resolved = resolve_model(config.model)
    if config.arms.imported:  # an adapter or checkpoint that does not fit the base: refused now
        from rankscope.sweep.imported import check_imported

        check_imported(config, meta_model(config.model, resolved))
    if config.arms.lora is None:
        return resolved, []
    from rankscope.models.arms import resolve_targets

    modules = resolve_targets(meta_model(config.model, resolved), config.arms.lora.targets)
    return resolved, sorted({m.short_name for m in modules})


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def check_datasets(config: RankscopeConfig) -> list[DatasetCheck]:
    """Load every dataset the way :func:`rankscope.sweep.context.load_sweep_data` does."""
    from rankscope.sweep.context import load_sweep_data

    data = load_sweep_data(config)
    train_names = {spec.name for spec in config.data.train}
    checks = []
    for name, dataset in data.evaluated.items():
        info = dataset.info
        first = (dataset.test or dataset.train)[0]
        checks.append(DatasetCheck(
            name=name, role="train" if name in train_names else "eval", source=info.source, kind=info.kind,
            format=info.format, answer_type=info.answer_type, n_train=len(dataset.train) if name in train_names else 0,
            n_test=len(dataset.test), preview=_shorten(f"{first.question} -> {first.answer}"),
        ))
    return checks


def preflight(config: RankscopeConfig, *, datasets: bool = True) -> Preflight:
    """Every check ``run`` makes before its first arm; raises the first RankscopeError found."""
    resolved, targets = check_model(config)
    checks = check_datasets(config) if datasets else []
    return Preflight(model=resolved, lora_targets=targets, datasets=checks, arms=plan_arms(config))


def print_preflight(checked: Preflight) -> None:
    """``rankscope validate``'s terminal view: the model, a table of datasets, a table of arms."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    model = checked.model
    console.print(f"model: {model.id} ({model.where}: {model.location})"
                  + (f"; LoRA targets: {', '.join(checked.lora_targets)}" if checked.lora_targets else ""))
    datasets = Table(title="datasets")
    for column in ("name", "role", "source", "kind", "format", "answer", "train", "test"):
        datasets.add_column(column, no_wrap=column == "name")
    datasets.add_column("first row", overflow="ellipsis", no_wrap=True, max_width=48)
    for d in checked.datasets:
        datasets.add_row(d.name, d.role, d.source, d.kind, d.format, d.answer_type, str(d.n_train), str(d.n_test),
                         d.preview)
    console.print(datasets)
    arms = Table(title="arms")
    for column in ("arm_id", "method", "train_set", "rank", "alpha", "lr", "seed"):
        arms.add_column(column, no_wrap=column in ("arm_id", "train_set"))
    for a in checked.arms:
        arms.add_row(*("-" if v is None else str(v) for v in (a.arm_id, a.method, a.train_set, a.rank, a.alpha, a.lr,
                                                               a.seed)))
    console.print(arms)
