"""The sweep driver: plan arms, skip the finished ones, run the rest, write the store.

A failing arm (NaN loss, out of memory, bad data) is recorded as failed with its reason and the
sweep goes on; an interrupted arm leaves no ``arm.json`` and is redone on the next run.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rankscope.runstore.analysis_files import remove_arm_analysis, write_arm_analysis
from rankscope.atomic import atomic_write_bytes
from rankscope.config import RankscopeConfig, dump_config
from rankscope.data.types import TaskInfo
from rankscope.errors import RankscopeError
from rankscope.models.load import resolve_model_source
from rankscope.sweep.executors import ArmResult, make_executor
from rankscope.sweep.context import SweepContext, evaluation_targets, load_sweep_data
from rankscope.runstore.arms import ArmPlan
from rankscope.sweep.plan import evaluation_fingerprint, plan_arms
from rankscope.runstore.writer import RunWriter
from rankscope.verdicts.learning_rates import candidate_from_files, read_arm_files, select_rates
from rankscope.verdicts.run_dir import write_verdicts

log = logging.getLogger(__name__)


@dataclass
class SweepOutcome:
    run_dir: Path
    arms: list[ArmPlan]
    ran: list[str]
    skipped: list[str]
    failed: dict[str, str]
    results_csv: Path
    wall_time_s: float


def record_arm(store: RunWriter, run_dir: Path, result: ArmResult, fingerprint: str) -> None:
    """The driver's write of a finished arm; ``arm.json`` last, so a crash leaves it unfinished."""
    arm, output = result.arm, result.output
    if arm.stage == "selected":  # evaluated from its candidate's folder: keep the validation scores
        previous = store.arm_dir(arm.arm_id) / "eval.json"
        if previous.is_file() and "validation" not in output.evaluation:
            output.evaluation["validation"] = json.loads(previous.read_text()).get("validation")
    if result.files or result.staged:  # from a remote worker
        folder = store.arm_dir(arm.arm_id) if arm.stage == "selected" else store.start_arm(arm)
        folder.mkdir(parents=True, exist_ok=True)
        for relative in [*result.files, *result.staged]:
            target = (folder / relative).resolve()
            if not target.is_relative_to(folder):
                raise RankscopeError(f"arm {arm.arm_id}", f"worker file {relative!r} escapes the arm folder")
            if relative in result.files:
                atomic_write_bytes(target, result.files[relative])
            else:  # large weights the worker wrote to the staging folder
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(result.staged[relative], target)
                try:
                    Path(result.staged[relative]).parent.rmdir()  # the arm's staging folder, now empty
                except OSError:
                    pass
    if output.training is not None:
        store.write_json(arm.arm_id, "train.json", output.training)
    store.write_json(arm.arm_id, "eval.json", output.evaluation)
    for dataset, rows in output.items.items():
        store.write_items(arm.arm_id, dataset, rows)
    if output.analysis is not None:
        write_arm_analysis(run_dir, output.analysis)
    store.finish_arm(arm, fingerprint)


def run_sweep(config: RankscopeConfig, run_dir: Path, announce=print) -> SweepOutcome:
    """Plan, run the pending arms, then (with a learning-rate grid) select each arm group's rate on
    the validation split and evaluate the selected candidates; write results and verdicts."""
    started = time.perf_counter()
    store = RunWriter(run_dir)
    store.write_config(dump_config(config))
    arms = plan_arms(config)
    fingerprint = evaluation_fingerprint(config)
    pending = [arm for arm in arms if not store.is_done(arm.arm_id, fingerprint)]
    skipped = [arm.arm_id for arm in arms if arm not in pending]
    if any(arm.imported for arm in pending):  # adapters/checkpoints that do not fit the base: before any arm
        from rankscope.models.resolve import meta_model
        from rankscope.sweep.imported import check_imported

        check_imported(config, meta_model(config.model))
    if skipped:
        announce(f"resuming: {len(skipped)} finished arm(s) kept, {len(pending)} to run")
    context = SweepContext(config)
    failed: dict[str, str] = {}
    ran: list[str] = []
    if pending:
        _prepare(config, context, pending)
    executor = make_executor(config, context, store)
    _run_arms(executor, pending, store, run_dir, fingerprint, announce, failed, ran)
    promoted = promotions(config, store, arms, fingerprint)
    waiting = [arm for arm in promoted if not store.is_promoted(arm.arm_id, fingerprint)]
    if waiting:
        announce(f"learning rates selected on the validation split: evaluating {len(waiting)} selected arm(s)")
        if not pending:
            _prepare(config, context, waiting)
        _run_arms(executor, waiting, store, run_dir, fingerprint, announce, failed, ran)
    touched = pending or waiting
    rows = store.result_rows(arms, context.data.targets if touched else _targets_from_store(store, config, arms))
    results_csv = store.write_results(rows)
    write_verdicts(run_dir)  # comparisons.csv and recommendation.json from the item files
    return SweepOutcome(run_dir=run_dir, arms=arms, ran=ran, skipped=skipped, failed=failed,
                        results_csv=results_csv, wall_time_s=round(time.perf_counter() - started, 2))


