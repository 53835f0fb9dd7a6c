"""End-to-end analysis on a tiny locally built Llama: base, LoRA (peft) and sft-style arms."""

from __future__ import annotations

import copy
import math

import pytest
import torch

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")

from rankscope.analysis import ArmAnalysis, BaseReference, Probes, analyze_arm  # noqa: E402
from rankscope.analysis.attention import attn_implementation, collect_attentions, eager_attention  # noqa: E402
from rankscope.analysis.representation import collect_hidden_states  # noqa: E402
from rankscope.analysis.spectral import block_linear_modules  # noqa: E402
from rankscope.analysis.weight_spectra import weight_update_spectra  # noqa: E402
from rankscope.runstore.analysis_files import read_representation, read_spectral, write_arm_analysis  # noqa: E402

N_LAYERS, N_HEADS, N_MODULES = 2, 4, 7  # q k v o gate up down


def tiny_llama(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=N_HEADS,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=64,
    )
    return transformers.LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def probes() -> Probes:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 128, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 7:] = 0  # right padding
    mask[2, 5:] = 0
    return Probes(ids.masked_fill(mask == 0, 0), mask)


@pytest.fixture(scope="module")
def base_and_reference(probes):
    model = tiny_llama()
    return model, BaseReference.compute(model, probes)


def _values(analysis: ArmAnalysis, table: str, metric: str) -> list[float]:
    return [r.value for r in getattr(analysis, table) if r.metric == metric]


def test_base_arm_is_identity(base_and_reference, probes):
    model, ref = base_and_reference
    result = analyze_arm("base", model, ref, probes)
    assert result.method == "dense"
    cka = _values(result, "representation", "cka")
    assert len(cka) == N_LAYERS + 1 and all(v == 1.0 for v in cka)  # exactly 1, every layer
    modules = {(r.layer, r.module) for r in result.spectral}
    assert len(modules) == N_LAYERS * N_MODULES
    for metric in ("frobenius_norm", "spectral_norm", "numerical_rank", "stable_rank", "effective_rank", "intruder_dimensions"):
        assert all(v == 0.0 for v in _values(result, "spectral", metric)), metric
    assert all(v == 1.0 for v in _values(result, "spectral", "alignment_mean_cos"))
    assert all(v == 0.0 for v in _values(result, "attention", "entropy_change"))
    assert all(v == 0.0 for v in _values(result, "attention", "js_divergence"))
    # entropy within [0, log n] for n = longest probe
    entropy = _values(result, "attention", "entropy")
    assert len(entropy) == N_LAYERS * N_HEADS
    assert all(0.0 <= v <= math.log(probes.input_ids.shape[1]) for v in entropy)
    assert all(math.isfinite(r.value) for r in result.spectral + result.representation + result.attention)
    assert sorted(result.attention_maps) == [f"base/{i}" for i in range(N_LAYERS)]
    assert result.attention_maps["base/0"].shape == (N_HEADS, 5, 5)  # shortest probe has 5 tokens


def test_hidden_states_drop_padding_and_include_embeddings(base_and_reference, probes):
    model, ref = base_and_reference
    states = collect_hidden_states(model, probes.input_ids, probes.attention_mask)
    assert len(states) == N_LAYERS + 1
    assert states[0].shape == (int(probes.attention_mask.sum()), 64)
    torch.testing.assert_close(states[0], model.get_input_embeddings()(probes.input_ids)[probes.attention_mask.bool()])
    # chunked forward gives the same result
    chunked = collect_hidden_states(model, probes.input_ids, probes.attention_mask, batch_size=1)
    for a, b in zip(states, chunked):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_eager_switch_is_restored(probes):
    model = tiny_llama()
    before = attn_implementation(model)
    assert before != "eager"  # sdpa by default: the switch really happens
    attn = collect_attentions(model, probes.input_ids, probes.attention_mask)
    assert attn_implementation(model) == before
    assert len(attn) == N_LAYERS and attn[0].shape == (3, N_HEADS, 10, 10)
    torch.testing.assert_close(attn[0][0].sum(-1), torch.ones(N_HEADS, 10))
    with pytest.raises(RuntimeError):
        with eager_attention(model):
            assert attn_implementation(model) == "eager"
            raise RuntimeError("boom")
    assert attn_implementation(model) == before
    # through a peft wrapper as well
    wrapped = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=2, target_modules=["q_proj"]))
    before = attn_implementation(wrapped)
    collect_attentions(wrapped, probes.input_ids, probes.attention_mask)
    assert attn_implementation(wrapped) == before != "eager"


