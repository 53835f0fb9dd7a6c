"""comparisons.csv from a run directory alone: arm.json files, results.csv and the item files.

Both the sweep (after results.csv) and ``rankscope report`` (so an old or copied run gets it too)
call :func:`write_comparisons`; the report's rebuild is the one a reader sees last. Reads only
the store (docs/run-store.md): no torch, no model.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from rankscope.atomic import atomic_write_json, atomic_write_text
from rankscope.verdicts.comparisons import (ArmRef, Comparison, TargetRef, build_comparisons,
                                            comparisons_csv)
from rankscope.verdicts.items import find_items, read_items
from rankscope.verdicts.learning_rates import CANDIDATE, rate_summary
from rankscope.verdicts.recommend import recommend_all
from rankscope.verdicts.settings import RuleSettings, rule_settings

COMPARISONS = "comparisons.csv"


def finished_arms(run_dir: Path) -> list[ArmRef]:
    arms = []
    for path in sorted((Path(run_dir) / "arms").glob("*/arm.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("status") != "done" or data.get("stage") == CANDIDATE:  # a candidate is scored on validation only
            continue
        arms.append(ArmRef(arm_id=str(data.get("arm_id") or path.parent.name), method=str(data.get("method")),
                           rank=data.get("rank"), alpha=data.get("alpha"), lr=data.get("lr"),
                           seed=data.get("seed"), train_set=data.get("train_set"),
                           imported=data.get("name") if data.get("source") == "imported" else None))
    return arms


def targets_from_results(run_dir: Path) -> dict[str, list[TargetRef]]:
    """Per training set, its evaluated sets with relation and primary metric, from results.csv.
    A results.csv without those columns (older runs): in-domain sets are ``in``, sets of an
    in-domain set's kind ``near``, the rest ``far``; the primary metric is accuracy."""
    path = Path(run_dir) / "results.csv"
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        # generic_text rows (nll, nll_delta) are a continuous measure with no item files: not compared here
        rows = [r for r in csv.DictReader(handle)
                if r.get("train_set") and r.get("dataset") and r.get("kind") != "generic"]
    targets: dict[str, dict[str, TargetRef]] = {}
    in_kinds: dict[str, set[str]] = {}
    for r in rows:
        if r.get("domain") == "in":
            in_kinds.setdefault(r["train_set"], set()).add(r.get("kind", ""))
    for r in rows:
        relation = r.get("relation") or ("in" if r.get("domain") == "in" else
                                         "near" if r.get("kind") in in_kinds.get(r["train_set"], set()) else "far")
        current = targets.setdefault(r["train_set"], {}).get(r["dataset"])
        primary = r["metric"] if r.get("primary") in ("1", "True", "true") else None
        if current is None:
            current = TargetRef(r["dataset"], relation, primary or "accuracy")
        elif primary:
            current = TargetRef(current.dataset, current.relation, primary)
        targets[r["train_set"]][r["dataset"]] = current
    return {ts: list(sets.values()) for ts, sets in targets.items()}


def run_comparisons(run_dir: Path, settings: RuleSettings | None = None) -> list[Comparison]:
    run_dir = Path(run_dir)
    settings = settings or rule_settings(run_dir)

    def load(arm_id: str, dataset: str) -> list[dict] | None:
        path = find_items(run_dir / "arms" / arm_id, dataset)
        return read_items(path) if path is not None else None

    return build_comparisons(finished_arms(run_dir), targets_from_results(run_dir), load, settings.stats)


def write_comparisons(run_dir: Path, settings: RuleSettings | None = None) -> list[Comparison]:
    """Rebuild ``RUN/comparisons.csv`` from the item files; return its rows."""
    rows = run_comparisons(run_dir, settings)
    atomic_write_text(Path(run_dir) / COMPARISONS, comparisons_csv(rows))
    return rows


RECOMMENDATION = "recommendation.json"


def write_verdicts(run_dir: Path, rows: list[Comparison] | None = None) -> tuple[list[Comparison], list]:
    """comparisons.csv and recommendation.json of a run, rebuilt from its item files (or from
    ``rows`` already built from them). recommendation.json is one object for one training set,
    a list of them for several."""
    run_dir = Path(run_dir)
    settings = rule_settings(run_dir)
    if rows is None:
        rows = run_comparisons(run_dir, settings)
    atomic_write_text(run_dir / COMPARISONS, comparisons_csv(rows))
    rates = rate_summary(run_dir)
    recommendations = [dataclasses.replace(r, warnings=tuple(rates.warnings(r.train_set)))
                       for r in recommend_all(rows, finished_arms(run_dir), settings)]
    payload = [r.to_json() for r in recommendations]
    atomic_write_json(run_dir / RECOMMENDATION, payload[0] if len(payload) == 1 else payload)
    return rows, recommendations
