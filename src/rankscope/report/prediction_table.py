"""Predicted vs realised rank: each signal of ``prediction.json`` beside the sweep's knee.

The realised "knee" is the recommended rank (rankscope.verdicts.recommend): the smallest LoRA
rank within the gain margin of the best arm without forgetting beyond the margin. An undecided
recommendation has no knee; it is shown as such and counted apart, never as a hit or a miss.

A prediction ``[lo, hi]`` is a *hit* when ``lo <= knee <= hi``. The knee can only be a swept
rank, so an interval that falls between two swept ranks could never hit; the *grid* column
therefore also snaps the interval outward to the sweep's ranks (``lo`` down to the largest swept
rank at or below it, ``hi`` up to the smallest at or above it, clipped to the swept range) and
counts a hit there. Both are shown; the note says which it quotes.
Torch-free: reads prediction.json and the run's recommendations only.
"""

from __future__ import annotations

from dataclasses import dataclass

from rankscope.report.tables import Table
from rankscope.runstore.prediction import read_prediction
from rankscope.runstore.reader import RunStore


@dataclass(frozen=True)
class PredictionCheck:
    """One signal of one training set against the realised knee (``knee`` None: undecided)."""

    run: str
    train_set: str
    signal: str
    lo: int
    hi: int
    grid: tuple[int, int] | None  # the interval snapped outward to the swept ranks
    knee: int | None
    seconds: float

    @property
    def hit(self) -> bool | None:
        return None if self.knee is None else self.lo <= self.knee <= self.hi

    @property
    def grid_hit(self) -> bool | None:
        if self.knee is None or self.grid is None:
            return None
        return self.grid[0] <= self.knee <= self.grid[1]


def snap_to_grid(lo: int, hi: int, ranks: list[int]) -> tuple[int, int] | None:
    """``[lo, hi]`` widened to the swept ranks around it (clipped to the swept range)."""
    if not ranks:
        return None
    ranks = sorted(ranks)
    below = [r for r in ranks if r <= lo]
    above = [r for r in ranks if r >= hi]
    return (below[-1] if below else ranks[0], above[0] if above else ranks[-1])


def prediction_checks(store: RunStore, run: str = "") -> list[PredictionCheck]:
    """Every (training set, signal) of the run's prediction.json with its knee; [] without one."""
    prediction = read_prediction(store.path, store.notes)
    if prediction is None:
        return []
    knees = {rec.train_set: rec for rec in store.recommendations}
    checks = []
    for train_set, signals in prediction.sets.items():
        rec = knees.get(train_set)
        if rec is None and len(knees) == 1 and None in knees:
            rec = knees[None]  # a run with one training set may record it without a name
        ranks = sorted({a.rank for a in store.arms.values()
                        if a.method == "lora" and a.rank is not None and a.train_set == train_set})
        for s in signals:
            knee = rec.rank if rec is not None and rec.decided else None
            checks.append(PredictionCheck(run, train_set, s.signal, s.lo, s.hi, snap_to_grid(s.lo, s.hi, ranks), knee,
                                          s.seconds))
    return checks


def _yes(value: bool | None) -> str:
    return "undecided" if value is None else ("hit" if value else "miss")


def _side(check: PredictionCheck) -> str:
    if check.knee is None:
        return "—"
    if check.hit:
        return "inside"
    return "knee below" if check.knee < check.lo else "knee above"


def prediction_table(checks: list[PredictionCheck], with_run: bool = False) -> Table | None:
    """The table headed "Predicted vs realised rank", one row per training set and signal."""
    if not checks:
        return None
    rows = []
    for c in checks:
        grid = f"[{c.grid[0]}, {c.grid[1]}]" if c.grid else "—"
        knee = f"r={c.knee}" if c.knee is not None else "undecided"
        rows.append(([c.run] if with_run else []) + [c.train_set, c.signal, f"[{c.lo}, {c.hi}]", grid, knee,
                                                      _yes(c.hit), _side(c), _yes(c.grid_hit), f"{c.seconds:.1f}"])
    columns = (["run"] if with_run else []) + ["trained on", "signal", "predicted rank", "snapped to swept ranks",
                                               "realised knee", "hit", "where", "hit (snapped)", "signal time (s)"]
    return Table("Predicted vs realised rank", columns, rows,
                 "predicted by `rankscope predict` before the sweep (prediction.json; definitions in "
                 "rankscope.predict.signals); realised knee = the recommended rank. hit: lo <= knee <= hi; "
                 "snapped: the interval widened to the swept ranks around it. An undecided knee is neither hit nor "
                 "miss and is counted apart in the hit rate.")


def hit_rate_table(checks: list[PredictionCheck]) -> Table | None:
    """Per signal: hits over decided knees (exact and snapped), and how many knees were undecided."""
    if not checks:
        return None
    rows = []
    for signal in dict.fromkeys(c.signal for c in checks):
        mine = [c for c in checks if c.signal == signal]
        decided = [c for c in mine if c.knee is not None]
        hits = sum(1 for c in decided if c.hit)
        snapped = sum(1 for c in decided if c.grid_hit)
        below = sum(1 for c in decided if not c.hit and c.knee < c.lo)
        rows.append([signal, f"{hits}/{len(decided)}", f"{snapped}/{len(decided)}", str(below),
                     str(len(decided) - hits - below), str(len(mine) - len(decided))])
    return Table("Prediction hit rate", ["signal", "hits / decided knees", "hits (snapped) / decided",
                                         "misses: knee below", "misses: knee above", "undecided knees"], rows,
                 "over every training set (and run) with a prediction; undecided knees are not in the rate")


__all__ = ["PredictionCheck", "hit_rate_table", "prediction_checks", "prediction_table", "snap_to_grid"]
