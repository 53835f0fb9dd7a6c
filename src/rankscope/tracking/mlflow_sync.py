"""Log a run directory's snapshot to MLflow: one sweep run with one child run per arm.

The MLflow side of :mod:`rankscope.tracking`: every name here talks to MLflow; what is logged is
read by :mod:`rankscope.tracking.snapshot`. mlflow is imported lazily, so importing this module
costs nothing when tracking is off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator

from rankscope.errors import RankscopeError
from rankscope.tracking.snapshot import (
    ArmRecord,
    StoreSnapshot,
    arm_content_hash,
    arm_metrics,
    arm_params,
    base_accuracy,
    parent_content_hash,
    parent_files,
    read_store,
    sweep_params,
)

INSTALL_FIX = "pip install 'rankscope[mlflow]'"
TAG_ROLE = "rankscope.role"
TAG_FINGERPRINT = "rankscope.fingerprint"
TAG_ARM = "rankscope.arm_id"
TAG_CONTENT = "rankscope.content_hash"
TAG_CONFIG = "rankscope.config_hash"
TAG_RUN_DIR = "rankscope.run_dir"
PARENT_TAG = "mlflow.parentRunId"
MAX_TAG = 4000


def _import_mlflow() -> Any:
    """The mlflow module, or a RankscopeError that says how to install it.

    Telemetry is off unless the user turned it on: rankscope runs offline by default."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient  # noqa: F401
    except ImportError as exc:
        raise RankscopeError("mlflow", f"experiment tracking needs mlflow, which is not installed ({exc})",
                             INSTALL_FIX) from None
    return mlflow


def require_mlflow() -> None:
    """Fail early (before a sweep runs for hours) when tracking is on but mlflow is missing."""
    _import_mlflow()


def default_tracking_uri(run_dir: str | Path) -> str:
    return "sqlite:///" + (Path(run_dir).resolve() / "mlflow.db").as_posix()


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


