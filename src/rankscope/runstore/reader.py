"""Read a run directory (the store) into typed, torch-free records.

The report reads *only* the store (docs/run-store.md) so a copied run directory can be reported
on a laptop without torch. Reading is tolerant on purpose: a sweep that was interrupted, an arm
that failed, or an analysis step that was switched off still yields a report, and every problem
met while reading becomes a plain-language note instead of a traceback. Only a directory with no
results at all is an error (there is nothing to report).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rankscope.errors import RankscopeError
from rankscope.verdicts.comparisons import Comparison
from rankscope.verdicts.learning_rates import FINAL, RateSummary, rate_summary
from rankscope.verdicts.recommend import Recommendation, recommend_all
from rankscope.verdicts.run_dir import finished_arms, run_comparisons
from rankscope.verdicts.settings import RuleSettings, rule_settings

RESULT_COLUMNS = ("arm_id", "method", "dataset", "metric", "value")


@dataclass(frozen=True)
class ResultRow:
    """One tidy row of results.csv (one arm x dataset x metric)."""

    arm_id: str
    method: str
    rank: int | None
    alpha: float | None
    seed: int | None
    train_set: str | None
    dataset: str
    kind: str
    domain: str
    format: str
    metric: str
    value: float | None
    n: int | None
    stderr: float | None
    status: str
    relation: str = ""  # in | near | far ("" in runs written before the column existed)
    primary: bool | None = None  # this metric drives gain/forgetting on the set (None: not recorded)
    lr: float | None = None  # the arm's learning rate (None in runs written before the column existed)
    source: str = "rankscope"  # rankscope | imported (arms trained elsewhere; "" column in older runs)


@dataclass(frozen=True)
class TrainInfo:
    """train.json: what an arm cost and how its loss went."""

    trainable_params: int | None = None
    total_params: int | None = None
    steps: int | None = None
    wall_time_s: float | None = None
    tokens_per_s: float | None = None
    peak_memory_mb: float | None = None  # the process's peak (train.json peak_memory_total_mb)
    final_loss: float | None = None
    loss_curve: tuple[tuple[float, float], ...] = ()
    peak_memory_arm_mb: float | None = None  # the arm's own: resident base excluded
    precision: str | None = None  # the precision recipe (rankscope.train.precision)


@dataclass(frozen=True)
class ArmInfo:
    """arm.json (or, when it is missing, what results.csv says about the arm)."""

    arm_id: str
    method: str
    rank: int | None = None
    alpha: float | None = None
    seed: int | None = None
    train_set: str | None = None
    targets: str | None = None
    lr: float | None = None
    status: str = "done"
    error: str | None = None
    train: TrainInfo | None = None  # None for base and imported arms (nothing trained here)
    source: str = "rankscope"  # rankscope | imported (arms.imported: trained elsewhere)
    name: str | None = None  # an imported arm's name
    path: str | None = None  # an imported arm's adapter or checkpoint folder
    stage: str = FINAL  # final | candidate | selected (rankscope.verdicts.learning_rates)

    @property
    def imported(self) -> str | None:
        """The imported arm's name, None for arms rankscope trained."""
        return (self.name or self.arm_id) if self.source == "imported" else None


@dataclass(frozen=True)
class AnalysisRow:
    """One row of an analysis CSV; ``module`` (spectral) and ``head`` (attention) when present."""

    arm_id: str
    layer: str
    metric: str
    value: float
    module: str | None = None
    head: int | None = None


@dataclass
class RunStore:
    """Everything the report needs from one run directory."""

    path: Path
    name: str
    config: dict[str, Any] | None
    config_text: str | None
    results: list[ResultRow]
    arms: dict[str, ArmInfo]
    spectral: list[AnalysisRow] = field(default_factory=list)
    representation: list[AnalysisRow] = field(default_factory=list)
    attention: list[AnalysisRow] = field(default_factory=list)
    singular_values: dict[str, np.ndarray] = field(default_factory=dict)
    attention_maps: dict[str, np.ndarray] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)  # paired, from the item files
    recommendations: list[Recommendation] = field(default_factory=list)
    rule: RuleSettings = field(default_factory=RuleSettings)
    rates: RateSummary = field(default_factory=RateSummary)  # learning-rate selection (grid runs)

    def failed_arms(self) -> list[ArmInfo]:
        """Arms whose arm.json or results.csv says they failed, in arm id order."""
        return [a for _, a in sorted(self.arms.items()) if a.status == "failed"]


def _opt(text: str | None) -> str | None:
    text = (text or "").strip()
    return text or None


