"""Which learning rate each arm is evaluated at: selection on the validation split, and its warnings.

A rank compared at one shared learning rate may be a step size compared, not a rank: the best
LoRA rate is ~10x the full fine-tuning one and nearly flat across ranks under alpha/r scaling
(Schulman et al. 2025, "LoRA Without Regret"), and careful comparisons tune it per arm
(Biderman et al. 2024, "LoRA Learns Less and Forgets Less"). With a grid (``train.lr`` lists),
every (method, rank, alpha) of a training set is trained once per rate and seed; this module
picks one rate per arm group on the validation split, from the mean over seeds, so every seed
of the selected arm uses the same rate and the paired comparisons stay paired. The test split is
never read here: the candidates are scored on validation rows only.

Pure functions on plain records (no torch), shared by the sweep (which promotes the selected
candidates) and the report (U-curves, the rate table, the warnings); :func:`read_candidates`
reads them back from a run directory (docs/run-store.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

SelectBy = Literal["val_accuracy", "val_loss"]

#: arm.json ``stage``: a grid candidate (validation only), the candidate whose rate was
#: selected (then evaluated like any arm), or an arm trained at a single rate.
CANDIDATE, SELECTED, FINAL = "candidate", "selected", "final"

#: Means closer than this are a tie (equal counts of correct items give exactly equal means).
TIE = 1e-12

NOT_TUNED = "rates not tuned: differences between ranks may reflect the learning rate"

#: The published LoRA/full fine-tuning ratio of best rates (Schulman et al. 2025), for the report.
PUBLISHED_LORA_SFT_RATIO = 10.0


@dataclass(frozen=True)
class Candidate:
    """One (arm, rate, seed) of a grid with its validation scores (None when the arm failed)."""

    arm_id: str
    method: str
    rank: int | None
    alpha: float | None
    train_set: str | None
    seed: int | None
    lr: float
    val_accuracy: float | None = None
    val_loss: float | None = None
    failed: bool = False

    @property
    def group(self) -> tuple:
        """Candidates that compete for one rate: same training set, method, rank and alpha."""
        return (self.train_set, self.method, self.rank, self.alpha)


@dataclass(frozen=True)
class RateScore:
    """One rate of a group: validation means over its seeds (None when a seed failed)."""

    lr: float
    val_accuracy: float | None
    val_loss: float | None
    seeds: int
    failed_seeds: int


@dataclass(frozen=True)
class RateChoice:
    """The selected rate of one arm group, with every rate's validation score."""

    train_set: str | None
    method: str
    rank: int | None
    alpha: float | None
    select_by: str
    scores: tuple[RateScore, ...]
    selected: float | None
    reason: str

    @property
    def grid(self) -> tuple[float, ...]:
        return tuple(s.lr for s in self.scores)

    @property
    def at_edge(self) -> bool:
        """The best rate is the lowest or highest of a grid of three or more: the optimum may lie
        outside it."""
        return self.selected is not None and len(self.grid) >= 3 and self.selected in (self.grid[0], self.grid[-1])

    @property
    def label(self) -> str:
        return f"lora r{self.rank}" if self.method == "lora" else self.method

    def to_json(self) -> dict:
        return {"train_set": self.train_set, "method": self.method, "rank": self.rank, "alpha": self.alpha,
                "select_by": self.select_by, "selected_lr": self.selected, "at_edge": self.at_edge,
                "reason": self.reason,
                "rates": [{"lr": s.lr, "val_accuracy": s.val_accuracy, "val_loss": s.val_loss,
                           "seeds": s.seeds, "failed_seeds": s.failed_seeds} for s in self.scores]}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _score(lr: float, members: list[Candidate]) -> RateScore:
    ok = [c for c in members if not c.failed]
    failed = len(members) - len(ok)
    accuracy = [c.val_accuracy for c in ok if c.val_accuracy is not None]
    loss = [c.val_loss for c in ok if c.val_loss is not None and math.isfinite(c.val_loss)]
    complete = failed == 0
    return RateScore(lr, _mean(accuracy) if complete and len(accuracy) == len(ok) else None,
                     _mean(loss) if complete and len(loss) == len(ok) else None, len(members), failed)