def test_lora_arm_rank_at_most_r(base_and_reference, probes, tmp_path):
    _, ref = base_and_reference
    model = tiny_llama()  # same seed -> same weights as the reference's base model
    r = 4
    lora = peft.get_peft_model(model, peft.LoraConfig(r=r, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    torch.manual_seed(1)
    for module in lora.modules():
        if hasattr(module, "lora_B") and "default" in getattr(module, "lora_B", {}):
            torch.nn.init.normal_(module.lora_B["default"].weight, std=0.02)  # nonzero B
    result = analyze_arm("lora-r4", lora, ref, probes)
    assert result.method == "lora"
    ranks = _values(result, "spectral", "numerical_rank")
    assert len(ranks) == N_LAYERS * N_MODULES
    assert all(v <= r for v in ranks) and all(v == r for v in ranks)  # random factors: exactly r
    assert all(v.shape == (r,) for v in result.singular_values.values())
    cka = _values(result, "representation", "cka")
    assert cka[0] == 1.0  # embeddings untouched by all-linear LoRA
    assert all(0.0 <= v <= 1.0 for v in cka) and min(cka[1:]) < 1.0
    assert any(v > 0 for v in _values(result, "attention", "js_divergence"))
    # the factor path agrees with the dense difference of the merged model
    merged = copy.deepcopy(lora).merge_and_unload()
    dense = weight_update_spectra("merged", merged, ref.weights, intruders=False)
    fast = {(r_.layer, r_.module): r_.value for r_ in result.spectral if r_.metric == "frobenius_norm"}
    for row in dense.rows:
        if row.metric == "frobenius_norm":
            assert row.value == pytest.approx(fast[(row.layer, row.module)], rel=1e-3)
    # the base reference's cached W_0 SVDs are keyed like the LoRA modules and give the same answer
    uncached = weight_update_spectra("lora-r4", lora, None)
    cached_align = _values(result, "spectral", "alignment_mean_cos")
    assert cached_align == pytest.approx([r_.value for r_ in uncached.rows if r_.metric == "alignment_mean_cos"], abs=1e-5)
    assert {name for name, _ in block_linear_modules(model)} == set(ref.weights.modules)
    assert all(ref.weights.get(name).left_vectors is not None for name in ref.weights.modules)
    write_arm_analysis(tmp_path, result)
    assert len(read_spectral(tmp_path)) == len(result.spectral)


def test_lora_with_zero_B_is_a_zero_update(base_and_reference, probes):
    _, ref = base_and_reference
    lora = peft.get_peft_model(tiny_llama(), peft.LoraConfig(r=4, target_modules="all-linear"))
    result = analyze_arm("lora-init", lora, ref, probes)
    assert all(v == 0.0 for v in _values(result, "spectral", "numerical_rank"))
    assert all(v == 0.0 for v in _values(result, "spectral", "intruder_dimensions"))
    assert all(v == pytest.approx(1.0) for v in _values(result, "representation", "cka"))


def test_sft_style_perturbation_gives_full_rank_updates(base_and_reference, probes, tmp_path):
    _, ref = base_and_reference
    model = tiny_llama()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".layers." in name and param.ndim == 2:
                param.add_(0.01 * torch.randn(param.shape, generator=g))
    result = analyze_arm("sft", model, ref, probes)
    assert result.method == "dense"
    for row in result.spectral:
        if row.metric == "numerical_rank":
            full = min(result.singular_values[f"sft/{row.layer}/{row.module}"].shape[0], 64)
            assert row.value == full
    assert all(v < 1.0 for v in _values(result, "representation", "cka")[1:])
    write_arm_analysis(tmp_path, result)
    write_arm_analysis(tmp_path, result)  # rerun: no duplicates
    assert len(read_representation(tmp_path)) == len(result.representation)


def test_probes_must_match_reference(base_and_reference, probes):
    model, ref = base_and_reference
    other = Probes(probes.input_ids.flip(0), probes.attention_mask.flip(0))
    with pytest.raises(ValueError, match="probes differ"):
        analyze_arm("base", model, ref, other)
    assert analyze_arm("base", model, ref, probes, {"enabled": False}).spectral == []
    # dict / BatchEncoding style probes are accepted
    as_dict = {"input_ids": probes.input_ids, "attention_mask": probes.attention_mask}
    assert analyze_arm("base", model, ref, as_dict, {"intruders": False}).representation


def test_sft_without_base_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="base_weights"):
        weight_update_spectra("sft", tiny_llama(), None)


def test_thread_limit_is_restored():
    from rankscope.analysis.pipeline import AnalysisOptions, torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert AnalysisOptions.of({"spectral_threads": None, "energy_ks": [1, 4]}) == AnalysisOptions(spectral_threads=None, energy_ks=(1, 4))


def test_mismatched_base_weights_is_a_clear_error():
    with pytest.raises(ValueError, match="none of the model's block projections"):
        weight_update_spectra("sft", tiny_llama(), {"something.else.weight": torch.zeros(2, 2)})
