"""Generic-text NLL (continuous forgetting): identities against a direct forward, pairing, rows."""

from __future__ import annotations

import math

import pytest
import torch

from rankscope.config import NllSpec, config_from_dict, resolve_paths
from rankscope.data.generic_text import SHIPPED_SOURCE, read_generic_text, shipped_text
from rankscope.errors import ConfigError
from rankscope.stats.summary import nll_delta
from rankscope.evaluate.nll import chunk_nll, generic_text_nll, text_chunks
from rankscope.runstore.writer import nll_rows

TEXT = "Paris is the capital of France. Tom has 12 apples and gives away 7. " * 30


def test_chunk_nll_equals_a_direct_forward_per_chunk(tiny):
    """Batched, right-padded chunks give each chunk's own summed -log p of tokens 1..n-1."""
    chunks = text_chunks(tiny.tokenizer, TEXT, max_tokens=100, chunk_tokens=24)
    assert len(chunks) == 5 and len(chunks[-1]) < 24  # the last chunk is shorter: padding is exercised
    sums, counts = chunk_nll(tiny.model, chunks, tiny.tokenizer.pad_token_id)
    for chunk, total, count in zip(chunks, sums, counts):
        with torch.no_grad():
            log_probs = torch.log_softmax(tiny.model(torch.tensor([chunk])).logits[0].float(), dim=-1)
        direct = -sum(float(log_probs[t - 1, chunk[t]]) for t in range(1, len(chunk)))
        assert count == len(chunk) - 1
        assert total == pytest.approx(direct, rel=1e-5)


def test_user_file_and_delta_identities(tiny, tmp_path):
    path = tmp_path / "prose.txt"
    path.write_text(TEXT, encoding="utf-8")
    spec = NllSpec(path=str(path), max_tokens=120, chunk_tokens=32)
    base = generic_text_nll(tiny.model, tiny.tokenizer, spec).to_json()
    assert base["source"] == "prose.txt" and base["metric"]["n"] == sum(base["chunk_tokens"])
    assert base["metric"]["value"] == pytest.approx(sum(base["chunk_nll"]) / base["metric"]["n"])
    # an untrained model over a vocab of V tokens is near uniform: NLL near log V
    assert abs(base["metric"]["value"] - math.log(len(tiny.tokenizer))) < 1.0
    same = nll_delta(base, base)
    assert same.value == 0.0 and same.stderr == 0.0
    with torch.no_grad():  # an "arm" that changed the network
        tiny.model.model.layers[0].mlp.down_proj.weight.mul_(3.0)
    arm = generic_text_nll(tiny.model, tiny.tokenizer, spec).to_json()
    delta = nll_delta(arm, base)
    assert delta.value == pytest.approx(arm["metric"]["value"] - base["metric"]["value"])
    assert delta.value != 0.0 and delta.stderr > 0.0
    other = dict(arm, chunk_tokens=arm["chunk_tokens"][:-1])
    assert nll_delta(other, base) is None  # different chunks cannot be paired


def test_rows_base_reads_zero():
    entry = {"source": "s", "metric": {"value": 2.5, "n": 10, "stderr": 0.1},
             "chunk_nll": [12.0, 13.0], "chunk_tokens": [5, 5]}
    arm = dict(entry, metric={"value": 2.7, "n": 10, "stderr": 0.1}, chunk_nll=[13.0, 14.0])
    common = {"arm_id": "a", "method": "lora"}
    base_rows = {r["metric"]: r for r in nll_rows(common, "t", entry, entry)}
    arm_rows = {r["metric"]: r for r in nll_rows(common, "t", arm, entry)}
    assert base_rows["nll_delta"]["value"] == 0.0 and base_rows["nll"]["value"] == 2.5
    assert arm_rows["nll_delta"]["value"] == pytest.approx(0.2)
    assert arm_rows["nll_delta"]["stderr"] == pytest.approx(0.0, abs=1e-12)  # both chunks moved by 0.2
    assert nll_rows(common, "t", None, entry) == []


def test_shipped_sample_is_real_prose_of_about_ten_thousand_tokens(tiny):
    text, source = read_generic_text(None)
    assert source == SHIPPED_SOURCE and text == shipped_text()
    words = text.split()
    assert len(words) > 5000 and "element" in text.lower()
    assert len(set(text.split("\n\n"))) > 100  # one paragraph per element description / use


def test_bad_user_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="eval.nll.path"):
        read_generic_text(str(tmp_path / "missing.txt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n")
    with pytest.raises(ConfigError, match="empty"):
        read_generic_text(str(empty))


def test_relative_path_resolves_against_the_config(tmp_path):
    config = config_from_dict({"data": {"train": [{"name": "arith_chain"}]}, "eval": {"nll": {"path": "prose.txt"}}})
    assert resolve_paths(config, tmp_path).eval.nll.path == str(tmp_path / "prose.txt")
