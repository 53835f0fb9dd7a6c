"""Analysis results in the run directory (``docs/run-store.md``); imports no torch.

Files under ``RUN_DIR/analysis/``:

- ``spectral.csv``        ``arm_id, layer, module, metric, value``
- ``representation.csv``  ``arm_id, layer, metric, value``
- ``attention.csv``       ``arm_id, layer, head, metric, value``
- ``singular_values.safetensors``  ``"<arm_id>/<layer>/<module>"`` -> float32 vector (descending)
- ``attention_maps.safetensors``   ``"<arm_id>/<layer>"`` -> float32 ``[heads, n, n]``
- ``timings.csv``         ``arm_id, step, seconds`` (wall time of each analysis step of the arm)
- ``intruder_control.csv`` ``arm_id, variant, lam, dataset, metric, value, n`` (only with
  ``analysis.intruder_control``)

Writing one arm merges with the other arms already there: that arm's old rows and tensors are
replaced (a rerun never duplicates), other arms' are kept; rows are ordered by arm id (stable), so
the files do not depend on the order arms finished in. Every file is written to a temporary file
in the same directory, flushed and fsynced, then ``os.replace``-d into place (atomic). Only the
sweep driver writes (one writer); readers need only ``csv``, ``numpy`` and ``safetensors.numpy``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import astuple
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save

from rankscope.atomic import atomic_write_bytes
from rankscope.runstore.analysis_rows import (
    ATTENTION_COLUMNS,
    CONTROL_COLUMNS,
    REPRESENTATION_COLUMNS,
    SPECTRAL_COLUMNS,
    ArmAnalysis,
    AttentionRow,
    ControlRow,
    RepresentationRow,
    SpectralRow,
)

ANALYSIS_DIR = "analysis"
SPECTRAL_CSV = "spectral.csv"
REPRESENTATION_CSV = "representation.csv"
ATTENTION_CSV = "attention.csv"
TIMINGS_CSV = "timings.csv"
CONTROL_CSV = "intruder_control.csv"
TIMING_COLUMNS = ("arm_id", "step", "seconds")
SINGULAR_VALUES = "singular_values.safetensors"
ATTENTION_MAPS = "attention_maps.safetensors"

_TABLES = {
    SPECTRAL_CSV: (SPECTRAL_COLUMNS, SpectralRow),
    REPRESENTATION_CSV: (REPRESENTATION_COLUMNS, RepresentationRow),
    ATTENTION_CSV: (ATTENTION_COLUMNS, AttentionRow),
}


def analysis_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / ANALYSIS_DIR


# --------------------------------------------------------------------------- atomic writes


def _format(value: object) -> str:
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return str(value)


# --------------------------------------------------------------------------- tables


def _read_raw(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _upsert_table(path: Path, columns: Sequence[str], arm_id: str, rows: Iterable[object]) -> None:
    kept = [r for r in _read_raw(path) if r.get("arm_id") != arm_id]
    new = [dict(zip(columns, (_format(v) for v in (row if isinstance(row, tuple) else astuple(row))))) for row in rows]
    merged = sorted(kept + new, key=lambda r: r["arm_id"])  # stable: each arm keeps its row order
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(merged)
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))


def _upsert_tensors(path: Path, arm_id: str, tensors: dict[str, np.ndarray]) -> None:
    prefix = f"{arm_id}/"
    bad = [key for key in tensors if not key.startswith(prefix)]
    if bad:
        raise ValueError(f"{path.name}: keys must start with {prefix!r}, got {bad[:3]}")
    existing = load_file(str(path)) if path.exists() else {}
    merged = {k: v for k, v in existing.items() if not k.startswith(prefix)}
    merged.update({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()})
    atomic_write_bytes(path, save(dict(sorted(merged.items()))))


def write_arm_analysis(run_dir: str | os.PathLike, analysis: ArmAnalysis) -> None:
    """Merge one arm's analysis into ``RUN_DIR/analysis/`` (replacing that arm's previous results)."""
    arm_id = analysis.arm_id
    if not arm_id or "/" in arm_id:
        raise ValueError(f"arm id {arm_id!r} must be non-empty and contain no '/'")
    out = analysis_dir(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    _upsert_table(out / SPECTRAL_CSV, SPECTRAL_COLUMNS, arm_id, analysis.spectral)
    _upsert_table(out / REPRESENTATION_CSV, REPRESENTATION_COLUMNS, arm_id, analysis.representation)
    _upsert_table(out / ATTENTION_CSV, ATTENTION_COLUMNS, arm_id, analysis.attention)
    _upsert_table(out / TIMINGS_CSV, TIMING_COLUMNS, arm_id,
                  [(arm_id, step, float(seconds)) for step, seconds in sorted(analysis.timings.items())])
    if analysis.control or (out / CONTROL_CSV).exists():  # the file exists only when the control ran
        _upsert_table(out / CONTROL_CSV, CONTROL_COLUMNS, arm_id, analysis.control)
    _upsert_tensors(out / SINGULAR_VALUES, arm_id, analysis.singular_values)
    _upsert_tensors(out / ATTENTION_MAPS, arm_id, analysis.attention_maps)


def remove_arm_analysis(run_dir: str | os.PathLike, arm_id: str) -> None:
    """Drop one arm's rows and tensors (e.g. before re-running a failed arm)."""
    write_arm_analysis(run_dir, ArmAnalysis(arm_id=arm_id))


