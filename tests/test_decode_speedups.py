"""The fast decoder's kernel-level speedups keep what they promise.

- slack cache: the keys and values handed to attention equal ``DynamicLayer``'s bit for bit through
  appends and outside edits, and appends inside the reserved room do not move the buffer;
- packed linear layers: close to ``nn.functional.linear``, each row independent of the others,
  and the layers restored on leaving the block, also after an error.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.cache_utils import DynamicLayer

from rankscope.evaluate import slack_cache
from rankscope.evaluate.packed_linear import packed_linears
from rankscope.evaluate.slack_cache import SlackLayer


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


def test_packed_linears_step_aside_when_memory_is_short(monkeypatch):
    from rankscope.evaluate import packed_linear

    model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 64))
    weight_bytes = 2 * 64 * 64 * 4
    monkeypatch.setattr(packed_linear, "available_memory", lambda: 2 * weight_bytes - 1)
    with packed_linears(model) as switched:
        assert switched == 0
    monkeypatch.setattr(packed_linear, "available_memory", lambda: 2 * weight_bytes)
    with packed_linears(model) as switched:
        assert switched == 2


def test_packed_linears_leave_a_forward_set_by_someone_else_alone():
    """accelerate's device hooks set an instance forward; so does an enclosing packed_linears.
    Such a layer is not switched, and leaving the block keeps that forward in place."""
    model = nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 8))
    hooked = model[1]

    def hook_forward(inputs: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(inputs, hooked.weight, hooked.bias) + 1

    hooked.forward = hook_forward
    with torch.no_grad(), packed_linears(model) as outer:
        assert outer == 1
        packed_first = vars(model[0])["forward"]
        with packed_linears(model) as inner:
            assert inner == 0
        assert vars(model[0])["forward"] is packed_first  # the inner block did not undo the outer one
    assert "forward" not in vars(model[0])
    assert vars(hooked)["forward"] is hook_forward
