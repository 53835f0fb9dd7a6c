"""The hooked probe pass: chunked attention statistics equal the materialized ones, and the
attention maps alive at once do not grow with the number of layers (tensor sizes, not time)."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from rankscope.analysis.attention import attention_structure, collect_attentions  # noqa: E402
from rankscope.analysis.probe_pass import (  # noqa: E402
    analyze_probes,
    attention_modules,
    query_weights,
    reference_pass,
    run_probe_pass,
)
from rankscope.analysis.probes import Probes  # noqa: E402
from rankscope.analysis.representation import TokenMask, collect_hidden_states  # noqa: E402

HEADS = 4


def tiny_llama(layers: int, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                      num_attention_heads=HEADS, num_key_value_heads=2, vocab_size=96,
                                      max_position_embeddings=64)
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def probes() -> Probes:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 96, (5, 12), generator=g)
    mask = torch.ones(5, 12, dtype=torch.long)
    mask[1, 9:] = 0
    mask[3, 6:] = 0
    content = (torch.rand(5, 12, generator=g) > 0.3).long() * mask
    return Probes(ids.masked_fill(mask == 0, 0), mask, content)


def test_chunked_hooked_statistics_equal_the_unchunked_materialized_ones(probes):
    base, arm = tiny_llama(3, seed=0), tiny_llama(3, seed=0)
    with torch.no_grad():
        for p in arm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hidden, base_attn, mask, _ = reference_pass(base, probes, batch_size=2)
    got = analyze_probes("a", arm, probes, hidden, base_attn, mask, batch_size=2, head_chunk=1, query_chunk=5,
                         map_max_len=8)
    # reference: every layer's attention materialized at once, all heads and queries together
    arm_attn = collect_attentions(arm, probes.input_ids, probes.attention_mask)
    full_base = collect_attentions(base, probes.input_ids, probes.attention_mask)
    for stored, full in zip(base_attn, full_base):
        torch.testing.assert_close(stored, full)
    rows, maps = attention_structure("a", full_base, arm_attn, probes.attention_mask, map_max_len=8,
                                     query_weights=query_weights(probes, mask)[:-1])
    expected = {(r.layer, r.head, r.metric): r.value for r in rows}
    actual = {(r.layer, r.head, r.metric): r.value for r in got.attention}
    assert expected.keys() == actual.keys() and len(actual) == 3 * HEADS * 4
    for key, value in expected.items():
        assert actual[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert any(actual[(0, h, "js_divergence")] > 1e-6 for h in range(HEADS))  # the arm really changed
    assert maps.keys() == got.attention_maps.keys()
    for key in maps:
        assert got.attention_maps[key].shape == (HEADS, 6, 6)  # bounded by the shortest probe / map_max_len
        torch.testing.assert_close(torch.from_numpy(got.attention_maps[key]), torch.from_numpy(maps[key]))
    # hidden states of the hooked pass are those of a plain forward
    for a, b in zip(hidden, collect_hidden_states(base, probes.input_ids, probes.attention_mask)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_template_and_sink_queries_are_left_out(probes):
    model = tiny_llama(2)
    hidden, base_attn, mask, _ = reference_pass(model, probes)
    n_real = int(probes.attention_mask.sum())
    assert mask.template == n_real - int(probes.content().sum())
    first_content = int(probes.content()[:, 0].sum())  # first tokens that were content: sinks
    assert all(s >= first_content for s in mask.sink)
    weights = query_weights(probes, mask)
    assert all(float(w[~probes.content()].sum()) == 0.0 for w in weights)  # no template query
    assert all(float(w[:, 0].sum()) == 0.0 for w in weights)  # no first-token query
    # the masked statistics differ from the all-query ones: the mask is applied, not ignored
    everything = TokenMask.everything(n_real, len(hidden))
    masked = analyze_probes("m", model, probes, hidden, base_attn, mask)
    unmasked = analyze_probes("u", model, probes, hidden, base_attn, everything)
    m = [r.value for r in masked.attention if r.metric == "entropy"]
    u = [r.value for r in unmasked.attention if r.metric == "entropy"]
    assert m != pytest.approx(u)
    counts = {(r.layer, r.metric): r.value for r in masked.representation}
    assert counts[(0, "masked_template")] == mask.template
    assert counts[(1, "cka_tokens")] == float(mask.keep[1].sum())


@pytest.mark.parametrize("batch_size", [None, 2])
def test_attention_alive_at_once_does_not_grow_with_depth(probes, batch_size):
    b = batch_size or probes.input_ids.shape[0]
    n = probes.input_ids.shape[1]
    one_layer = b * HEADS * n * n * 4  # float32 [b, heads, n, n]
    peaks = {}
    for layers in (2, 6):
        model = tiny_llama(layers)
        assert len(attention_modules(model)) == layers
        _, stats = run_probe_pass(model, probes, lambda *args: None, batch_size=batch_size)
        assert stats.attention_calls == layers * -(-probes.input_ids.shape[0] // b)
        peaks[layers] = stats.peak_attention_bytes
        # the former path (output_attentions) holds every layer's map at once
        held = collect_attentions(model, probes.input_ids, probes.attention_mask, batch_size=batch_size)
        assert sum(a.numel() * a.element_size() for a in held) == layers * probes.input_ids.shape[0] * HEADS * n * n * 4
    assert peaks[2] == peaks[6] == one_layer
