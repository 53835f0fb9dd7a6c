"""What tracking logs, read from a run directory alone (no mlflow, no torch).

:func:`read_store` takes a snapshot of the run directory's files (the bytes are kept so that a
content hash can tell a changed arm from an unchanged one); the helpers below turn an arm into
the params and metrics that :mod:`rankscope.tracking.mlflow_sync` logs. What is logged, and why it
is idempotent, is described in :mod:`rankscope.tracking`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankscope.errors import RankscopeError

SCHEMA = "rankscope-mlflow-1"  # bump when what is logged changes: every run is then relogged
ARM_PARAMS = ("arm_id", "method", "rank", "alpha", "seed", "train_set", "lr", "targets")
TRAIN_METRICS = ("trainable_params", "total_params", "steps", "wall_time_s", "tokens_per_s", "peak_memory_mb",
                 "final_loss")
PARENT_ARTIFACTS = ("config.yaml", "results.csv", "report.html", "summary.md")

log = logging.getLogger(__name__)




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


def parent_files(snapshot: StoreSnapshot) -> list[tuple[Path, str | None]]:
    files: list[tuple[Path, str | None]] = [(snapshot.path / n, None) for n in PARENT_ARTIFACTS
                                            if (snapshot.path / n).is_file()]
    figures = snapshot.path / "figures"
    if figures.is_dir():
        files += [(p, "figures") for p in sorted(figures.glob("*.png")) if p.is_file()]
    return files


def parent_content_hash(snapshot: StoreSnapshot, arm_hashes: dict[str, str]) -> str:
    parts: list[bytes | str] = [SCHEMA, snapshot.config_hash, json.dumps(arm_hashes, sort_keys=True),
                                json.dumps(sorted(snapshot.unfinished))]
    for path, folder in parent_files(snapshot):
        parts += [f"{folder}/{path.name}", path.read_bytes()]
    return _digest(*parts)