def _better(a: RateScore, b: RateScore, select_by: str) -> bool:
    """Is ``a`` strictly better than ``b``? Accuracy ties go to the lower loss (and the reverse);
    a full tie keeps the earlier (lower) rate."""
    first, second = ("val_accuracy", "val_loss") if select_by == "val_accuracy" else ("val_loss", "val_accuracy")
    for metric in (first, second):
        x, y = getattr(a, metric), getattr(b, metric)
        if x is None or y is None:
            if x is None and y is None:
                continue
            return y is None  # a known score beats a missing one
        sign = 1.0 if metric == "val_accuracy" else -1.0
        if sign * (x - y) > TIE:
            return True
        if sign * (y - x) > TIE:
            return False
    return False


def select_rates(candidates: Iterable[Candidate], select_by: SelectBy = "val_accuracy") -> list[RateChoice]:
    """One choice per arm group, on the mean over seeds of the validation score.

    A rate with a failed seed (NaN loss, out of memory) is not eligible: its mean would be over
    other seeds than the rest. A group whose every rate failed has no selection.
    """
    groups: dict[tuple, dict[float, list[Candidate]]] = {}
    for c in candidates:
        groups.setdefault(c.group, {}).setdefault(c.lr, []).append(c)
    choices = []
    for (train_set, method, rank, alpha), by_rate in groups.items():
        scores = tuple(_score(lr, members) for lr, members in sorted(by_rate.items()))
        eligible = [s for s in scores if getattr(s, select_by) is not None]
        best: RateScore | None = None
        for s in eligible:
            if best is None or _better(s, best, select_by):
                best = s
        if best is None:
            reason = "no rate finished on every seed: nothing to select"
        else:
            shown = "validation accuracy" if select_by == "val_accuracy" else "validation loss"
            value = getattr(best, select_by)
            ties = [s for s in eligible if s is not best and getattr(s, select_by) is not None
                    and abs(getattr(s, select_by) - value) <= TIE]
            reason = (f"best mean {shown} over {best.seeds} seed(s)"
                      + (" (tied; the lower validation loss wins)" if ties and select_by == "val_accuracy" else ""))
        choices.append(RateChoice(train_set, method, rank, alpha, select_by, scores,
                                  best.lr if best else None, reason))
    return sorted(choices, key=lambda c: (c.train_set or "", {"lora": 0, "sft": 1}.get(c.method, 2), c.rank or 0,
                                          c.alpha or 0.0))


@dataclass(frozen=True)
class RateSummary:
    """A run's learning-rate story, for the report and recommendation.json.

    choices: the selection of every tuned arm group; untuned: trained methods with one rate.
    """

    choices: list[RateChoice] = field(default_factory=list)
    untuned: frozenset[str] = frozenset()

    @property
    def tuned(self) -> bool:
        return bool(self.choices)

    def best_sft_rate(self, train_set: str | None) -> float | None:
        """The selected full fine-tuning rate of one training set (None: SFT was not on a grid)."""
        return next((c.selected for c in self.choices if c.method == "sft" and c.train_set == train_set
                     and c.selected is not None), None)

    def ratio(self, train_set: str | None) -> tuple[float, float] | None:
        """(min, max) over ranks of best LoRA rate / best SFT rate on one training set."""
        sft = self.best_sft_rate(train_set)
        lora = [c.selected for c in self.choices if c.method == "lora" and c.train_set == train_set
                and c.selected is not None]
        if sft is None or not lora:
            return None
        ratios = [rate / sft for rate in lora]
        return min(ratios), max(ratios)

    def warnings(self, train_set: str | None = None) -> list[str]:
        """What a reader must see beside the recommendation: rates not tuned for a trained method,
        a best rate at the edge of its grid (widen it), a group with nothing selected."""
        found = []
        if self.untuned:
            found.append(NOT_TUNED + ("" if not self.choices else
                                      f" ({', '.join(sorted(self.untuned))} trained at a single rate)"))
        for c in self.choices:
            if train_set is not None and c.train_set != train_set:
                continue
            where = f"{c.label}{f' [{c.train_set}]' if c.train_set and train_set is None else ''}"
            if c.at_edge:
                side = "lowest" if c.selected == c.grid[0] else "highest"
                found.append(f"{where}: the best learning rate {c.selected:g} is the {side} of its grid "
                             f"{[float(f'{g:g}') for g in c.grid]}; widen the grid")
            elif c.selected is None:
                found.append(f"{where}: {c.reason}")
        return found


