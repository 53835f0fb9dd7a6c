"""What every arm of a sweep shares: the loaded datasets, their tokenized training rows, and the
base model in memory. Built once per sweep (not once per arm) and only when an arm needs it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rankscope.config import DatasetSpec, RankscopeConfig
from rankscope.data.registry import load_dataset
from rankscope.data.types import LoadedDataset, TaskInfo
from rankscope.errors import DatasetError
from rankscope.models.load import LoadedModel, load_base_model
from rankscope.sweep.store import EvalTarget
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


def evaluation_targets(config: RankscopeConfig, infos: dict[str, TaskInfo]) -> dict[str, list[EvalTarget]]:
    """A training set's own test split is in-domain; every other set out-of-domain unless its spec says."""
    specs: dict[str, DatasetSpec] = {spec.name: spec for spec in config.data.train}
    for spec in config.data.eval:
        specs.setdefault(spec.name, spec)
    targets: dict[str, list[EvalTarget]] = {}
    for train_spec in config.data.train:
        rows = []
        for name, spec in specs.items():
            if name == train_spec.name:
                domain = "in"
            else:
                domain = spec.domain or "out"
            info = infos[name]
            rows.append(EvalTarget(dataset=name, kind=info.kind, format=info.format, domain=domain))
        targets[train_spec.name] = rows
    return targets


def load_sweep_data(config: RankscopeConfig) -> SweepData:
    train_sets: dict[str, LoadedDataset] = {}
    for spec in config.data.train:
        dataset = load_dataset(spec, seed=config.data.seed, for_training=True)
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
    return SweepData(train_sets=train_sets, evaluated=evaluated, targets=evaluation_targets(config, {name: d.info for name, d in evaluated.items()}))


@dataclass
class SweepContext:
    """Lazily loaded shared state for arms run in this process."""

    config: RankscopeConfig
    _data: SweepData | None = None
    _base: LoadedModel | None = None
    _encoded: dict[str, list[EncodedExample]] = field(default_factory=dict)

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
        return self._base

    def encoded_train(self, train_set: str) -> list[EncodedExample]:
        """Tokenized once per sweep; every arm trained on this set reuses it."""
        if train_set not in self._encoded:
            dataset = self.data.train_sets[train_set]
            self._encoded[train_set] = encode_examples(
                self.base.tokenizer, dataset.train, dataset.info.train_length(self.config.train.max_length)
            )
        return self._encoded[train_set]

    def replace_base_model(self, model) -> None:
        """After a LoRA arm, peft's ``unload()`` hands the (unchanged) base model back."""
        assert self._base is not None
        self._base.model = model
        model.eval()