def _prepare(config: RankscopeConfig, context: SweepContext, arms: list[ArmPlan]) -> None:
    """Data and model problems stop the sweep before any arm starts: they would fail every arm."""
    _ = context.data
    if config.sweep.executor == "local":
        # Every arm must fit this device (rankscope.plan), or the sweep does not start. Ray
        # workers make the same check on their own device when their arm begins.
        from rankscope.plan import preflight

        context.plan.update({e.arm_id: e for e in preflight(config, arms)})
        _ = context.base
    else:
        resolve_model_source(config.model)


def _run_arms(executor, arms: list[ArmPlan], store: RunWriter, run_dir: Path, fingerprint: str, announce,
              failed: dict[str, str], ran: list[str]) -> None:
    for position, result in enumerate(executor.run(arms), start=1):
        arm = result.arm
        remove_arm_analysis(run_dir, arm.arm_id)  # rows of an earlier attempt, whatever this one gives
        if result.error is not None:
            announce(f"[{position}/{len(arms)}] {arm.arm_id} failed: {result.error}")
            failed[arm.arm_id] = result.error
            store.finish_arm(arm, fingerprint, status="failed", error=result.error)
            continue
        record_arm(store, run_dir, result, fingerprint)
        what = {"candidate": " (validation scored)", "selected": " (selected rate evaluated)"}.get(arm.stage, "")
        announce(f"[{position}/{len(arms)}] {arm.arm_id} done{what}")
        ran.append(arm.arm_id)


def promotions(config: RankscopeConfig, store: RunWriter, arms: list[ArmPlan], fingerprint: str) -> list[ArmPlan]:
    """The candidates of each grid group at its selected rate (every seed), as ``selected`` arms.

    A candidate selected by an earlier run of this directory but not now (a seed or a rate was
    added since) is demoted to its validation scores first.
    """
    candidates = [arm for arm in arms if arm.stage == "candidate"]
    if not candidates:
        return []
    records, scores = [], []
    for arm in candidates:
        record, evaluation = read_arm_files(store.arm_dir(arm.arm_id))
        records.append(record or {})
        # the plan's settings, the store's status
        scores.append(candidate_from_files({**arm.to_json(), "status": records[-1].get("status")}, evaluation))
    choices = select_rates(scores, config.train.select_by)
    chosen = {(c.train_set, c.method, c.rank, c.alpha): c.selected for c in choices}
    selected = []
    for arm, record in zip(candidates, records):
        if chosen.get((arm.train_set, arm.method, arm.rank, arm.alpha)) == arm.lr:
            selected.append(dataclasses.replace(arm, stage="selected"))
        elif record.get("stage") == "selected" and record.get("status") == "done":
            store.demote_arm(arm, fingerprint)
    return selected


def _targets_from_store(store: RunWriter, config: RankscopeConfig, arms: list[ArmPlan]):
    """When nothing ran, rebuild each training set's targets from the base arm's stored evaluation
    (no dataset is loaded and no model touched: a finished rerun is instant)."""
    base = arms[0]
    path = store.arm_dir(base.arm_id) / "eval.json"
    if base.method != "base" or not path.is_file():
        return load_sweep_data(config).targets
    stored = json.loads(path.read_text())["datasets"]
    infos = {name: TaskInfo(name=name, kind=scores["kind"], format=scores["format"]) for name, scores in stored.items()}
    auto = {name: scores.get("primary_metric", "accuracy") for name, scores in stored.items()}
    return evaluation_targets(config, infos, auto)