def _num(text: Any, kind: type = float) -> Any:
    """Parse an optional number; '' and None mean missing, NaN counts as missing too."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    value = float(text)
    if math.isnan(value):
        return None
    return int(value) if kind is int else value


def _read_json(path: Path, notes: list[str]) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        notes.append(f"{path}: unreadable JSON ({exc}); ignored")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path}: expected a JSON object; ignored")
        return None
    return data


def read_results(path: Path, notes: list[str]) -> list[ResultRow]:
    """Parse results.csv; a malformed row becomes a note, a missing column an error."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in RESULT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise RankscopeError(
                str(path), f"missing column(s) {', '.join(missing)}",
                "rebuild results.csv with the current rankscope (`rankscope run` resumes)",
            )
        rows: list[ResultRow] = []
        for line, raw in enumerate(reader, start=2):
            try:
                rows.append(ResultRow(
                    arm_id=raw["arm_id"].strip(), method=(raw.get("method") or "").strip(),
                    rank=_num(raw.get("rank"), int), alpha=_num(raw.get("alpha")),
                    seed=_num(raw.get("seed"), int), train_set=_opt(raw.get("train_set")),
                    dataset=(raw.get("dataset") or "").strip(), kind=(raw.get("kind") or "").strip(),
                    domain=(raw.get("domain") or "").strip(), format=(raw.get("format") or "").strip(),
                    metric=(raw.get("metric") or "").strip(), value=_num(raw.get("value")),
                    n=_num(raw.get("n"), int), stderr=_num(raw.get("stderr")),
                    status=(raw.get("status") or "").strip(), relation=(raw.get("relation") or "").strip(),
                    primary=None if not (raw.get("primary") or "").strip() else raw["primary"].strip() in ("1", "true", "True"),
                    lr=_num(raw.get("lr")),
                    source=(raw.get("source") or "").strip() or "rankscope",
                ))
            except (ValueError, TypeError, AttributeError) as exc:
                notes.append(f"{path}:{line}: malformed row skipped ({exc})")
    return rows


def _results_from_arms(arms_dir: Path, arms: dict[str, ArmInfo], notes: list[str]) -> list[ResultRow]:
    """Rebuild tidy rows from arms/*/eval.json when results.csv is missing (an interrupted sweep)."""
    rows: list[ResultRow] = []
    for arm_id, arm in sorted(arms.items()):
        if arm.status == "failed":
            rows.append(ResultRow(arm_id, arm.method, arm.rank, arm.alpha, arm.seed, arm.train_set,
                                  "", "", "", "", "failed", None, None, None, arm.error or "failed"))
            continue
        data = _read_json(arms_dir / arm_id / "eval.json", notes) or {}
        for name, spec in (data.get("datasets") or {}).items():
            for metric, m in (spec.get("metrics") or {}).items():
                rows.append(ResultRow(
                    arm_id, arm.method, arm.rank, arm.alpha, arm.seed, arm.train_set, str(name),
                    str(spec.get("kind", "")), str(spec.get("domain", "")), str(spec.get("format", "")),
                    str(metric), _num(m.get("value")), _num(m.get("n"), int), _num(m.get("stderr")), "done",
                ))
    return rows


def _train_info(data: dict[str, Any] | None) -> TrainInfo | None:
    if data is None:
        return None
    curve = tuple((float(s), float(v)) for s, v in (data.get("loss_curve") or []) if v is not None)
    return TrainInfo(
        trainable_params=_num(data.get("trainable_params"), int), total_params=_num(data.get("total_params"), int),
        steps=_num(data.get("steps"), int), wall_time_s=_num(data.get("wall_time_s")),
        tokens_per_s=_num(data.get("tokens_per_s")),
        peak_memory_mb=_num(data.get("peak_memory_total_mb", data.get("peak_memory_mb"))),
        final_loss=_num(data.get("final_loss")), loss_curve=curve,
        peak_memory_arm_mb=_num(data.get("peak_memory_arm_mb")),
        precision=str((data.get("precision") or {}).get("recipe")) if isinstance(data.get("precision"), dict) else None,
    )


def _read_arms(arms_dir: Path, notes: list[str]) -> dict[str, ArmInfo]:
    arms: dict[str, ArmInfo] = {}
    if not arms_dir.is_dir():
        return arms
    for arm_dir in sorted(p for p in arms_dir.iterdir() if p.is_dir()):
        data = _read_json(arm_dir / "arm.json", notes)
        if data is None:
            notes.append(f"arm {arm_dir.name}: no arm.json (not finished); left out")
            continue
        try:
            train = _train_info(_read_json(arm_dir / "train.json", notes))
        except (ValueError, TypeError) as exc:
            notes.append(f"{arm_dir / 'train.json'}: malformed ({exc}); costs left out")
            train = None
        arm_id = str(data.get("arm_id") or arm_dir.name)
        arms[arm_id] = ArmInfo(
            arm_id=arm_id, method=str(data.get("method") or "unknown"), rank=_num(data.get("rank"), int),
            alpha=_num(data.get("alpha")), seed=_num(data.get("seed"), int), train_set=_opt(data.get("train_set")),
            targets=None if data.get("targets") is None else str(data.get("targets")),
            lr=_num(data.get("lr")), status=str(data.get("status") or "unknown"),
            error=None if data.get("error") is None else str(data.get("error")), train=train,
            stage=str(data.get("stage") or FINAL),
            source=str(data.get("source") or "rankscope"), name=_opt(data.get("name")), path=_opt(data.get("path")),
        )
        if arms[arm_id].status not in ("done", "failed"):
            notes.append(f"arm {arm_id}: status {arms[arm_id].status!r} (not finished)")
    return arms


