"""The sweep driver: plan arms, skip the finished ones, run the rest, write the store.

A failing arm (NaN loss, out of memory, bad data) is recorded as failed with its reason and the
sweep goes on; an interrupted arm leaves no ``arm.json`` and is redone on the next run.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from rankscope.analysis.store import remove_arm_analysis, write_arm_analysis
from rankscope.config import RankscopeConfig, dump_config
from rankscope.errors import RankscopeError
from rankscope.sweep.arm import ArmRunner
from rankscope.data.types import TaskInfo
from rankscope.sweep.context import SweepContext, evaluation_targets, load_sweep_data
from rankscope.sweep.plan import ArmPlan, evaluation_fingerprint, plan_arms
from rankscope.sweep.store import RunStore
from rankscope.train.loop import TrainingDiverged

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


def describe_failure(error: BaseException) -> str:
    """One line a user can act on."""
    if isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower():
        return "out of memory; lower train.batch_size or train.max_length, or use a smaller rank"
    if isinstance(error, (RankscopeError, TrainingDiverged)):
        return str(error)
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}"[:500]


def run_sweep(config: RankscopeConfig, run_dir: Path, announce=print) -> SweepOutcome:
    started = time.perf_counter()
    store = RunStore(run_dir)
    store.write_config(dump_config(config))
    arms = plan_arms(config)
    fingerprint = evaluation_fingerprint(config)
    pending = [arm for arm in arms if not store.is_done(arm.arm_id, fingerprint)]
    skipped = [arm.arm_id for arm in arms if arm not in pending]
    if skipped:
        announce(f"resuming: {len(skipped)} finished arm(s) kept, {len(pending)} to run")
    context = SweepContext(config)
    runner = ArmRunner(context)
    failed: dict[str, str] = {}
    ran: list[str] = []
    if pending:
        # Data or model problems stop the sweep before any arm starts: they would fail every arm.
        _ = context.data
        _ = context.base
    for position, arm in enumerate(pending, start=1):
        announce(f"[{position}/{len(pending)}] {arm.arm_id}")
        arm_dir = store.start_arm(arm)
        remove_arm_analysis(run_dir, arm.arm_id)
        try:
            output = runner.run(arm, arm_dir)
        except KeyboardInterrupt:
            raise
        except Exception as error:  # the arm fails, the sweep goes on
            reason = describe_failure(error)
            log.debug("arm %s failed:\n%s", arm.arm_id, traceback.format_exc())
            announce(f"  arm {arm.arm_id} failed: {reason}")
            failed[arm.arm_id] = reason
            store.finish_arm(arm, fingerprint, status="failed", error=reason)
            continue
        if output.training is not None:
            store.write_json(arm.arm_id, "train.json", output.training)
        store.write_json(arm.arm_id, "eval.json", output.evaluation)
        if output.analysis is not None:
            write_arm_analysis(run_dir, output.analysis)
        store.finish_arm(arm, fingerprint)
        ran.append(arm.arm_id)
    rows = store.result_rows(arms, context.data.targets if pending else _targets_from_store(store, config, arms))
    results_csv = store.write_results(rows)
    return SweepOutcome(run_dir=run_dir, arms=arms, ran=ran, skipped=skipped, failed=failed,
                        results_csv=results_csv, wall_time_s=round(time.perf_counter() - started, 2))


def _targets_from_store(store: RunStore, config: RankscopeConfig, arms: list[ArmPlan]):
    """When nothing ran, rebuild each training set's targets from the base arm's stored evaluation
    (no dataset is loaded and no model touched: a finished rerun is instant)."""
    base = arms[0]
    path = store.arm_dir(base.arm_id) / "eval.json"
    if base.method != "base" or not path.is_file():
        return load_sweep_data(config).targets
    stored = json.loads(path.read_text())["datasets"]
    infos = {name: TaskInfo(name=name, kind=scores["kind"], format=scores["format"]) for name, scores in stored.items()}
    return evaluation_targets(config, infos)
