"""The analysis store: atomic, merging, rerun-safe, readable without torch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rankscope.runstore.analysis_rows import ArmAnalysis, AttentionRow, RepresentationRow, SpectralRow
from rankscope.runstore.analysis_files import (
    read_attention,
    read_attention_maps,
    read_representation,
    read_singular_values,
    read_spectral,
    remove_arm_analysis,
    write_arm_analysis,
)


def _analysis(arm_id: str, value: float = 1.0) -> ArmAnalysis:
    return ArmAnalysis(
        arm_id=arm_id,
        spectral=[SpectralRow(arm_id, 0, "q_proj", "frobenius_norm", value), SpectralRow(arm_id, 1, "q_proj", "numerical_rank", 4.0)],
        representation=[RepresentationRow(arm_id, 0, "cka", 1 / 3), RepresentationRow(arm_id, 1, "effective_rank", value)],
        attention=[AttentionRow(arm_id, 0, 1, "entropy", value)],
        singular_values={f"{arm_id}/0/q_proj": np.array([3.0, 1.0], dtype=np.float32)},
        attention_maps={f"{arm_id}/0": np.full((2, 3, 3), value, dtype=np.float32)},
    )


def test_write_read_roundtrip_and_merge(tmp_path: Path):
    write_arm_analysis(tmp_path, _analysis("lora-r8"))
    write_arm_analysis(tmp_path, _analysis("base", 2.0))
    rows = read_spectral(tmp_path)
    assert [r.arm_id for r in rows] == ["base", "base", "lora-r8", "lora-r8"]  # sorted by arm, stable
    assert rows[0] == SpectralRow("base", 0, "q_proj", "frobenius_norm", 2.0)
    assert read_representation(tmp_path)[0].value == 1 / 3  # exact float round trip
    assert read_attention(tmp_path)[0] == AttentionRow("base", 0, 1, "entropy", 2.0)
    sv = read_singular_values(tmp_path)
    assert sorted(sv) == ["base/0/q_proj", "lora-r8/0/q_proj"]
    assert sv["base/0/q_proj"].dtype == np.float32
    maps = read_attention_maps(tmp_path, "base")
    assert list(maps) == ["base/0"] and maps["base/0"].shape == (2, 3, 3)


def test_rewriting_an_arm_replaces_its_rows(tmp_path: Path):
    write_arm_analysis(tmp_path, _analysis("a"))
    write_arm_analysis(tmp_path, _analysis("b"))
    write_arm_analysis(tmp_path, _analysis("a", 5.0))
    rows = read_spectral(tmp_path)
    assert len(rows) == 4
    assert [r.value for r in rows if r.arm_id == "a" and r.metric == "frobenius_norm"] == [5.0]
    assert float(read_attention_maps(tmp_path, "a")["a/0"][0, 0, 0]) == 5.0
    # order of completion does not matter
    other = tmp_path / "other"
    write_arm_analysis(other, _analysis("b"))
    write_arm_analysis(other, _analysis("a", 5.0))
    for name in ("spectral.csv", "representation.csv", "attention.csv"):
        assert (tmp_path / "analysis" / name).read_text() == (other / "analysis" / name).read_text()
    remove_arm_analysis(tmp_path, "a")
    assert {r.arm_id for r in read_spectral(tmp_path)} == {"b"}
    assert list(read_singular_values(tmp_path)) == ["b/0/q_proj"]


def test_no_temp_files_left_and_failed_write_keeps_old_file(tmp_path: Path, monkeypatch):
    write_arm_analysis(tmp_path, _analysis("a"))
    before = (tmp_path / "analysis" / "spectral.csv").read_text()
    import rankscope.runstore.analysis_files as store

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(store.os, "replace", boom)
    with pytest.raises(OSError):
        write_arm_analysis(tmp_path, _analysis("b"))
    monkeypatch.undo()
    assert (tmp_path / "analysis" / "spectral.csv").read_text() == before
    assert sorted(os.listdir(tmp_path / "analysis")) == [
        "attention.csv",
        "attention_maps.safetensors",
        "representation.csv",
        "singular_values.safetensors",
        "spectral.csv",
        "timings.csv",
    ]


def test_bad_keys_and_ids_rejected(tmp_path: Path):
    bad = _analysis("a")
    bad.singular_values = {"b/0/q_proj": np.ones(2, dtype=np.float32)}
    with pytest.raises(ValueError):
        write_arm_analysis(tmp_path, bad)
    with pytest.raises(ValueError):
        write_arm_analysis(tmp_path, ArmAnalysis(arm_id="x/y"))


def test_empty_store_reads_empty(tmp_path: Path):
    assert read_spectral(tmp_path) == [] and read_singular_values(tmp_path) == {}


def test_reading_imports_no_torch(tmp_path: Path):
    write_arm_analysis(tmp_path, _analysis("a"))
    code = (
        "import sys\n"
        "from rankscope.runstore.analysis_files import read_spectral, read_singular_values, read_attention_maps\n"
        f"assert read_spectral({str(tmp_path)!r}) and read_singular_values({str(tmp_path)!r})\n"
        f"assert read_attention_maps({str(tmp_path)!r})\n"
        "import rankscope.analysis\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
