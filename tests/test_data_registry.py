"""load_dataset: source resolution, seeded sampling, splitting, and clear errors."""

from __future__ import annotations

import json

import pytest

from rankscope.config import DatasetSpec
from rankscope.data import list_datasets, load_dataset, sample_examples, split_train_test
from rankscope.data.registry import BUILTINS, get_entry, resolve_source
from rankscope.data.types import Example
from rankscope.errors import DatasetError


def _examples(n: int) -> list[Example]:
    return [Example(question=f"question {i}", answer=str(i), uid=f"u{i}") for i in range(n)]


def test_catalogue_lists_builtins_and_benchmarks():
    entries = {e.name: e for e in list_datasets()}
    reasoning = [e for e in entries.values() if e.source == "builtin" and e.kind == "reasoning"]
    recall = [e for e in entries.values() if e.source == "builtin" and e.kind == "recall"]
    assert len(reasoning) >= 3 and len(recall) >= 3
    assert entries["arith_chain"].size == 2500 and entries["arith_chain"].answer_type == "number"
    for name in ("gsm8k", "mathqa", "mmlu", "medmcqa", "arc_easy", "arc_challenge", "triviaqa", "nq_open",
                 "commonsense_qa"):
        assert entries[name].source == "benchmark" and entries[name].size is None and entries[name].notes
    assert json.loads(json.dumps(entries["capitals"].to_json()))["size"] == entries["capitals"].size


def test_unknown_name_lists_known_names():
    with pytest.raises(DatasetError) as info:
        load_dataset(DatasetSpec(name="gsm9k"))
    message = str(info.value)
    assert "gsm9k" in message and "arith_chain" in message and "gsm8k" in message
    with pytest.raises(DatasetError, match="arith_chain"):
        get_entry("nope")


@pytest.mark.parametrize(("spec", "source"), [
    (DatasetSpec(name="arith_chain"), "builtin"),
    (DatasetSpec(name="gsm8k"), "hub"),
    (DatasetSpec(name="gsm8k", path="x.jsonl"), "file"),
    (DatasetSpec(name="mine", path="x.jsonl"), "file"),
])
def test_source_is_inferred(spec, source):
    assert resolve_source(spec) == source


@pytest.mark.parametrize(("spec", "match"), [
    (DatasetSpec(name="arith_chain", source="builtin", path="x.jsonl"), "take no path"),
    (DatasetSpec(name="mine", source="builtin"), "not a builtin"),
    (DatasetSpec(name="mine", source="hub"), "not a known benchmark"),
    (DatasetSpec(name="mine", source="file"), "needs a path"),
    (DatasetSpec(name="arith_chain", split="train"), "split"),
    (DatasetSpec(name="arith_chain", format="mc"), "is generative"),
    (DatasetSpec(name="gsm8k", subjects=["x"], path="/nonexistent"), "no subjects"),
])
def test_inconsistent_specs_are_clear_errors(spec, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset(spec)


def test_builtin_sampling_is_seeded_and_stable():
    spec = DatasetSpec(name="arith_chain", n_train=64, n_test=32)
    a, b, c = load_dataset(spec, seed=0), load_dataset(spec, seed=0), load_dataset(spec, seed=1)
    assert a == b
    assert a.train != c.train and a.test != c.test
    assert len(a.train) == 64 and len(a.test) == 32
    full = load_dataset(DatasetSpec(name="arith_chain"))
    # kept in the generated order: a sample is a subsequence of the full split
    positions = [full.train.index(e) for e in a.train]
    assert positions == sorted(positions)
    assert not {e.question for e in a.train} & {e.question for e in full.test}


def test_test_seed_keeps_one_test_sample_across_training_seeds():
    spec = DatasetSpec(name="arith_chain", n_train=16, n_test=16)
    a, b = load_dataset(spec, seed=0, test_seed=0), load_dataset(spec, seed=1, test_seed=0)
    assert a.test == b.test and a.train != b.train


def test_builtin_sizes_above_default_are_generated():
    data = load_dataset(DatasetSpec(name="unit_conv", n_train=2500, n_test=600))
    assert len(data.train) == 2500 and len(data.test) == 600


def test_sample_nested_and_order_independent():
    rows = _examples(100)
    small, large = sample_examples(rows, 10, seed=3), sample_examples(rows, 40, seed=3)
    assert set(small) <= set(large)
    assert sample_examples(list(reversed(rows)), 10, seed=3) == list(reversed(small))
    assert sample_examples(rows, None, seed=3) == rows


def test_sample_more_than_available_warns():
    with pytest.warns(UserWarning, match="only 5 exist"):
        assert len(sample_examples(_examples(5), 9, seed=0, where="x: n_test")) == 5


def test_split_train_test_disjoint_deterministic_and_grouped():
    rows = _examples(50) + [Example(question="question 7", answer="7", uid="dup")]
    train, test = split_train_test(rows, 0.2, seed=0)
    assert (train, test) == split_train_test(rows, 0.2, seed=0)
    assert len(train) + len(test) == len(rows)
    assert not {e.question for e in train} & {e.question for e in test}
    assert len({e.question for e in test}) == 10


def test_recall_builtin_is_eval_only_unless_training():
    data = load_dataset(DatasetSpec(name="capitals"))
    assert data.train == [] and len(data.test) > 150
    assert data.info.kind == "recall" and data.info.format == "mc"
    trained = load_dataset(DatasetSpec(name="capitals"), for_training=True)
    assert trained.train and trained.test
    assert not {e.question for e in trained.train} & {e.question for e in trained.test}


def test_every_builtin_loads_with_valid_rows():
    for name in BUILTINS:
        data = load_dataset(DatasetSpec(name=name, n_test=20))
        assert data.info.name == name and data.info.source == "builtin" and len(data.test) == 20
        for example in data.train + data.test:
            assert example.question and example.answer and example.uid
            if data.info.format == "mc":
                assert example.choices[example.gold] == example.answer