def _artifact_location(uri: str) -> str | None:
    """For a SQLite store: mlartifacts/ beside the database (MLflow's default is ./mlruns in the cwd)."""
    db = _sqlite_path(uri)
    return (db.resolve().parent / "mlartifacts").as_uri() if db is not None else None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """MLflow and alembic announce database migrations at INFO; keep them for -v only."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, saved):
            lg.setLevel(level)


def _experiment_id(client: Any, name: str, uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=_artifact_location(uri))
    if experiment.lifecycle_stage != "active":
        raise RankscopeError(f"mlflow experiment {name!r}", "was deleted",
                             "restore it (`mlflow experiments restore`) or pass another --experiment")
    return experiment.experiment_id


def _search(client: Any, experiment_id: str, fingerprint: str) -> list[Any]:
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=f"tags.`{TAG_FINGERPRINT}` = '{fingerprint}'",
                                  max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def _log_batch(client: Any, run_id: str, metrics: list[tuple[str, float, int]], params: dict[str, str],
               tags: dict[str, str]) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    entities = [Metric(k, v, now, step) for k, v, step in metrics]
    for start in range(0, len(entities), 1000):  # MLflow's per-call limit
        client.log_batch(run_id, metrics=entities[start:start + 1000])


def _log_arm(client: Any, experiment_id: str, parent_id: str, snapshot: StoreSnapshot, arm: ArmRecord,
             content_hash: str) -> str:
    base = base_accuracy(snapshot, arm.train_set) if arm.method != "base" else {}
    tags = {TAG_ROLE: "arm", TAG_FINGERPRINT: snapshot.fingerprint, TAG_ARM: arm.arm_id,
            TAG_RUN_DIR: str(snapshot.path), PARENT_TAG: parent_id, "status": arm.status}
    run = client.create_run(experiment_id, tags=tags, run_name=arm.arm_id)
    run_id = run.info.run_id
    extra = {}
    if arm.status == "failed":
        extra["error"] = str(arm.info.get("error") or "failed (no message)")[:MAX_TAG]
    _log_batch(client, run_id, arm_metrics(arm, base), arm_params(arm), extra)
    for name in ("arm.json", "train.json", "eval.json"):
        if (arm.folder / name).is_file():
            client.log_artifact(run_id, str(arm.folder / name))
    client.set_terminated(run_id, status="FINISHED" if arm.status == "done" else "FAILED")
    client.set_tag(run_id, TAG_CONTENT, content_hash)  # last: a half-logged run is redone next time
    return run_id


def _update_parent(client: Any, run_id: str, snapshot: StoreSnapshot, new: bool) -> None:
    failed = sum(a.status == "failed" for a in snapshot.arms)
    done = sum(a.status == "done" for a in snapshot.arms)
    metrics = [("n_arms", float(len(snapshot.arms)), 0), ("n_done", float(done), 0),
               ("n_failed", float(failed), 0), ("n_unfinished", float(len(snapshot.unfinished)), 0)]
    tags = {"status": "failed" if failed else "done"}
    _log_batch(client, run_id, metrics, sweep_params(snapshot) if new else {}, tags)
    for path, folder in parent_files(snapshot):
        client.log_artifact(run_id, str(path), folder)
    client.set_terminated(run_id, status="FAILED" if failed else "FINISHED")


def log_run_to_mlflow(run_dir: str | Path, tracking_uri: str | None = None,
                      experiment: str | None = None) -> list[str]:
    """Log (sync) a run directory to MLflow; return ``[sweep_run_id, *arm_run_ids]`` (arms in arm-id order).

    tracking_uri: default ``sqlite:///<run_dir>/mlflow.db``; experiment: default the sweep's name.
    Calling it again logs nothing new for unchanged arms (see the module docstring).
    """
    snapshot = read_store(run_dir)
    _import_mlflow()
    uri = tracking_uri or default_tracking_uri(snapshot.path)
    name = experiment or snapshot.name
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        with _quiet():
            return _sync(MlflowClient(tracking_uri=uri), snapshot, uri, name)
    except (MlflowException, OSError, ImportError) as exc:
        fix = INSTALL_FIX if isinstance(exc, ImportError) else "check the tracking URI and that its server or file is reachable"
        raise RankscopeError(f"mlflow {uri}", str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                             fix) from None


def _sync(client: Any, snapshot: StoreSnapshot, uri: str, experiment: str) -> list[str]:
    experiment_id = _experiment_id(client, experiment, uri)
    existing = _search(client, experiment_id, snapshot.fingerprint)
    parents = [r for r in existing if r.data.tags.get(TAG_ROLE) == "sweep"]
    children: dict[str, list[Any]] = {}
    for run in existing:
        if run.data.tags.get(TAG_ROLE) == "arm":
            children.setdefault(run.data.tags.get(TAG_ARM, ""), []).append(run)
    parents.sort(key=lambda r: r.info.start_time or 0, reverse=True)
    parent = next((r for r in parents if r.data.tags.get(TAG_CONFIG) == snapshot.config_hash), None)
    for run in parents:
        if run is not parent:
            client.delete_run(run.info.run_id)

    arm_hashes = {arm.arm_id: arm_content_hash(snapshot, arm) for arm in snapshot.arms}
    content = parent_content_hash(snapshot, arm_hashes)
    if parent is None:
        tags = {TAG_ROLE: "sweep", TAG_FINGERPRINT: snapshot.fingerprint, TAG_CONFIG: snapshot.config_hash,
                TAG_RUN_DIR: str(snapshot.path)}
        parent_id = client.create_run(experiment_id, tags=tags, run_name=snapshot.name).info.run_id
        _update_parent(client, parent_id, snapshot, new=True)
    else:
        parent_id = parent.info.run_id
        if parent.data.tags.get(TAG_CONTENT) != content:
            _update_parent(client, parent_id, snapshot, new=False)

    ids = [parent_id]
    for arm in snapshot.arms:
        runs = children.pop(arm.arm_id, [])
        keep = next((r for r in runs if r.data.tags.get(TAG_CONTENT) == arm_hashes[arm.arm_id]
                     and r.data.tags.get(PARENT_TAG) == parent_id), None)
        for run in runs:
            if run is not keep:
                client.delete_run(run.info.run_id)
        ids.append(keep.info.run_id if keep else
                   _log_arm(client, experiment_id, parent_id, snapshot, arm, arm_hashes[arm.arm_id]))
    for runs in children.values():  # arms no longer in the run directory
        for run in runs:
            client.delete_run(run.info.run_id)
    client.set_tag(parent_id, TAG_CONTENT, content)
    return ids