# --------------------------------------------------------------------------- reading (no torch)


def _typed(row: dict[str, str], cls: type) -> object:
    values = dict(row)
    for key in ("layer", "head"):
        if key in values:
            values[key] = int(values[key])
    values["value"] = float(values["value"]) if values["value"] not in ("", None) else float("nan")
    return cls(**values)


def read_table(run_dir: str | os.PathLike, name: str) -> list:
    """Typed rows of ``spectral.csv``, ``representation.csv`` or ``attention.csv`` ([] if absent)."""
    if name not in _TABLES:
        raise ValueError(f"unknown analysis table {name!r}; expected one of {sorted(_TABLES)}")
    _, cls = _TABLES[name]
    return [_typed(r, cls) for r in _read_raw(analysis_dir(run_dir) / name)]


def read_timings(run_dir: str | os.PathLike) -> dict[str, dict[str, float]]:
    """``arm_id -> {step: seconds}`` from ``timings.csv`` ({} if absent)."""
    out: dict[str, dict[str, float]] = {}
    for row in _read_raw(analysis_dir(run_dir) / TIMINGS_CSV):
        out.setdefault(row["arm_id"], {})[row["step"]] = float(row["seconds"])
    return out


def read_control(run_dir: str | os.PathLike) -> list[ControlRow]:
    """Typed rows of ``intruder_control.csv`` ([] if absent)."""
    return [ControlRow(r["arm_id"], r["variant"], float(r["lam"]), r["dataset"], r["metric"], float(r["value"]),
                       int(r["n"])) for r in _read_raw(analysis_dir(run_dir) / CONTROL_CSV)]


def read_spectral(run_dir: str | os.PathLike) -> list[SpectralRow]:
    return read_table(run_dir, SPECTRAL_CSV)


def read_representation(run_dir: str | os.PathLike) -> list[RepresentationRow]:
    return read_table(run_dir, REPRESENTATION_CSV)


def read_attention(run_dir: str | os.PathLike) -> list[AttentionRow]:
    return read_table(run_dir, ATTENTION_CSV)


def _read_tensors(path: Path, arm_id: str | None) -> dict[str, np.ndarray]:
    if not path.exists():
        return {}
    tensors = load_file(str(path))
    if arm_id is None:
        return tensors
    return {k: v for k, v in tensors.items() if k.startswith(f"{arm_id}/")}


def read_singular_values(run_dir: str | os.PathLike, arm_id: str | None = None) -> dict[str, np.ndarray]:
    """``"<arm_id>/<layer>/<module>"`` -> float32 vector; only ``arm_id``'s when given."""
    return _read_tensors(analysis_dir(run_dir) / SINGULAR_VALUES, arm_id)


def read_attention_maps(run_dir: str | os.PathLike, arm_id: str | None = None) -> dict[str, np.ndarray]:
    """``"<arm_id>/<layer>"`` -> float32 ``[heads, n, n]``; only ``arm_id``'s when given."""
    return _read_tensors(analysis_dir(run_dir) / ATTENTION_MAPS, arm_id)
