"""A growing key/value cache layer that writes each new token in place instead of copying the cache.

transformers' ``DynamicLayer`` appends a decoding step's keys and values with ``torch.cat``, which
copies the whole cache of the layer on every step: for 16 rows of 350 tokens on SmolLM2-135M that
is 30 layers x 2 x 4 MB per new token, half the memory traffic of reading the weights. A
``SlackLayer`` keeps its keys and values in a buffer with room for ``slack`` more columns and
hands the model views of the filled part; a step writes one column. When the room runs out the
buffer is reallocated with new room, one copy every ``slack`` steps instead of one every step.

The greedy decoder (rankscope.evaluate.greedy) edits caches from outside: it drops finished rows,
inserts empty columns for joining rows and drops unused columns, each by assigning new tensors to
``keys`` and ``values``. A layer notices that its tensors are no longer views of its buffer and
moves them into a new buffer on the next step; between edits, steps write in place.

The model sees the same keys and values in the same order as with ``DynamicLayer`` (views with
the buffer's strides instead of contiguous tensors), so attention computes the same numbers.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

SLACK = 64  # columns reserved per reallocation: one copy per 64 decoding steps


class SlackLayer(DynamicLayer):
    """``DynamicLayer`` with reserved room along the sequence axis; ``keys``/``values`` are views."""

    def __init__(self, slack: int = SLACK) -> None:
        super().__init__()
        self.slack = slack
        self._key_buffer: torch.Tensor | None = None  # [b, h, capacity, d]
        self._value_buffer: torch.Tensor | None = None

    @classmethod
    def replacing(cls, layer: DynamicLayer, slack: int = SLACK) -> SlackLayer:
        """A slack layer holding ``layer``'s keys and values (moved into a buffer on its first update)."""
        new = cls(slack)
        new.keys, new.values, new.is_initialized = layer.keys, layer.values, layer.is_initialized
        if layer.is_initialized:
            new.dtype, new.device = layer.dtype, layer.device
        return new

    def _holds_views(self) -> bool:
        """Whether ``keys``/``values`` are still the views this layer handed out (no edit since)."""
        return (self._key_buffer is not None and self.keys is not None
                and self.keys.data_ptr() == self._key_buffer.data_ptr()
                and self.values.data_ptr() == self._value_buffer.data_ptr()
                and self.keys.shape[:2] == self._key_buffer.shape[:2]
                and self.keys.stride() == self._key_buffer.stride())

    def _rebuffer(self, needed: int) -> None:
        """Move ``keys``/``values`` into new buffers with room for ``needed`` more columns plus the slack."""
        length = self.keys.shape[-2]

        def buffer(states: torch.Tensor) -> torch.Tensor:  # [b, h, n, d] -> [b, h, n + needed + slack, d]
            room = states.new_empty((*states.shape[:2], length + needed + self.slack, states.shape[3]))
            room[:, :, :length] = states
            return room

        self._key_buffer, self._value_buffer = buffer(self.keys), buffer(self.values)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new columns ([b, h, q, d]) after the cached ones and return views of all of them."""
        if not self.is_initialized or self.keys is None or self.keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)  # the first tokens: nothing to keep
        length, new = self.keys.shape[-2], key_states.shape[-2]
        if not self._holds_views() or length + new > self._key_buffer.shape[2]:
            self._rebuffer(new)
        self._key_buffer[:, :, length:length + new] = key_states
        self._value_buffer[:, :, length:length + new] = value_states
        self.keys = self._key_buffer[:, :, :length + new]  # [b, h, n + q, d]
        self.values = self._value_buffer[:, :, :length + new]
        return self.keys, self.values


def use_slack_layers(cache) -> None:
    """Replace every plain ``DynamicLayer`` of ``cache`` by a ``SlackLayer`` holding the same tensors."""
    cache.layers = [SlackLayer.replacing(layer, SLACK) if type(layer) is DynamicLayer else layer
                    for layer in cache.layers]
