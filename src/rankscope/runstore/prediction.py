"""``prediction.json``: the rank predicted before a sweep, per training set and signal (no torch).

Written by ``rankscope predict`` (rankscope.predict) and read by the report, which sets each
signal's interval beside the realised knee (the recommended rank, rankscope.verdicts.recommend).
Layout (docs/run-store.md)::

    {"version": 1, "model": "default", "probe_steps": 10, "grad_examples": 32, "total_s": 41.2,
     "sets": {"arith_chain": [{"signal": "sft_energy_90", "lo": 3, "hi": 120, "seconds": 20.1,
                              "definition": "...", "detail": {...}}, ...]}}

``lo`` and ``hi`` are ranks (``lo <= hi``); ``detail`` holds the numbers behind them (e.g. the
per-module values' quantiles) and may grow without a version change.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rankscope.atomic import atomic_write_bytes

PREDICTION_FILE = "prediction.json"
VERSION = 1


@dataclass(frozen=True)
class SignalInterval:
    """One signal's predicted rank interval for one training set."""

    signal: str
    lo: int
    hi: int
    seconds: float
    definition: str
    detail: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lo > self.hi:
            raise ValueError(f"{self.signal}: interval [{self.lo}, {self.hi}] has lo > hi")

    @property
    def line(self) -> str:
        return f"{self.signal}: rank [{self.lo}, {self.hi}] ({self.seconds:.1f} s)"


@dataclass
class Prediction:
    """Every training set's signals (``sets``: train set name -> signals, in print order)."""

    model: str
    probe_steps: int
    grad_examples: int
    sets: dict[str, list[SignalInterval]] = field(default_factory=dict)
    total_s: float = 0.0

    def lines(self) -> list[str]:
        """``<set> <signal>: rank [lo, hi] (T s)``, one per set and signal."""
        return [f"{name} {s.line}" for name, signals in self.sets.items() for s in signals]

    def to_json(self) -> dict:
        return {"version": VERSION, "model": self.model, "probe_steps": self.probe_steps,
                "grad_examples": self.grad_examples, "total_s": round(self.total_s, 2),
                "sets": {name: [asdict(s) for s in signals] for name, signals in self.sets.items()}}


def write_prediction(run_dir: Path, prediction: Prediction) -> Path:
    path = Path(run_dir) / PREDICTION_FILE
    atomic_write_bytes(path, (json.dumps(prediction.to_json(), indent=1) + "\n").encode("utf-8"))
    return path


def read_prediction(run_dir: Path, notes: list[str] | None = None) -> Prediction | None:
    """The run's prediction, or None when there is none; an unreadable file becomes a note."""
    path = Path(run_dir) / PREDICTION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        sets = {str(name): [SignalInterval(str(s["signal"]), int(s["lo"]), int(s["hi"]), float(s["seconds"]),
                                           str(s.get("definition", "")), dict(s.get("detail") or {}))
                            for s in signals]
                for name, signals in data["sets"].items()}
        return Prediction(str(data.get("model", "")), int(data.get("probe_steps", 0)),
                          int(data.get("grad_examples", 0)), sets, float(data.get("total_s", 0.0)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        if notes is not None:
            notes.append(f"{path}: unreadable ({exc}); the predicted-vs-realised table is left out")
        return None


__all__ = ["PREDICTION_FILE", "Prediction", "SignalInterval", "read_prediction", "write_prediction"]
