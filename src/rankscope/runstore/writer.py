"""The run directory: the only place results live (layout in docs/run-store.md).

Only the driver process writes here. An arm is finished when its ``arm.json`` says done and its
evaluation fingerprint matches the current config; everything else is redone on a rerun.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from rankscope.errors import RankscopeError
from rankscope.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text
from rankscope.runstore.arms import ArmPlan
from rankscope.verdicts.comparisons import csv_cell
from rankscope.verdicts.items import ITEMS_DIR, encode_items, items_path
from rankscope.stats.summary import nll_delta

RESULT_COLUMNS = ["arm_id", "method", "rank", "alpha", "lr", "seed", "train_set", "dataset", "kind", "domain",
                  "relation", "format", "metric", "value", "n", "stderr", "primary", "status", "source"]


@dataclass(frozen=True)
class EvalTarget:
    """One dataset an arm is scored on, with its domain and relation to the arm's training set and
    the metric that drives decisions on it (DatasetSpec.primary_metric, ``auto`` resolved)."""

    dataset: str
    kind: str
    format: str
    domain: str  # in | out
    relation: str = "far"  # in | near | far
    primary_metric: str = "accuracy"


class RunWriter:
    """The sweep driver's side of the run directory: the only writer (runstore.reader reads it)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # -- paths ---------------------------------------------------------------------------------
    def arm_dir(self, arm_id: str) -> Path:
        """Arm ids come from the planner, but a crafted id must still never escape the run directory."""
        if not arm_id or "/" in arm_id or "\\" in arm_id or arm_id in {".", ".."} or arm_id.startswith("."):
            raise RankscopeError(f"arm id {arm_id!r}", "not a safe folder name", "use letters, digits, '-', '_', '.'")
        path = (self.root / "arms" / arm_id).resolve()
        if self.root.resolve() / "arms" not in path.parents:
            raise RankscopeError(f"arm id {arm_id!r}", "escapes the run directory", "use a plain name")
        return path

    @property
    def analysis_dir(self) -> Path:
        return self.root / "analysis"

    # -- status --------------------------------------------------------------------------------
    def read_arm(self, arm_id: str) -> dict | None:
        path = self.arm_dir(arm_id) / "arm.json"
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def is_done(self, arm_id: str, fingerprint: str) -> bool:
        record = self.read_arm(arm_id)
        folder = self.arm_dir(arm_id)
        # An arm finished by a rankscope that kept no per-item records is redone to get them (a
        # grid candidate has none: it is scored on the validation split only).
        return bool(record) and record.get("status") == "done" and record.get("eval_fingerprint") == fingerprint \
            and (folder / "eval.json").is_file() \
            and ((folder / ITEMS_DIR).is_dir() or record.get("stage") == "candidate")

    def is_promoted(self, arm_id: str, fingerprint: str) -> bool:
        """A selected grid candidate already evaluated on every set with this fingerprint."""
        record = self.read_arm(arm_id)
        return self.is_done(arm_id, fingerprint) and bool(record) and record.get("stage") == "selected"

    def demote_arm(self, arm: ArmPlan, fingerprint: str) -> None:
        """A candidate selected by an earlier run but not by this one (a seed or rate was added):
        back to its validation scores only, so no stale test score enters the verdicts."""
        folder = self.arm_dir(arm.arm_id)
        payload = json.loads((folder / "eval.json").read_text())
        self.write_json(arm.arm_id, "eval.json", {"datasets": {}, "validation": payload.get("validation")})
        shutil.rmtree(folder / ITEMS_DIR, ignore_errors=True)
        self.finish_arm(arm, fingerprint)

    # -- writes --------------------------------------------------------------------------------
    def write_config(self, text: str) -> None:
        atomic_write_text(self.root / "config.yaml", text)

    def start_arm(self, arm: ArmPlan) -> Path:
        """A fresh folder for an arm that is (re)run: leftovers of an interrupted attempt go."""
        path = self.arm_dir(arm.arm_id)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        return path

    def write_json(self, arm_id: str, name: str, payload: object) -> None:
        atomic_write_json(self.arm_dir(arm_id) / name, payload)

    def write_items(self, arm_id: str, dataset: str, rows: list[dict]) -> None:
        """``items/<dataset>.jsonl.gz``: one line per scored question (rankscope.verdicts.items)."""
        atomic_write_bytes(items_path(self.arm_dir(arm_id), dataset), encode_items(rows))

    def finish_arm(self, arm: ArmPlan, fingerprint: str, status: str = "done", error: str | None = None) -> None:
        """Written last: it is what makes the arm count as finished."""
        self.arm_dir(arm.arm_id).mkdir(parents=True, exist_ok=True)
        self.write_json(arm.arm_id, "arm.json",
                        {**arm.to_json(), "status": status, "error": error, "eval_fingerprint": fingerprint})

    # -- results -------------------------------------------------------------------------------
    def result_rows(self, arms: list[ArmPlan], targets_by_train_set: dict[str, list[EvalTarget]]) -> list[dict]:
        """Tidy rows in plan order. The base arm is repeated once per training set with domains
        relative to that set, so gain/forgetting are subtractions within one train_set."""
        rows: list[dict] = []
        base_nll = self._base_nll(arms)
        for arm in arms:
            record = self.read_arm(arm.arm_id)
            if record is None:
                continue
            train_sets = list(targets_by_train_set) if arm.method == "base" else [arm.train_set]
            common = {"arm_id": arm.arm_id, "method": arm.method, "rank": arm.rank, "alpha": arm.alpha,
                      "lr": arm.lr, "seed": arm.seed, "source": arm.source}
            if record.get("status") != "done":
                for train_set in train_sets:
                    rows.append({**common, "train_set": train_set, "metric": "failed",
                                 "status": f"failed: {record.get('error')}"})
                continue
            payload = json.loads((self.arm_dir(arm.arm_id) / "eval.json").read_text())
            evaluation = payload["datasets"]
            for train_set in train_sets:
                rows += validation_rows(common, train_set, payload.get("validation"))
                rows += nll_rows(common, train_set, payload.get("nll"), base_nll)
                for target in targets_by_train_set[train_set]:
                    scores = evaluation.get(target.dataset)
                    if scores is None:
                        continue
                    for metric, value in scores["metrics"].items():
                        rows.append({**common, "train_set": train_set, "dataset": target.dataset,
                                     "kind": target.kind, "domain": target.domain, "relation": target.relation,
                                     "format": target.format, "metric": metric, "value": value["value"],
                                     "n": value["n"], "stderr": value["stderr"],
                                     "primary": int(metric == target.primary_metric), "status": "done"})
        return rows

    def _base_nll(self, arms: list[ArmPlan]) -> dict | None:
        """The base arm's generic-text NLL entry (what every arm's nll_delta subtracts)."""
        for arm in arms:
            path = self.arm_dir(arm.arm_id) / "eval.json"
            if arm.method == "base" and path.is_file():
                return json.loads(path.read_text()).get("nll")
        return None

    def write_results(self, rows: list[dict]) -> Path:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: csv_cell(row.get(column)) for column in RESULT_COLUMNS})
        path = self.root / "results.csv"
        atomic_write_text(path, buffer.getvalue())
        return path


