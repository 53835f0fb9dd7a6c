"""One arm's settings as the run directory stores them (``arms/<arm_id>/arm.json``).

The sweep's planner (:mod:`rankscope.sweep.plan`) creates these; the run-directory writer, the
standalone evaluator and the executors only carry them. Living below all of them, the record can
be written by ``rankscope eval`` without importing the sweep (docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

Method = Literal["base", "sft", "lora"]  # an imported full checkpoint is "sft", an imported adapter "lora"
Stage = Literal["final", "candidate", "selected"]


@dataclass(frozen=True)
class ArmPlan:
    arm_id: str
    method: Method
    rank: int | None = None
    alpha: float | None = None
    scaling: float | None = None  # the factor on B @ A: alpha/r, or alpha/sqrt(r) with rsLoRA
    seed: int | None = None
    train_set: str | None = None
    lr: float | None = None
    targets: str | None = None
    #: final: trained and evaluated on every set; candidate: one rate of a grid, trained and scored
    #: on the validation split only; selected: the candidate whose rate won, evaluated from its
    #: saved weights (rankscope.verdicts.learning_rates)
    stage: Stage = "final"
    # Arms trained outside rankscope (arms.imported): source "imported", their name and folder.
    source: str = "rankscope"  # rankscope | imported
    name: str | None = None  # the imported arm's name (arms.imported[].name)
    path: str | None = None  # the imported adapter or checkpoint folder

    @property
    def imported(self) -> bool:
        return self.source == "imported"

    def to_json(self) -> dict:
        return asdict(self)
