"""Log a run directory (the store, docs/run-store.md) to MLflow: one run per arm under a sweep run.

Optional extra: ``pip install 'rankscope[mlflow]'`` (mlflow-skinny plus alembic, enough for the
SQLite tracking store and local artifacts; install the full ``mlflow`` package for ``mlflow ui``).
Like the report, this reads *only* the run directory -- no torch -- so a copied run directory
can be logged from a laptop.

What is logged
    sweep run (parent)  params from config.yaml (model, data, arms, train); metrics n_arms, n_done,
                        n_failed, n_unfinished; tags status (done | failed), run_dir; artifacts
                        config.yaml, results.csv, report.html, summary.md and figures/*.png when present.
    arm run (child)     params arm_id, method, rank, alpha, seed, train_set, lr, targets (a missing
                        value, e.g. the base arm's rank, is left out); metrics ``<dataset>/<metric>``
                        (accuracy, margin) with ``<dataset>/<metric>_stderr``, ``<dataset>/gain`` on
                        in-domain and ``<dataset>/forgetting`` on out-of-domain sets (accuracy vs the
                        base arm, as in the report: gain = arm - base, forgetting = base - arm),
                        mean_gain, mean_forgetting, trainable_params, total_params, steps,
                        wall_time_s, tokens_per_s, peak_memory_mb, final_loss, eval_time_s and the
                        loss curve as the step metric ``train/loss``; tags status and, for a failed
                        arm, error; artifacts arm.json, train.json, eval.json. MLflow status
                        FINISHED, or FAILED for a failed arm. Unfinished arms are not logged.

Defaults: tracking URI ``sqlite:///<run_dir>/mlflow.db`` (MLflow's own default is a SQLite
store too; its file store is deprecated), artifacts in ``<run_dir>/mlartifacts`` (for any SQLite
URI: ``mlartifacts/`` beside the database file), experiment = the sweep's ``name``.

Idempotent (a sync, not an append): every run is tagged ``rankscope.fingerprint`` (a hash of
the run directory's absolute path: the same directory is the same sweep, however often it is
resumed), ``rankscope.arm_id`` and ``rankscope.content_hash`` (a hash of the files the run was
logged from). Logging again keeps a run whose content is unchanged (same run id, nothing
written), replaces (deletes and relogs) an arm run whose files changed, deletes the runs of arms
no longer in the directory, and recreates everything when config.yaml changed (params cannot
change in MLflow). Deleted runs are MLflow soft deletes (``mlflow gc`` purges them). A copy of
the directory at another path is another sweep.
"""

from __future__ import annotations

import os

import contextlib
import hashlib
import json
import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from rankscope.errors import RankscopeError

INSTALL_FIX = "pip install 'rankscope[mlflow]'"
SCHEMA = "rankscope-mlflow-1"  # bump when what is logged changes: every run is then relogged
TAG_ROLE = "rankscope.role"
TAG_FINGERPRINT = "rankscope.fingerprint"
TAG_ARM = "rankscope.arm_id"
TAG_CONTENT = "rankscope.content_hash"
TAG_CONFIG = "rankscope.config_hash"
TAG_RUN_DIR = "rankscope.run_dir"
PARENT_TAG = "mlflow.parentRunId"
ARM_PARAMS = ("arm_id", "method", "rank", "alpha", "seed", "train_set", "lr", "targets")
TRAIN_METRICS = ("trainable_params", "total_params", "steps", "wall_time_s", "tokens_per_s", "peak_memory_mb",
                 "final_loss")
PARENT_ARTIFACTS = ("config.yaml", "results.csv", "report.html", "summary.md")
MAX_TAG = 4000

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Reading the store (no mlflow, no torch)


@dataclass
class ArmRecord:
    """One finished or failed arm: its three JSON files as read from arms/<arm_id>/."""

    arm_id: str
    folder: Path
    info: dict[str, Any]
    train: dict[str, Any] | None
    evaluation: dict[str, Any] | None
    files: dict[str, bytes]

    @property
    def status(self) -> str:
        return str(self.info.get("status"))

    @property
    def method(self) -> str:
        return str(self.info.get("method") or "unknown")

    @property
    def train_set(self) -> str | None:
        value = self.info.get("train_set")
        return None if value in (None, "") else str(value)


