"""Imported arms in a sweep: plan them with stable ids, check them against the base before any arm
runs, and score them on the sweep's resident base model (docs/imported.md).

An imported adapter is a ``lora`` arm and an imported full checkpoint an ``sft`` arm (it plays full
fine-tuning's role in the comparisons and the rule), marked ``source: imported`` with its name and
folder. Nothing trains: there is no train.json. The arm id hashes the folder's content (config and
tensors), its name, its training set and the base model, so a rerun keeps a finished imported arm
and a changed adapter gets a new id and is scored again.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field

from rankscope.config import RankscopeConfig
from rankscope.models.imported import ImportedWeights, check_against_base, load_full_weights, read_imported
from rankscope.runstore.analysis_rows import ArmAnalysis
from rankscope.runstore.arms import ArmPlan


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _place(index: int, name: str) -> str:
    return f"arms.imported[{index}] ({name})"


def read_all(config: RankscopeConfig) -> list[ImportedWeights]:
    """Every imported folder read (settings and content hash), in config order."""
    return [read_imported(spec.path, _place(i, spec.name)) for i, spec in enumerate(config.arms.imported)]


def imported_arms(config: RankscopeConfig) -> list[ArmPlan]:
    """One arm per arms.imported entry: full checkpoints first, then adapters by ascending rank (the
    order the sweep scores them in: adapters last, swapped on one base)."""
    model_identity = config.model.model_dump(mode="json", exclude={"cache_dir", "device"})
    default_train = config.data.train[0].name
    arms = []
    for spec, weights in zip(config.arms.imported, read_all(config)):
        train_set = spec.train_set or default_train
        digest = _digest({"model": model_identity, "weights": weights.digest, "name": spec.name,
                          "train_set": train_set})
        common = dict(train_set=train_set, source="imported", name=spec.name, path=str(weights.path))
        if weights.kind == "full":
            arms.append(ArmPlan(arm_id=f"sft-imported-{spec.name}-{train_set}-{digest}", method="sft", **common))
        else:
            arms.append(ArmPlan(arm_id=f"lora-r{weights.rank}-a{weights.alpha:g}-imported-{spec.name}-{train_set}-"
                                       f"{digest}", method="lora", rank=weights.rank, alpha=weights.alpha,
                                scaling=weights.scaling, targets=",".join(weights.targets), **common))
    return sorted(arms, key=lambda a: (a.method != "sft", a.rank or 0))


def check_imported(config: RankscopeConfig, meta_base) -> None:
    """Refuse, before anything runs, a folder whose tensors do not fit the base (``meta_base``: the
    model on the meta device, rankscope.models.resolve.meta_model)."""
    for index, (spec, weights) in enumerate(zip(config.arms.imported, read_all(config))):
        check_against_base(weights, meta_base, _place(index, spec.name))


@dataclass
class ImportedOutput:
    """What an imported arm produced (the runner wraps it in its ArmOutput; no training record)."""

    evaluation: dict
    analysis: ArmAnalysis | None = None
    items: dict[str, list[dict]] = field(default_factory=dict)


class ImportedArmRunner:
    """Scores imported arms for a ``rankscope.sweep.arm.ArmRunner`` on its resident base: adapters
    through one peft wrapper whose adapter is swapped (rankscope.evaluate.adapters), full checkpoints
    in a copy of the base (like an sft arm's). :meth:`close` hands the base back before a trained arm.
    ``runner`` supplies the context, the evaluation and the analysis every arm shares."""

    def __init__(self, runner):
        self.runner = runner
        self.swap = None  # rankscope.evaluate.adapters.AdapterSwap while adapters are loaded

    def run(self, arm: ArmPlan) -> ImportedOutput:
        weights = read_imported(arm.path, f"arm {arm.arm_id}")
        self.runner._analysis_reference()  # taken from the bare base, before any adapter is injected
        items: dict[str, list[dict]] = {}
        if weights.kind == "full":
            self.close()
            model = self._full_model(weights)
            try:
                evaluation = self.runner._evaluate(arm, model, items)
                analysis = self.runner._analyze(arm, model)
            finally:
                del model
            return ImportedOutput(evaluation=evaluation, analysis=analysis, items=items)
        if self.swap is None:
            from rankscope.evaluate.adapters import AdapterSwap

            self.swap = AdapterSwap(self.runner.context.base.model)
        model = self.swap.activate(weights.path, arm.name)
        evaluation = self.runner._evaluate(arm, model, items)
        analysis = self.runner._analyze(arm, model)
        return ImportedOutput(evaluation=evaluation, analysis=analysis, items=items)

    def _full_model(self, weights: ImportedWeights):
        base = self.runner.context.base.model
        model = copy.deepcopy(base)  # same device and dtype as the base; the base stays untouched
        return load_full_weights(model, weights).eval()

    def close(self) -> None:
        if self.swap is not None:
            self.runner.context.replace_base_model(self.swap.close())
            self.swap = None