GENERIC_TEXT = "generic_text"  # the dataset column of nll / nll_delta rows


def validation_rows(common: dict, train_set: str, validation: dict | None) -> list[dict]:
    """``val_accuracy`` and ``val_loss`` of a grid candidate on its training set's validation split
    (never ``accuracy``: these rows pick the learning rate and do not enter gain or forgetting)."""
    if not validation:
        return []
    place = {**common, "train_set": train_set, "dataset": validation["dataset"], "kind": validation.get("kind"),
             "domain": "in", "relation": "in", "format": validation.get("format"), "primary": 0,
             "status": "done"}
    return [{**place, "metric": metric, "value": value["value"], "n": value["n"], "stderr": value["stderr"]}
            for metric, value in validation["metrics"].items()]


def nll_rows(common: dict, train_set: str, nll: dict | None, base_nll: dict | None) -> list[dict]:
    """``nll`` (mean per-token NLL of the generic text, n = tokens) and ``nll_delta`` (arm minus base;
    the base arm's row reads 0) for one arm; none when the arm has no NLL entry."""
    if not nll:
        return []
    place = {**common, "train_set": train_set, "dataset": GENERIC_TEXT, "kind": "generic", "domain": "out",
             "format": "text", "status": "done"}
    metric = nll["metric"]
    rows = [{**place, "metric": "nll", "value": metric["value"], "n": metric["n"], "stderr": metric["stderr"]}]
    delta = nll_delta(nll, base_nll) if base_nll else None
    if delta is not None:
        rows.append({**place, "metric": "nll_delta", **delta.to_json()})
    return rows