def _merge_arms_from_results(arms: dict[str, ArmInfo], results: list[ResultRow]) -> None:
    """Arms known only from results.csv (arm dirs not copied) still get a record; failures too."""
    for row in results:
        known = arms.get(row.arm_id)
        if row.metric == "failed":
            error = row.status or (known.error if known else None) or "failed (no message)"
            base = known or ArmInfo(row.arm_id, row.method, row.rank, row.alpha, row.seed, row.train_set)
            arms[row.arm_id] = dataclasses.replace(base, status="failed", error=error)
        elif known is None:
            arms[row.arm_id] = ArmInfo(row.arm_id, row.method, row.rank, row.alpha, row.seed,
                                       row.train_set if row.method != "base" else None)


def _read_analysis(path: Path, extra: str | None, notes: list[str]) -> list[AnalysisRow]:
    if not path.exists():
        return []
    rows: list[AnalysisRow] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, raw in enumerate(csv.DictReader(handle), start=2):
            try:
                value = _num(raw.get("value"))
                if value is None:
                    continue
                rows.append(AnalysisRow(
                    arm_id=raw["arm_id"].strip(), layer=str(raw.get("layer", "")).strip(),
                    metric=raw["metric"].strip(), value=value,
                    module=_opt(raw.get("module")) if extra == "module" else None,
                    head=_num(raw.get("head"), int) if extra == "head" else None,
                ))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                notes.append(f"{path}:{line}: malformed row skipped ({exc})")
    return rows


def _read_tensors(path: Path, notes: list[str]) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    try:
        from safetensors.numpy import load_file  # numpy flavour: no torch needed

        return {k: np.asarray(v, dtype=np.float64) for k, v in load_file(str(path)).items()}
    except Exception as exc:  # a truncated file must not cost the whole report
        notes.append(f"{path}: unreadable ({exc}); figures from it are skipped")
        return {}


def _read_config(path: Path, notes: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None, None
    try:
        import yaml

        data = yaml.safe_load(text)
    except Exception as exc:
        notes.append(f"{path}: unreadable YAML ({exc}); shown as text")
        return None, text
    return (data if isinstance(data, dict) else None), text


def load_run(run_dir: Path | str) -> RunStore:
    """Read one run directory; raise RankscopeError only when there is nothing to report."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RankscopeError(str(path), "is not a directory", "pass the RUN_DIR that `rankscope run` wrote")
    notes: list[str] = []
    config, config_text = _read_config(path / "config.yaml", notes)
    arms = _read_arms(path / "arms", notes)
    if (path / "results.csv").exists():
        results = read_results(path / "results.csv", notes)
    elif arms:
        notes.append("results.csv missing; rebuilt from arms/*/eval.json")
        results = _results_from_arms(path / "arms", arms, notes)
    else:
        raise RankscopeError(str(path), "has no results.csv and no arms/",
                             "run `rankscope run CONFIG.yaml` first, or point at a finished run directory")
    _merge_arms_from_results(arms, results)
    analysis = path / "analysis"
    name = str((config or {}).get("name") or path.name)
    store = RunStore(
        path=path, name=name, config=config, config_text=config_text, results=results, arms=arms,
        spectral=_read_analysis(analysis / "spectral.csv", "module", notes),
        representation=_read_analysis(analysis / "representation.csv", None, notes),
        attention=_read_analysis(analysis / "attention.csv", "head", notes),
        singular_values=_read_tensors(analysis / "singular_values.safetensors", notes),
        attention_maps=_read_tensors(analysis / "attention_maps.safetensors", notes),
        notes=notes,
    )
    _attach_verdicts(store)
    return store


def _attach_verdicts(store: RunStore) -> None:
    """Paired comparisons and recommendations from the item files (rankscope.verdicts); a run
    without item files (written before they existed) gets a note and undecided recommendations."""
    store.rule = rule_settings(store.path)
    try:
        store.comparisons = run_comparisons(store.path, store.rule)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        store.notes.append(f"paired comparisons could not be built from the item files ({exc})")
        store.comparisons = []
    if not store.comparisons and any(a.method != "base" and a.status == "done" for a in store.arms.values()):
        store.notes.append("no per-item records (arms/*/items/): intervals are unpaired and no rank is recommended; "
                           "rerun `rankscope run` on this run's config to score the items")
    store.rates = rate_summary(store.path)
    store.recommendations = [dataclasses.replace(r, warnings=tuple(store.rates.warnings(r.train_set)))
                             for r in recommend_all(store.comparisons, finished_arms(store.path), store.rule)]