@dataclass
class StoreSnapshot:
    """What tracking needs from a run directory."""

    path: Path
    name: str
    fingerprint: str
    config: dict[str, Any]
    config_hash: str
    arms: list[ArmRecord]
    unfinished: list[str] = field(default_factory=list)


def _digest(*chunks: bytes | str) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk.encode() if isinstance(chunk, str) else chunk)
        h.update(b"\0")
    return h.hexdigest()[:16]


def _load_json(data: bytes, where: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        log.warning("%s: unreadable JSON (%s); left out", where, exc)
        return None
    if not isinstance(value, dict):
        log.warning("%s: expected a JSON object; left out", where)
        return None
    return value


def read_store(run_dir: str | Path) -> StoreSnapshot:
    """Read config.yaml and arms/*/{arm,train,eval}.json; arms not done or failed are listed as unfinished."""
    path = Path(run_dir)
    if not path.is_dir():
        raise RankscopeError(str(path), "is not a directory", "pass the RUN_DIR that `rankscope run` wrote")
    config_path, arms_dir = path / "config.yaml", path / "arms"
    if not config_path.is_file() or not arms_dir.is_dir():
        raise RankscopeError(str(path), "not a run directory (no config.yaml or no arms/)",
                             "pass the RUN_DIR that `rankscope run` wrote")
    config_bytes = config_path.read_bytes()
    try:
        import yaml

        config = yaml.safe_load(config_bytes.decode("utf-8")) or {}
    except Exception as exc:  # a broken config.yaml still leaves the arms to log
        log.warning("%s: unreadable YAML (%s); sweep params left out", config_path, exc)
        config = {}
    if not isinstance(config, dict):
        config = {}
    resolved = path.resolve()
    arms: list[ArmRecord] = []
    unfinished: list[str] = []
    for folder in sorted(p for p in arms_dir.iterdir() if p.is_dir()):
        files = {name: (folder / name).read_bytes() for name in ("arm.json", "train.json", "eval.json")
                 if (folder / name).is_file()}
        info = _load_json(files["arm.json"], folder / "arm.json") if "arm.json" in files else None
        if info is None or info.get("status") not in ("done", "failed"):
            unfinished.append(folder.name)
            continue
        train = _load_json(files["train.json"], folder / "train.json") if "train.json" in files else None
        evaluation = _load_json(files["eval.json"], folder / "eval.json") if "eval.json" in files else None
        arm_id = str(info.get("arm_id") or folder.name)
        arms.append(ArmRecord(arm_id, folder, info, train, evaluation, files))
    return StoreSnapshot(
        path=resolved, name=str(config.get("name") or path.name), fingerprint=_digest("run-dir", str(resolved)),
        config=config, config_hash=_digest(SCHEMA, config_bytes), arms=arms, unfinished=unfinished,
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


_UNSAFE_KEY = re.compile(r"[^\w.\- /:]")


def _key(text: str) -> str:
    """An MLflow-safe metric/param key (letters, digits, _ - . space / :)."""
    return _UNSAFE_KEY.sub("_", str(text)).replace("..", "_").lstrip("/") or "_"


def _accuracy(arm: ArmRecord) -> dict[str, float]:
    datasets = (arm.evaluation or {}).get("datasets") or {}
    out: dict[str, float] = {}
    for name, spec in datasets.items():
        metric = ((spec or {}).get("metrics") or {}).get("accuracy") or {}
        value = _number(metric.get("value"))
        if value is not None:
            out[str(name)] = value
    return out


def base_accuracy(snapshot: StoreSnapshot, train_set: str | None) -> dict[str, float]:
    """Accuracy of the finished base arm(s) for a training set (mean if several), per dataset."""
    bases = [a for a in snapshot.arms if a.method == "base" and a.status == "done"
             and a.train_set in (None, train_set)]
    sums: dict[str, list[float]] = {}
    for arm in bases:
        for name, value in _accuracy(arm).items():
            sums.setdefault(name, []).append(value)
    return {name: sum(values) / len(values) for name, values in sums.items()}


def arm_metrics(arm: ArmRecord, base: dict[str, float]) -> list[tuple[str, float, int]]:
    """(key, value, step) for one arm; see the module docstring for the names."""
    metrics: list[tuple[str, float, int]] = []

    def add(key: str, value: Any, step: int = 0) -> None:
        number = _number(value)
        if number is not None:
            metrics.append((_key(key), number, step))

    datasets = (arm.evaluation or {}).get("datasets") or {}
    gains: dict[str, float | None] = {}
    forgets: dict[str, float | None] = {}
    for name, spec in sorted(datasets.items()):
        spec = spec or {}
        for metric, values in sorted((spec.get("metrics") or {}).items()):
            values = values or {}
            add(f"{name}/{metric}", values.get("value"))
            add(f"{name}/{metric}_stderr", values.get("stderr"))
        if arm.method == "base":
            continue
        domain = spec.get("domain") or ("in" if name == arm.train_set else "out")
        accuracy = _number(((spec.get("metrics") or {}).get("accuracy") or {}).get("value"))
        delta = None if accuracy is None or name not in base else accuracy - base[name]
        if domain == "in":
            gains[name] = delta
            add(f"{name}/gain", delta)
        else:
            forgets[name] = None if delta is None else -delta
            add(f"{name}/forgetting", forgets[name])
    for key, values in (("mean_gain", gains), ("mean_forgetting", forgets)):
        if values and all(v is not None for v in values.values()):
            add(key, sum(values.values()) / len(values))  # type: ignore[arg-type]
    add("eval_time_s", (arm.evaluation or {}).get("eval_time_s"))
    train = arm.train or {}
    for name in TRAIN_METRICS:
        add(name, train.get(name))
    for point in train.get("loss_curve") or []:
        try:
            step, value = point
            add("train/loss", value, int(step))
        except (TypeError, ValueError):
            continue
    return metrics


def arm_params(arm: ArmRecord) -> dict[str, str]:
    params: dict[str, str] = {}
    for name in ARM_PARAMS:
        value = arm.info.get(name, arm.arm_id if name == "arm_id" else None)
        if value is None or value == "":
            continue
        params[name] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return params


def sweep_params(snapshot: StoreSnapshot) -> dict[str, str]:
    """A flat, readable subset of config.yaml (missing keys are left out)."""
    config = snapshot.config

    def get(*keys: str) -> Any:
        node: Any = config
        for key in keys:
            if not isinstance(node, dict):
                return None
            node = node.get(key)
        return node

    def names(items: Any) -> str | None:
        if not isinstance(items, list):
            return None
        return ",".join(str(d.get("name")) for d in items if isinstance(d, dict)) or None

    candidates = {
        "name": snapshot.name, "model": get("model", "id"), "train_sets": names(get("data", "train")),
        "eval_sets": names(get("data", "eval")), "ranks": get("arms", "lora", "ranks"),
        "alpha_rule": get("arms", "lora", "alpha"), "targets": get("arms", "lora", "targets"),
        "sft": get("arms", "sft"), "seeds": get("arms", "seeds"), "steps": get("train", "steps"),
        "batch_size": get("train", "batch_size"), "lr_lora": get("train", "lr", "lora"),
        "lr_sft": get("train", "lr", "sft"), "executor": get("sweep", "executor"),
    }
    params: dict[str, str] = {}
    for key, value in candidates.items():
        if value is None:
            continue
        params[key] = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return params


def arm_content_hash(snapshot: StoreSnapshot, arm: ArmRecord) -> str:
    """Changes when anything logged for the arm changes (its files, the base it is compared with)."""
    base = base_accuracy(snapshot, arm.train_set) if arm.method != "base" else {}
    return _digest(SCHEMA, *(arm.files.get(n, b"") for n in ("arm.json", "train.json", "eval.json")),
                   json.dumps(base, sort_keys=True))


def _parent_files(snapshot: StoreSnapshot) -> list[tuple[Path, str | None]]:
    files: list[tuple[Path, str | None]] = [(snapshot.path / n, None) for n in PARENT_ARTIFACTS
                                            if (snapshot.path / n).is_file()]
    figures = snapshot.path / "figures"
    if figures.is_dir():
        files += [(p, "figures") for p in sorted(figures.glob("*.png")) if p.is_file()]
    return files


def parent_content_hash(snapshot: StoreSnapshot, arm_hashes: dict[str, str]) -> str:
    parts: list[bytes | str] = [SCHEMA, snapshot.config_hash, json.dumps(arm_hashes, sort_keys=True),
                                json.dumps(sorted(snapshot.unfinished))]
    for path, folder in _parent_files(snapshot):
        parts += [f"{folder}/{path.name}", path.read_bytes()]
    return _digest(*parts)


# ---------------------------------------------------------------------------------------------
# MLflow


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
    for path, folder in _parent_files(snapshot):
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
