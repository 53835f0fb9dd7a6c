"""``RUN_DIR/run.json``: what the numbers were measured with, recorded when the sweep runs.

The report's header reads it (rankscope.report.header): the model id and the revision or a hash
of the weights file, the device and dtype, library versions, the dates and wall time of every
invocation (a resumed run adds one), so a report can be defended without the machine it ran on.
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from rankscope.atomic import atomic_write_json
from rankscope.config import RankscopeConfig
from rankscope.models.load import pick_device, pick_dtype
from rankscope.models.resolve import ResolvedModel

RUN_JSON = "run.json"
LIBRARIES = ("rankscope", "torch", "transformers", "peft", "tokenizers", "safetensors", "numpy", "datasets",
             "lm_eval", "ray")
#: Files larger than this are identified by size and modification time instead of a sha256.
HASH_LIMIT_BYTES = 2 * 2**30


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape the numbers (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return versions


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_identity(resolved: ResolvedModel) -> dict[str, object]:
    """A revision for hub models; a sha256 of the file (GGUF) or of config.json + weight file
    names and sizes (folders), so two runs can be told apart when the files differ."""
    if resolved.where in ("hub", "hub-cache"):
        location = Path(resolved.location)
        snapshot = location.name if location.parent.name == "snapshots" else None  # the commit hash
        return {"revision": resolved.revision or "main", "commit": snapshot}
    path = Path(resolved.location)
    if path.is_file():
        if path.stat().st_size <= HASH_LIMIT_BYTES:
            return {"file": path.name, "sha256": file_sha256(path)}
        return {"file": path.name, "size_bytes": path.stat().st_size}
    digest = hashlib.sha256()
    for item in sorted(path.iterdir()):
        if item.name == "config.json":
            digest.update(item.read_bytes())
        elif item.is_file() and item.suffix in (".safetensors", ".bin", ".gguf"):
            digest.update(f"{item.name}:{item.stat().st_size}".encode())
    return {"folder_sha256": digest.hexdigest()}


def write_run_json(run_dir: Path, config: RankscopeConfig, resolved: ResolvedModel, started: str,
                   wall_time_s: float, ran: int, reused: int, failed: int) -> Path:
    """Write (or extend, on a resumed run) ``run.json``; returns its path."""
    path = run_dir / RUN_JSON
    previous: dict = {}
    if path.is_file():
        try:
            previous = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            previous = {}
    device = pick_device(config.model.device)
    invocations = [*previous.get("invocations", []),
                   {"started": started, "finished": utc_now(), "wall_time_s": round(wall_time_s, 2),
                    "arms_run": ran, "arms_reused": reused, "arms_failed": failed}]
    record = {
        "model": {"id": config.model.id, "where": resolved.where, "location": resolved.location,
                  "gguf_file": resolved.gguf_file, **weights_identity(resolved)},
        "device": str(device),
        "dtype": str(pick_dtype(config.model.dtype, device)).removeprefix("torch."),
        "libraries": library_versions(),
        "platform": platform.platform(),
        "started": invocations[0]["started"],
        "finished": invocations[-1]["finished"],
        "total_wall_time_s": round(sum(i["wall_time_s"] for i in invocations), 2),
        "invocations": invocations,
    }
    atomic_write_json(path, record)
    return path
