"""Many adapters, one base model in memory: peft's multi-adapter API (``load_adapter`` /
``set_adapter`` / ``delete_adapter``) swaps LoRA factors on a single resident base.

Why: scoring k adapters by loading the model k times costs k model loads (for a 7B model, minutes
each, and a second copy's memory while the old one is freed); an adapter is a few MB. The swap
keeps exactly one adapter loaded besides the active one's predecessor for an instant, so memory is
the base plus one adapter. ``bench/multi_adapter.py`` measures it against reloading per adapter.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn


class AdapterSwap:
    """Wraps ``base`` with peft on the first adapter, then swaps: load the next adapter under its own
    name, make it active, delete the previous one. :meth:`close` hands back the unchanged base."""

    def __init__(self, base: nn.Module):
        self.base = base
        self.model = None  # the PeftModel around ``base`` once an adapter is loaded
        self.active: str | None = None
        self._count = 0

    def activate(self, path: str | Path, name: str | None = None) -> nn.Module:
        """Load the adapter folder ``path`` and make it the only active one; returns the peft model.
        ``name``: peft's adapter name (no '.': it keys a ModuleDict); default a counter."""
        from peft import PeftModel

        self._count += 1
        name = (name or f"adapter_{self._count}").replace(".", "_")
        if self.model is None:
            self.model = PeftModel.from_pretrained(self.base, str(path), adapter_name=name, is_trainable=False)
        else:
            previous = self.active
            self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            self.model.set_adapter(name)
            if previous is not None and previous != name:
                self.model.delete_adapter(previous)  # memory stays base + one adapter
        self.active = name
        self.model.eval()
        return self.model

    def close(self) -> nn.Module:
        """Remove every adapter; the base model comes back with its own weights untouched."""
        if self.model is None:
            return self.base
        base = self.model.unload()
        self.model = None
        self.active = None
        base.eval()
        return base


def evaluate_adapters(base: nn.Module, tokenizer, adapters: dict[str, str | Path], datasets: dict, spec,
                      ) -> dict[str, tuple[dict, dict[str, list[dict]]]]:
    """Score every adapter (name -> folder) on ``datasets`` with one base in memory; returns
    name -> (eval.json payload, per-item rows). The base is returned unchanged afterwards."""
    from rankscope.evaluate.suite import evaluate_model

    swap = AdapterSwap(base)
    out: dict[str, tuple[dict, dict[str, list[dict]]]] = {}
    try:
        for name, path in adapters.items():
            model = swap.activate(path, name)
            items: dict[str, list[dict]] = {}
            out[name] = (evaluate_model(model, tokenizer, datasets, spec, items), items)
    finally:
        swap.close()
    return out
