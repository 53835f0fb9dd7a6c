"""bench/analysis_scale.py runs end to end at tiny sizes and its exact and top-k intruder counts
agree; bench/compare_analysis.py reads two run directories and gates on their differences;
bench/quick_analysis_methods.py runs both methods on the finished arms of one run directory.
Speed ratios are not asserted (bench/ prints them)."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import torch

from rankscope.runstore.analysis_rows import ArmAnalysis
from rankscope.runstore.analysis_files import write_arm_analysis
from rankscope.analysis.topk import TopKSettings
from rankscope.analysis.weight_spectra import SpectralSettings, build_base_reference, weight_update_spectra

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_bench(name: str, args: list[str], monkeypatch, capsys) -> tuple[str, int]:
    monkeypatch.setattr(sys, "argv", [name, *args])
    code = 0
    try:
        runpy.run_path(str(BENCH / name), run_name="__main__")
    except SystemExit as stop:
        code = int(stop.code or 0)
    return capsys.readouterr().out, code


def test_analysis_scale_bench_runs_and_methods_agree(monkeypatch, capsys):
    out, _ = run_bench("analysis_scale.py", ["--d-out", "192", "--d-in", "640", "--layers", "2", "--shapes", "small",
                                             "--topk-repeats", "1", "--threads", "1", "--dense-below", "0"], monkeypatch, capsys)
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"speedup \d+\.\dx; projected 8B analysis: \d+ min, \d+\.\d GiB", last), last
    counts = re.search(r"intruder dimensions: exact (\d+), top-k (\d+) \(agree\)", out)
    assert counts and counts.group(1) == counts.group(2) and int(counts.group(1)) > 0


def _run_dir(tmp: Path, method: str, W0: torch.Tensor, W_ft: torch.Tensor) -> Path:
    from test_analysis_topk import one_module_model

    settings = SpectralSettings(method=method, device="cpu", spectrum_k=16, reference_k=32,
                                topk=TopKSettings(dense_below=0))
    cache = build_base_reference(one_module_model(W0), tmp / method / "analysis" / "base_reference", settings)
    result = weight_update_spectra("sft", one_module_model(W_ft), cache, settings=settings)
    write_arm_analysis(tmp / method, ArmAnalysis("sft", spectral=result.rows, singular_values=result.singular_values))
    return tmp / method


def test_compare_analysis_reports_agreement_and_differences(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    from test_analysis_topk import pair

    W0, W_ft = pair()
    exact, topk = _run_dir(tmp_path, "exact", W0, W_ft), _run_dir(tmp_path, "topk", W0, W_ft)
    out, code = run_bench("compare_analysis.py", [str(exact), str(topk)], monkeypatch, capsys)
    assert code == 0 and "OK: intruder counts agree" in out, out
    assert re.search(r"frobenius_norm\s+1\s", out)
    # a different update is caught
    other = _run_dir(tmp_path / "other", "topk", W0, W0 + 2 * (W_ft - W0))
    out, code = run_bench("compare_analysis.py", [str(exact), str(other)], monkeypatch, capsys)
    assert code == 1 and "DIFFERENT" in out


def _new_direction(W: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``W`` plus a random rank-1 direction at 3 x its ``s_1``: an intruder by construction."""
    u, v = torch.randn(W.shape[0], generator=generator), torch.randn(W.shape[1], generator=generator)
    return W + 3 * torch.linalg.matrix_norm(W, ord=2) * torch.outer(u / u.norm(), v / v.norm())


