"""What every arm of a sweep shares: the loaded datasets, their tokenized training rows, and the
base model in memory. Built once per sweep (not once per arm) and only when an arm needs it."""

from __future__ import annotations

import logging
import gc
from dataclasses import dataclass, field

from rankscope.config import DatasetSpec, RankscopeConfig
from rankscope.data.registry import load_dataset
from rankscope.data.types import LoadedDataset, TaskInfo
from rankscope.errors import DatasetError
from rankscope.evaluate.metrics import auto_primary_metric
from rankscope.models.load import LoadedModel, load_base_model
from rankscope.runstore.writer import EvalTarget
from rankscope.train.loop import EncodedExample, encode_examples

log = logging.getLogger(__name__)


@dataclass
class SweepData:
    """train_sets: training set name -> dataset (its test split is the in-domain evaluation).
    evaluated: every dataset any arm is scored on, by name.
    targets: training set name -> the datasets its arms are scored on, with their domains."""

    train_sets: dict[str, LoadedDataset]
    evaluated: dict[str, LoadedDataset]
    targets: dict[str, list[EvalTarget]]


def _relation(spec: DatasetSpec, train_spec: DatasetSpec, kind: str, train_kind: str, domain: str) -> str:
    """in | near | far of one evaluated set to one training set: the set's own ``relation``
    (one value, or a mapping by training set) when given; else in-domain is in, a set of the
    training set's kind near, the rest far."""
    setting = spec.relation
    if isinstance(setting, dict):
        setting = setting.get(train_spec.name)
    if setting is not None:
        return setting
    if spec.name == train_spec.name or domain == "in":
        return "in"
    return "near" if kind == train_kind else "far"


def _sizes_of_one_set(a: DatasetSpec, b: DatasetSpec) -> bool:
    """Whether two training sets are sizes of one set (an ``n_train`` list): the same test items."""
    return a.sample_of is not None and a.sample_of == b.sample_of


def evaluation_targets(config: RankscopeConfig, infos: dict[str, TaskInfo],
                       auto_primary: dict[str, str] | None = None) -> dict[str, list[EvalTarget]]:
    """A training set's own test split is in-domain; every other set out-of-domain unless its spec
    says. ``auto_primary``: the data's answer to ``primary_metric: auto`` per set (default accuracy)."""
    specs: dict[str, DatasetSpec] = {spec.name: spec for spec in config.data.train}
    for spec in config.data.eval:
        specs.setdefault(spec.name, spec)
    auto_primary = auto_primary or {}
    targets: dict[str, list[EvalTarget]] = {}
    for train_spec in config.data.train:
        rows = []
        for name, spec in specs.items():
            if name != train_spec.name and _sizes_of_one_set(spec, train_spec):
                continue  # another size of the same set: its test split is this set's own test items
            if name == train_spec.name:
                domain = "in"
            else:
                domain = spec.domain or "out"
            info = infos[name]
            primary = spec.primary_metric if spec.primary_metric != "auto" else auto_primary.get(name, "accuracy")
            relation = _relation(spec, train_spec, info.kind, infos[train_spec.name].kind, domain)
            rows.append(EvalTarget(dataset=name, kind=info.kind, format=info.format, domain=domain,
                                   relation=relation, primary_metric=primary))
        targets[train_spec.name] = rows
    return targets


def trains_arms(config: RankscopeConfig) -> bool:
    """Whether any arm trains here; with only imported arms a training set is just the in-domain
    reference, loaded like an evaluation set (no training rows needed, the same test rows as
    ``rankscope eval``)."""
    return config.arms.sft or config.arms.lora is not None


def load_sweep_data(config: RankscopeConfig) -> SweepData:
    train_sets: dict[str, LoadedDataset] = {}
    for spec in config.data.train:
        dataset = load_dataset(spec, seed=config.data.seed, for_training=trains_arms(config))
        if not trains_arms(config):
            if not dataset.test:
                raise DatasetError(f"data.train: {spec.name}", "has no test rows for the in-domain evaluation",
                                   "check its path, split or n_test")
            train_sets[spec.name] = dataset
            continue
        if not dataset.train:
            raise DatasetError(f"data.train: {spec.name}", "has no training rows",
                               "use a dataset with a train split, or list it under data.eval")
        if not dataset.test:
            raise DatasetError(f"data.train: {spec.name}", "has no test rows for the in-domain evaluation",
                               "raise n_test or use a dataset with a test split")
        train_sets[spec.name] = dataset
    evaluated: dict[str, LoadedDataset] = dict(train_sets)
    for spec in config.data.eval:
        if spec.name in evaluated:
            continue
        dataset = load_dataset(spec, seed=config.data.seed)
        if not dataset.test:
            raise DatasetError(f"data.eval: {spec.name}", "has no rows to evaluate", "check its path, split or n_test")
        evaluated[spec.name] = dataset
    infos = {name: d.info for name, d in evaluated.items()}
    auto = {name: auto_primary_metric(d.info.format, d.test) for name, d in evaluated.items()}
    return SweepData(train_sets=train_sets, evaluated=evaluated, targets=evaluation_targets(config, infos, auto))


@dataclass
class SweepContext:
    """Lazily loaded shared state for arms run in this process."""

    config: RankscopeConfig
    _data: SweepData | None = None
    _base: LoadedModel | None = None
    _encoded: dict[str, list[EncodedExample]] = field(default_factory=dict)
    _kept: LoadedModel | None = None  # tokenizer and device of a dropped base (drop_base_model)
    plan: dict = field(default_factory=dict)  # arm id -> rankscope.plan ArmEstimate (the sweep's pre-flight)

    @property
    def data(self) -> SweepData:
        if self._data is None:
            self._data = load_sweep_data(self.config)
        return self._data

    @property
    def base(self) -> LoadedModel:
        if self._base is None:
            log.info("loading base model %s", self.config.model.id)
            self._base = load_base_model(self.config.model)
            self._kept = None
        return self._base

    @property
    def tokenizer(self):
        """The base model's tokenizer, without reloading a dropped base for it."""
        return (self._kept or self.base).tokenizer

    @property
    def device(self):
        return (self._kept or self.base).device

    def drop_base_model(self) -> None:
        """Free the base weights (full fine-tuning too large to sit beside them); the next
        ``base`` access loads them again. The tokenizer and device stay known."""
        if self._base is None:
            return
        self._kept = LoadedModel(model=None, tokenizer=self._base.tokenizer, name=self._base.name,
                                 device=self._base.device, dtype=self._base.dtype)
        self._base = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def encoded_train(self, train_set: str) -> list[EncodedExample]:
        """Tokenized once per sweep; every arm trained on this set reuses it."""
        if train_set not in self._encoded:
            dataset = self.data.train_sets[train_set]
            self._encoded[train_set] = encode_examples(
                self.tokenizer, dataset.train, dataset.info.train_length(self.config.train.max_length)
            )
        return self._encoded[train_set]

    def encoded_validation(self, train_set: str) -> list[EncodedExample]:
        """The validation rows tokenized like the training rows (for ``val_loss``), once per sweep."""
        key = f"{train_set}\x00validation"
        if key not in self._encoded:
            dataset = self.data.train_sets[train_set]
            self._encoded[key] = encode_examples(
                self.tokenizer, dataset.validation, dataset.info.train_length(self.config.train.max_length)
            )
        return self._encoded[key]

    def replace_base_model(self, model) -> None:
        """After a LoRA arm, peft's ``unload()`` hands the (unchanged) base model back."""
        assert self._base is not None
        self._base.model = model
        model.eval()
