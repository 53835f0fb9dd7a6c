"""Arms: identities of LoRA and sft against the base model."""

from __future__ import annotations

import pytest
import torch

from rankscope.config import LoraSpec
from rankscope.errors import ConfigError
from rankscope.models.arms import apply_lora, lora_parameter_count, make_sft_copy, remove_lora, resolve_targets


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture()
def ids():
    return torch.randint(5, 300, (2, 12))


def test_fresh_lora_reproduces_base_logits(tiny, ids):
    before = logits(tiny.model, ids)
    model = apply_lora(tiny.model, LoraSpec(ranks=[4]), rank=4, seed=0)
    torch.testing.assert_close(logits(model, ids), before, rtol=0, atol=0)
    remove_lora(model)


@pytest.mark.parametrize("targets", ["all-linear", "attention", "mlp", ["q_proj", "v_proj"]])
@pytest.mark.parametrize("rank", [1, 4])
def test_trainable_parameter_count(tiny, targets, rank):
    modules = resolve_targets(tiny.model, targets)
    model = apply_lora(tiny.model, LoraSpec(ranks=[rank], targets=targets), rank=rank, seed=0)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == lora_parameter_count(modules, rank) == sum(rank * (m.d_in + m.d_out) for m in modules)
    remove_lora(model)


def test_unload_gives_back_the_untouched_base(tiny, ids):
    before = logits(tiny.model, ids)
    model = apply_lora(tiny.model, LoraSpec(ranks=[2]), rank=2, seed=0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_()
    assert not torch.allclose(logits(model, ids), before)
    base = remove_lora(model)
    torch.testing.assert_close(logits(base, ids), before, rtol=0, atol=0)


def test_merged_and_unmerged_adapter_agree(tiny, ids):
    model = apply_lora(tiny.model, LoraSpec(ranks=[2]), rank=2, seed=0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    unmerged = logits(model, ids)
    merged = model.merge_and_unload()
    torch.testing.assert_close(logits(merged, ids), unmerged, rtol=1e-4, atol=1e-5)


def test_sft_copy_trains_everything_and_leaves_base(tiny):
    copy = make_sft_copy(tiny.model)
    assert all(p.requires_grad for p in copy.parameters())
    with torch.no_grad():
        next(copy.parameters()).add_(1.0)
    assert not torch.equal(next(copy.parameters()), next(tiny.model.parameters()))


def test_unknown_target_names_are_config_errors(tiny):
    with pytest.raises(ConfigError, match="arms.lora.targets"):
        resolve_targets(tiny.model, ["nope_proj"])
