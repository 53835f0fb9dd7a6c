"""The fast decoder's kernel-level speedups keep what they promise.

- screened head: the bound holds for every token (|bfloat16 screen - float32 logit| <= err), so
  the float32 argmax is always a candidate and is what comes out, checked by simulation on heads
  built with near-ties; the full-product fallback gives exactly the plain argmax;
- slack cache: the keys and values handed to attention equal ``DynamicLayer``'s bit for bit through
  appends and outside edits, and appends inside the reserved room do not move the buffer;
- packed linear layers: close to ``nn.functional.linear``, each row independent of the others,
  and the layers restored on leaving the block, also after an error.
"""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_decoder
from torch import nn
from transformers.cache_utils import DynamicLayer

from rankscope.evaluate import screened_head, slack_cache
from rankscope.evaluate.greedy import _GreedyForward
from rankscope.evaluate.packed_linear import packed_linears
from rankscope.evaluate.screened_head import ScreenedHead
from rankscope.evaluate.slack_cache import SlackLayer


def head_with_near_ties(seed: int, vocab: int = 4000, width: int = 96) -> torch.Tensor:
    """A float32 head weight [V, K] where blocks of tokens are near copies of each other."""
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(vocab, width, generator=generator) * 0.05
    twins = torch.randint(0, vocab, (vocab // 4,), generator=generator)
    # a quarter of the tokens copy another's row up to 1e-4 noise: logits that nearly tie
    weight[: vocab // 4] = weight[twins] + 1e-4 * torch.randn(vocab // 4, width, generator=generator)
    return weight


def hidden_states(seed: int, rows: int = 64, width: int = 96) -> torch.Tensor:
    """Rows with norms like a real model's final hidden states (~45 for SmolLM2), outliers included."""
    generator = torch.Generator().manual_seed(seed + 100)
    hidden = torch.randn(rows, width, generator=generator) * 4.5
    hidden[:, 0] *= 10  # one massive channel
    return hidden


@pytest.mark.parametrize("seed", range(4))
def test_screen_error_bound_holds_for_every_token(seed):
    weight, hidden = head_with_near_ties(seed), hidden_states(seed)
    head = ScreenedHead.of_weight(weight)
    hidden_bf16 = hidden.to(torch.bfloat16)
    screen = nn.functional.linear(hidden_bf16, head.weight_bf16).float()  # [b, V]
    reference = nn.functional.linear(hidden, weight)  # [b, V]
    error = head.error_bound(hidden, hidden_bf16)
    assert (screen - reference).abs().le(error).all()
    assert (screen - reference).abs().max() > 1e-3, "the screen alone is too coarse to pick the token"


@pytest.mark.parametrize("seed", range(4))
def test_screened_argmax_is_the_float32_argmax(seed):
    weight, hidden = head_with_near_ties(seed), hidden_states(seed)
    reference = nn.functional.linear(hidden, weight)  # [b, V]
    chosen = ScreenedHead.of_weight(weight).argmax(hidden)
    top2 = reference.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1]) > 1e-4
    assert clear.sum() >= hidden.shape[0] // 2
    assert torch.equal(chosen[clear], reference.argmax(dim=1)[clear])
    # a near-tie may go either way, but only to a token within the tie
    picked = reference.gather(1, chosen[:, None]).squeeze(1)
    assert (top2[:, 0] - picked).le(1e-4).all()


def test_too_many_candidates_fall_back_to_the_full_float32_product(monkeypatch):
    monkeypatch.setattr(screened_head, "MAX_CANDIDATES_PER_ROW", 0)
    weight, hidden = head_with_near_ties(0), hidden_states(0)
    assert torch.equal(ScreenedHead.of_weight(weight).argmax(hidden),
                       nn.functional.linear(hidden, weight).argmax(dim=1))


def test_the_screen_applies_to_plain_float32_heads_only():
    class WithHead(nn.Module):
        def __init__(self, head: nn.Module) -> None:
            super().__init__()
            self.head = head

        def get_output_embeddings(self) -> nn.Module:
            return self.head

    assert ScreenedHead.of(WithHead(nn.Linear(8, 20, bias=True))) is None
    assert ScreenedHead.of(WithHead(nn.Linear(8, 20, bias=False).to(torch.bfloat16))) is None
    assert ScreenedHead.of(WithHead(nn.Sequential(nn.Linear(8, 20, bias=False)))) is None
    plain = ScreenedHead.of(WithHead(nn.Linear(8, 20, bias=False)))
    assert (plain is not None) == screened_head.fast_bfloat16(torch.device("cpu"))


def test_the_decoder_of_a_tiny_model_uses_the_screen_where_bfloat16_is_fast():
    """Otherwise the generation tests would check only the plain head."""
    forward = _GreedyForward(tiny_decoder("llama", 97), screen=True)
    assert (forward.decoder is not None) == screened_head.fast_bfloat16(torch.device("cpu"))
    assert _GreedyForward(tiny_decoder("llama", 97), screen=False).decoder is None


def grow(layers: list, generator: torch.Generator, rows: int, new: int) -> None:
    """Append the same random columns ([rows, 2, new, 4]) to every layer and check they return the same."""
    keys, values = torch.randn(rows, 2, new, 4, generator=generator), torch.randn(rows, 2, new, 4, generator=generator)
    returned = [layer.update(keys, values) for layer in layers]
    for k, v in returned[1:]:
        assert torch.equal(k, returned[0][0]) and torch.equal(v, returned[0][1])


def test_slack_layer_equals_dynamic_layer_through_appends_and_edits():
    generator = torch.Generator().manual_seed(0)
    plain = DynamicLayer()
    grow([plain], generator, rows=3, new=5)
    slack = SlackLayer.replacing(plain, slack=4)
    plain_copy = DynamicLayer()
    plain_copy.update(plain.keys.clone(), plain.values.clone())
    layers = [plain_copy, slack]
    for new in (1, 1, 3, 1, 1, 1, 2):  # room of 4, then reallocations
        grow(layers, generator, rows=3, new=new)
    for layer in layers:  # outside edits, as the decoder makes them: drop a row, then insert empty columns
        layer.reorder_cache(torch.tensor([0, 2]))
        layer.keys = torch.cat([layer.keys[:, :, :2], layer.keys.new_zeros(2, 2, 3, 4), layer.keys[:, :, 2:]], dim=2)
        layer.values = torch.cat([layer.values[:, :, :2], layer.values.new_zeros(2, 2, 3, 4),
                                  layer.values[:, :, 2:]], dim=2)
    for new in (1, 1, 1):
        grow(layers, generator, rows=2, new=new)
    assert slack.keys.shape == plain_copy.keys.shape == (2, 2, 5 + 10 + 3 + 3, 4)


def test_slack_layer_appends_in_place_within_its_room():
    generator = torch.Generator().manual_seed(1)
    layer = DynamicLayer()
    grow([layer], generator, rows=2, new=6)
    slack = SlackLayer.replacing(layer, slack=5)
    grow([slack], generator, rows=2, new=1)  # moves into a buffer with room for 5 more
    buffer = slack.keys.data_ptr()
    for _ in range(5):
        grow([slack], generator, rows=2, new=1)
        assert slack.keys.data_ptr() == buffer
    grow([slack], generator, rows=2, new=1)  # the room is used up: a new buffer
    assert slack.keys.data_ptr() != buffer
    assert slack.keys.shape[2] == 6 + 7


def test_packed_linears_compute_the_product_row_by_row():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48), nn.Linear(48, 32, bias=False))
    inputs = torch.randn(5, 3, 64)  # [b, q, in]
    with torch.no_grad():
        expected = model(inputs)
        with packed_linears(model) as switched:
            packed = model(inputs)
            alone = model(inputs[2:3])
    assert switched == 2
    assert packed.shape == expected.shape
    torch.testing.assert_close(packed, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(alone, packed[2:3])  # a row's result does not depend on the rows beside it


def test_packed_linears_are_restored_also_after_an_error():
    model = nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 8).to(torch.bfloat16))
    inputs = torch.randn(2, 16)
    with pytest.raises(RuntimeError, match="inside"):
        with packed_linears(model) as switched:
            assert switched == 1  # the bfloat16 layer is left alone
            raise RuntimeError("inside")
    assert all("forward" not in vars(module) for module in model.modules())
    assert torch.equal(model[0](inputs), nn.functional.linear(inputs, model[0].weight, model[0].bias))


def test_packed_linears_compute_as_before_where_gradients_are_needed():
    layer = nn.Linear(16, 8)
    inputs = torch.randn(4, 16)
    with packed_linears(layer):
        out = layer(inputs)
    assert out.requires_grad
    assert torch.equal(out, nn.functional.linear(inputs, layer.weight, layer.bias))


def test_use_slack_layers_reads_the_room_when_called(monkeypatch):
    monkeypatch.setattr(slack_cache, "SLACK", 3)

    class Cache:
        layers = [DynamicLayer()]

    cache = Cache()
    slack_cache.use_slack_layers(cache)
    assert type(cache.layers[0]) is SlackLayer and cache.layers[0].slack == 3