def summarize(choices: list[RateChoice], trained_methods: set[str]) -> RateSummary:
    """Methods trained but never on a grid are the untuned ones."""
    return RateSummary(choices, frozenset(trained_methods - {c.method for c in choices}))


def selection_criterion(run_dir: Path) -> SelectBy:
    """``train.select_by`` of the run's config.yaml (the default for an older run)."""
    try:
        config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
        value = config.get("train", {}).get("select_by", "val_accuracy")
    except (OSError, yaml.YAMLError, AttributeError):
        value = "val_accuracy"
    return "val_loss" if value == "val_loss" else "val_accuracy"


def candidate_from_files(arm: dict, evaluation: dict | None) -> Candidate:
    """One candidate from its arm.json and eval.json (None when missing); no validation scores
    (a failed or unfinished arm) counts as failed."""
    metrics = ((evaluation or {}).get("validation") or {}).get("metrics", {}) if arm.get("status") == "done" else {}
    return Candidate(arm_id=str(arm.get("arm_id")), method=str(arm.get("method")), rank=arm.get("rank"),
                     alpha=arm.get("alpha"), train_set=arm.get("train_set"), seed=arm.get("seed"),
                     lr=float(arm["lr"]), val_accuracy=(metrics.get("val_accuracy") or {}).get("value"),
                     val_loss=(metrics.get("val_loss") or {}).get("value"), failed=not metrics)


def read_arm_files(arm_dir: Path) -> tuple[dict | None, dict | None]:
    """(arm.json, eval.json) of one arm folder; None for a missing or unreadable file."""
    found = []
    for name in ("arm.json", "eval.json"):
        try:
            found.append(json.loads((Path(arm_dir) / name).read_text(encoding="utf-8")))
        except (OSError, ValueError):
            found.append(None)
    return found[0], found[1]


def read_candidates(run_dir: Path) -> tuple[list[Candidate], set[str]]:
    """The grid candidates of a run directory (arm.json ``stage`` candidate or selected, with the
    validation scores in eval.json), and the methods of the arms rankscope trained."""
    candidates: list[Candidate] = []
    methods: set[str] = set()
    for path in sorted((Path(run_dir) / "arms").glob("*/arm.json")):
        arm, evaluation = read_arm_files(path.parent)
        if arm is None:
            continue
        arm.setdefault("arm_id", path.parent.name)
        if arm.get("method") in ("lora", "sft") and arm.get("source", "rankscope") != "imported":
            methods.add(arm["method"])  # an imported arm's rate was chosen elsewhere: no warning about it
        if arm.get("stage") in (CANDIDATE, SELECTED) and arm.get("lr") is not None:
            candidates.append(candidate_from_files(arm, evaluation))
    return candidates, methods


def rate_summary(run_dir: Path) -> RateSummary:
    """The run directory's rate selection, rebuilt from its arm files with its own criterion."""
    candidates, methods = read_candidates(run_dir)
    return summarize(select_rates(candidates, selection_criterion(run_dir)), methods)
