"""Identities of the attention statistics (rankscope.analysis.attention)."""

from __future__ import annotations

import math

import pytest
import torch

from rankscope.analysis.attention import (
    attention_entropy,
    attention_structure,
    js_divergence,
    mean_attention_distance,
    mean_attention_map,
    row_entropy,
    row_js_divergence,
)


def _causal_uniform(b, h, n):
    tril = torch.tril(torch.ones(n, n))
    return (tril / tril.sum(-1, keepdim=True)).expand(b, h, n, n).clone()


def _random_causal(b, h, n, seed=0):
    logits = torch.randn(b, h, n, n, generator=torch.Generator().manual_seed(seed))
    logits = logits.masked_fill(~torch.tril(torch.ones(n, n, dtype=torch.bool)), float("-inf"))
    return logits.softmax(-1)


def test_uniform_attention_over_n_keys_has_entropy_log_n():
    for n in (1, 2, 7, 64):
        assert float(row_entropy(torch.full((n,), 1.0 / n))) == pytest.approx(math.log(n))
    n = 9
    full = torch.full((2, 3, n, n), 1.0 / n)
    torch.testing.assert_close(attention_entropy(full, causal=False), torch.full((3,), math.log(n), dtype=torch.float64))
    # causal uniform: query i attends uniformly to i + 1 keys -> mean of log(i + 1)
    expected = sum(math.log(i + 1) for i in range(n)) / n
    torch.testing.assert_close(attention_entropy(_causal_uniform(2, 3, n)), torch.full((3,), expected, dtype=torch.float64))


def test_one_hot_attention_has_entropy_zero_and_known_distance():
    n = 6
    first = torch.zeros(1, 2, n, n)
    first[..., 0] = 1.0  # every query attends to the first token
    assert torch.all(attention_entropy(first) == 0)
    # distance |i - 0| averaged over queries
    torch.testing.assert_close(mean_attention_distance(first), torch.full((2,), (n - 1) / 2, dtype=torch.float64))
    diag = torch.eye(n).expand(1, 2, n, n)  # attend to self
    assert torch.all(attention_entropy(diag) == 0)
    assert torch.all(mean_attention_distance(diag) == 0)


def test_first_query_has_entropy_zero():
    attn = _random_causal(1, 1, 5)
    assert float(row_entropy(attn[0, 0, 0])) == 0.0


def test_js_divergence_identities():
    attn = _random_causal(2, 4, 8, seed=1)
    assert torch.all(js_divergence(attn, attn) == 0)
    other = _random_causal(2, 4, 8, seed=2)
    js = js_divergence(attn, other)
    assert torch.all(js > 0) and torch.all(js <= math.log(2))
    torch.testing.assert_close(js, js_divergence(other, attn))
    # disjoint supports: exactly log 2
    p, q = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert float(row_js_divergence(p, q)) == pytest.approx(math.log(2))


def test_padding_is_ignored():
    n, pad = 8, 3
    attn = _random_causal(1, 2, n, seed=3)
    mask = torch.ones(1, n, dtype=torch.long)
    mask[0, n - pad :] = 0
    real = attn[:, :, : n - pad, : n - pad]
    garbage = attn.clone()
    garbage[:, :, n - pad :, :] = torch.rand(1, 2, pad, n)  # padded query rows: anything
    torch.testing.assert_close(attention_entropy(garbage, mask), attention_entropy(real))
    torch.testing.assert_close(mean_attention_distance(garbage, mask), mean_attention_distance(real))
    assert torch.all(attention_entropy(garbage, mask) <= math.log(n - pad))


def test_attention_structure_rows_and_maps():
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    base = [_random_causal(2, 3, 6, seed=s) for s in (0, 1)]
    arm = [_random_causal(2, 3, 6, seed=s) for s in (2, 3)]
    rows, maps = attention_structure("a1", base, arm, mask, map_max_len=64)
    assert len(rows) == 2 * 3 * 4
    assert {r.metric for r in rows} == {"entropy", "distance", "entropy_change", "js_divergence"}
    assert sorted(maps) == ["a1/0", "a1/1"]
    assert maps["a1/0"].shape == (3, 4, 4)  # cropped to the shortest real length
    torch.testing.assert_close(torch.from_numpy(maps["a1/0"]).sum(-1), torch.ones(3, 4))
    same_rows, _ = attention_structure("b", base, base, mask)
    assert all(r.value == 0.0 for r in same_rows if r.metric in ("entropy_change", "js_divergence"))
    only_arm, _ = attention_structure("c", None, arm, mask)
    assert {r.metric for r in only_arm} == {"entropy", "distance"}
    assert mean_attention_map(arm[0], mask, max_len=2).shape == (3, 2, 2)


def test_attention_structure_agrees_with_the_public_statistics():
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0, 0]])
    base, arm = [_random_causal(2, 3, 7, seed=4)], [_random_causal(2, 3, 7, seed=5)]
    rows, _ = attention_structure("a", base, arm, mask)
    got = {(r.metric, r.head): r.value for r in rows}
    expected = {
        "entropy": attention_entropy(arm[0], mask),
        "distance": mean_attention_distance(arm[0], mask),
        "entropy_change": attention_entropy(arm[0], mask) - attention_entropy(base[0], mask),
        "js_divergence": js_divergence(arm[0], base[0], mask),
    }
    for metric, values in expected.items():
        for head, value in enumerate(values.tolist()):
            assert got[(metric, head)] == pytest.approx(value, abs=1e-12)
