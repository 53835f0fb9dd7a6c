"""`rankscope predict` (issue 18): the rules by simulation, then the verb end to end on a tiny model."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from rankscope.predict.signals import (
    capacity_interval,
    capacity_rank,
    energy_interval,
    gradient_rule_interval,
    noise_edge_rank,
)
from rankscope.runstore.prediction import Prediction, SignalInterval, read_prediction, write_prediction


def test_noise_edge_ignores_pure_noise_and_finds_planted_directions():
    """Gaussian noise of variance s2 per entry: s_1 <= sigma (sqrt(m) + sqrt(n)) in expectation (Gordon),
    with Gaussian concentration above it, so pure noise has rank ~0; three planted directions well
    above the BBP threshold sigma (m n)^(1/4) are all counted, and only they."""
    m, n, s2 = 60, 90, 0.01
    pure, planted = [], []
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        noise = math.sqrt(s2) * torch.randn(m, n, generator=g)
        pure.append(noise_edge_rank(torch.linalg.svdvals(noise), s2, (m, n)))
        U = torch.linalg.qr(torch.randn(m, 3, generator=g)).Q
        V = torch.linalg.qr(torch.randn(n, 3, generator=g)).Q
        strength = 4 * math.sqrt(s2) * (m * n) ** 0.25
        signal = U @ torch.diag(torch.tensor([3.0, 2.0, 1.5]) * strength) @ V.T
        planted.append(noise_edge_rank(torch.linalg.svdvals(signal + noise), s2, (m, n)))
    assert sum(r > 0 for r in pure) <= 2  # rare false directions
    assert planted.count(3) >= 18


def test_intervals_span_median_to_max_over_modules():
    spectra = {"a": torch.tensor([1.0, 0.0, 0.0]), "b": torch.tensor([1.0, 1.0, 0.0]), "c": torch.ones(3)}
    lo, hi, detail = energy_interval(spectra, 0.90)
    assert (lo, hi) == (2, 3) and detail["max_module"] == "c"  # ranks 1, 2, 3
    lo, hi, detail = gradient_rule_interval({"a": torch.tensor([3.0, 0.1])}, {"a": 1.0}, {"a": (2, 2)})
    assert (lo, hi) == (1, 1)  # 9 >= (sqrt2 + sqrt2)^2 = 8 > 0.01; a zero count is raised to rank 1
    assert detail["zero_modules"] == 0


def test_capacity_rank_is_the_smallest_rank_that_stores_the_bits():
    assert capacity_rank(0.0, 100) == 1
    assert capacity_rank(2 * 100 * 3, 100) == 3 and capacity_rank(2 * 100 * 3 + 1, 100) == 4
    lo, hi, detail = capacity_interval(answer_tokens=1000, base_loss=2.0, probe_drop=0.5, width=10)
    assert lo == math.ceil(1000 * 0.5 / math.log(2) / 20) and hi == math.ceil(1000 * 2.0 / math.log(2) / 20)
    with pytest.raises(ValueError, match="width"):
        capacity_rank(1.0, 0)


def test_prediction_file_round_trips(tmp_path):
    p = Prediction("m", 10, 32, {"s": [SignalInterval("sft_energy_90", 2, 9, 1.25, "def", {"x": 1})]}, 3.0)
    write_prediction(tmp_path, p)
    back = read_prediction(tmp_path)
    assert back is not None and back.sets == p.sets and back.lines() == ["s sft_energy_90: rank [2, 9] (1.2 s)"]
    (tmp_path / "prediction.json").write_text("{not json")
    notes: list[str] = []
    assert read_prediction(tmp_path, notes) is None and "unreadable" in notes[0]
    with pytest.raises(ValueError, match="lo > hi"):
        SignalInterval("x", 3, 2, 0.0, "")


def _config(tmp_path, tiny_model_dir):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "name": "tiny", "model": {"id": str(tiny_model_dir)},
        "data": {"train": [{"name": "arith_chain", "n_train": 16, "n_test": 4},
                           {"name": "arith_mc", "n_train": 16, "n_test": 4}]},
        "arms": {"sft": True, "lora": {"ranks": [1, 4], "targets": ["q_proj", "v_proj"]}},
        "train": {"steps": 4, "batch_size": 2, "max_length": 48},
    }))
    return path


def test_predict_verb_prints_one_line_per_set_and_signal(tmp_path, tiny_model_dir, capsys):
    from rankscope.cli import main

    config = _config(tmp_path, tiny_model_dir)
    out = tmp_path / "run"
    assert main(["predict", str(config), "--out", str(out), "--probe-steps", "2"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if ": rank [" in line]
    signals = ("sft_energy_90", "sft_energy_99", "grad_energy_90", "grad_noise_edge", "data_capacity")
    assert len(lines) == 2 * len(signals)
    for line in lines:
        assert line.split(" ")[0] in ("arith_chain", "arith_mc") and line.split(" ")[1].rstrip(":") in signals
    data = json.loads((out / "prediction.json").read_text())
    assert data["probe_steps"] == 2 and set(data["sets"]) == {"arith_chain", "arith_mc"}
    for signals_of_set in data["sets"].values():
        for s in signals_of_set:
            assert 1 <= s["lo"] <= s["hi"] and s["seconds"] >= 0
            if s["signal"].startswith(("sft", "grad")):
                # q_proj [32, 32] and v_proj [16, 32] of two blocks: 4 modules, no rank above the side
                assert s["detail"]["modules"] == 4 and s["hi"] <= 32


def test_predict_restores_the_base_between_sets(tmp_path, tiny_model_dir):
    """A set predicted after another gets what it gets alone: the first set's probe does not leak."""
    from rankscope.config import load_config
    from rankscope.predict.run import predict

    both = load_config(_config(tmp_path, tiny_model_dir), ["arms.lora.targets=all-linear"])
    alone = both.model_copy(update={"data": both.data.model_copy(update={"train": [both.data.train[1]]})})
    after = predict(both, tmp_path / "both", probe_steps=2, announce=lambda _: None).sets["arith_mc"]
    first = predict(alone, tmp_path / "alone", probe_steps=2, announce=lambda _: None).sets["arith_mc"]
    assert [(s.signal, s.lo, s.hi) for s in after] == [(s.signal, s.lo, s.hi) for s in first]
    assert [s.detail.get("max") for s in after] == pytest.approx([s.detail.get("max") for s in first])


def test_bad_probe_steps_is_one_clear_error(tmp_path, tiny_model_dir, capsys):
    from rankscope.cli import main

    assert main(["predict", str(_config(tmp_path, tiny_model_dir)), "--probe-steps", "11"]) == 2
    assert "give 1 to 10" in capsys.readouterr().err


def test_prediction_file_matches_docs_run_store(tmp_path):
    """docs/run-store.md's prediction.json example has the keys the writer writes."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "run-store.md").read_text()
    example = json.loads(doc.split("## prediction.json\n", 1)[1].split("```json\n", 1)[1].split("```", 1)[0])
    write_prediction(tmp_path, Prediction("m", 10, 32, {"s": [SignalInterval("sft_energy_90", 1, 2, 0.5, "d")]}))
    written = json.loads((tmp_path / "prediction.json").read_text())
    assert set(written) == set(example)
    assert set(written["sets"]["s"][0]) == set(next(iter(example["sets"].values()))[0])