def _deep_base_direction(W: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``W`` with its 30th singular direction raised to 3 x ``s_1``: no intruder against all of
    ``W_0``'s vectors, but one against only its top 10."""
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return W + (3 * S[0] - S[29]) * torch.outer(U[:, 29], Vh[29])


def _quick_run_dir(tmp: Path, reference_k: int = 24, perturb=_new_direction) -> Path:
    """A finished run directory of a 1-block Llama (hidden 96, so top-k's randomized path runs
    under ``--dense-below 0``): an sft arm whose every projection is ``perturb``-ed and a LoRA r4
    arm with a random update."""
    import json

    from safetensors.torch import save_file

    from rankscope.models.weights import unique_names
    from transformers import LlamaConfig, LlamaForCausalLM

    from conftest import build_tokenizer
    from rankscope.config import config_from_dict, dump_config
    from rankscope.models.arms import apply_lora
    from rankscope.models.load import load_base_model

    tokenizer = build_tokenizer()
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=96, intermediate_size=192,
                                         num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=128, tie_word_embeddings=True))
    model.save_pretrained(tmp / "model", safe_serialization=True)
    tokenizer.save_pretrained(tmp / "model")
    config = config_from_dict({"model": {"id": str(tmp / "model")},
                               "data": {"train": [{"name": "arith_chain", "n_train": 8, "n_test": 8}]},
                               "analysis": {"intruder_reference_k": reference_k, "spectrum_k": 8}})
    run = tmp / "run"
    (run / "arms" / "sft").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(config))
    base = load_base_model(config.model)
    generator = torch.Generator().manual_seed(1)
    state, weights = {}, base.model.state_dict()
    for name in unique_names(base.model):  # tied tensors once, as rankscope saves an sft arm
        tensor = weights[name].clone().contiguous()
        if "layers." in name and tensor.ndim == 2:
            tensor = perturb(tensor, generator)
        state[name] = tensor
    save_file(state, str(run / "arms" / "sft" / "model.safetensors"))
    (run / "arms" / "sft" / "arm.json").write_text(json.dumps({"method": "sft", "rank": None, "status": "done"}))
    lora = apply_lora(base.model, config.arms.lora, 4, 0)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=generator))
    lora.save_pretrained(run / "arms" / "r4" / "adapter", safe_serialization=True)
    (run / "arms" / "r4" / "arm.json").write_text(json.dumps({"method": "lora", "rank": 4, "status": "done"}))
    return run


def test_quick_analysis_methods_compares_exact_and_topk_on_every_finished_arm(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, str(Path(__file__).parent))
    run = _quick_run_dir(tmp_path)
    out, code = run_bench("quick_analysis_methods.py", [str(run), "--dense-below", "0"], monkeypatch, capsys)
    assert code == 0, out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["sft"], ["r4"])}
    assert rows.keys() == {"sft", "r4"}, out
    # every one of the 7 projections of the sft arm holds the planted intruder, both methods see it
    assert rows["sft"][1] == rows["sft"][2] and int(rows["sft"][1]) >= 7, out
    assert rows["r4"][1] == rows["r4"][2], out
    assert all(float(row[3]) <= 1e-2 for row in rows.values()), out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"quick preset: intruders agree on 2 of 2 arms; max sv rel diff \S+; topk/exact time \d+\.\d\dx",
                        last), last


def test_quick_analysis_methods_fails_when_intruder_counts_differ(tmp_path, monkeypatch, capsys):
    """Top-k compares against W_0's top ``intruder_reference_k`` vectors only: a direction of W_0
    beyond them raised to the top counts as an intruder there and not under exact; the script
    names those matrices and exits 1."""
    sys.path.insert(0, str(Path(__file__).parent))
    run = _quick_run_dir(tmp_path, reference_k=10, perturb=_deep_base_direction)
    out, code = run_bench("quick_analysis_methods.py", [str(run), "--dense-below", "0"], monkeypatch, capsys)
    assert code == 1, out
    sft = next(line.split() for line in out.splitlines() if line.startswith("sft "))
    assert (int(sft[1]), int(sft[2])) == (0, 7), out  # one per projection, under top-k only
    assert "0.q_proj (0 vs 1)" in " ".join(sft[6:]) and "0.down_proj (0 vs 1)" in " ".join(sft[6:]), out
    assert "quick preset: intruders agree on 1 of 2 arms;" in out, out


def test_quick_analysis_methods_sv_difference_is_relative_to_s1_over_topk_values(monkeypatch):
    import importlib.util

    import numpy as np

    from rankscope.analysis.weight_spectra import SpectralResult

    spec = importlib.util.spec_from_file_location("quick_analysis_methods", BENCH / "quick_analysis_methods.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    exact = SpectralResult(singular_values={"a/0/q_proj": np.array([10.0, 5.0, 1.0, 0.5], dtype=np.float32)})
    topk = SpectralResult(singular_values={"a/0/q_proj": np.array([10.0, 4.0], dtype=np.float32)})  # top-2 only
    assert bench.max_sv_rel_diff(exact, topk) == 0.1
    topk.singular_values["a/0/q_proj"] = np.array([10.0, 5.0], dtype=np.float32)
    assert bench.max_sv_rel_diff(exact, topk) == 0.0
