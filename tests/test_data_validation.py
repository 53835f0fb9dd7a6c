"""The validation split that picks learning rates: disjoint from training rows and the test split."""

from __future__ import annotations

import json
import warnings

import pytest

from rankscope.config import DatasetSpec
from rankscope.data.registry import BUILTINS, load_dataset
from rankscope.data.types import Example
from rankscope.data.validation import carve_validation, check_disjoint
from rankscope.errors import DatasetError


def _ids(rows):
    return {e.uid for e in rows}


def _questions(rows):
    return {e.question.strip() for e in rows}


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_every_builtin_training_set_has_a_disjoint_validation_split(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_dataset(DatasetSpec(name=name), for_training=True)
    assert len(data.validation) >= 1 and data.train and data.test
    for first, second in ((data.train, data.validation), (data.validation, data.test), (data.train, data.test)):
        assert not _ids(first) & _ids(second)
        assert not _questions(first) & _questions(second)


def test_the_carve_happens_before_n_train_and_does_not_move_with_the_seed():
    full = load_dataset(DatasetSpec(name="arith_chain", n_val=50), for_training=True)
    small = load_dataset(DatasetSpec(name="arith_chain", n_val=50, n_train=100), for_training=True, seed=7)
    assert full.validation == small.validation and len(full.validation) == 50
    assert _ids(small.train) <= _ids(full.train)  # n_train samples from what the carve left
    none = load_dataset(DatasetSpec(name="arith_chain", n_val=0), for_training=True)
    assert none.validation == [] and _ids(none.train) == _ids(full.train) | _ids(full.validation)


def test_carve_keeps_repeated_questions_on_one_side_and_caps_at_half_the_pool():
    pool = [Example(question=f"q{i // 2}", answer=str(i), uid=f"u{i}") for i in range(40)]  # each question twice
    rest, validation = carve_validation(pool, 7, seed=0, where="pool")
    assert not _questions(rest) & _questions(validation)
    assert 7 <= len(validation) <= 8 and len(rest) + len(validation) == 40
    with pytest.warns(UserWarning, match="n_val=30"):
        rest, validation = carve_validation(pool, 30, seed=0, where="pool")
    assert len(validation) <= 21 and len(rest) >= 19


def test_a_uid_in_two_splits_fails_loudly_naming_it():
    a = Example(question="one?", answer="1", uid="shared")
    b = Example(question="two?", answer="2", uid="shared")
    with pytest.raises(DatasetError, match="'shared' is in both the training and the validation split"):
        check_disjoint({"training": [a], "validation": [b], "test": []}, "dataset 'x'")


def test_a_benchmark_folder_with_its_own_validation_split_uses_it(tmp_path):
    def arc(uid, stem):
        return {"id": uid, "answerKey": "A", "question": {"stem": stem, "choices": [
            {"label": "A", "text": "yes"}, {"label": "B", "text": "no"}]}}

    for split, ids in (("Train", range(0, 30)), ("Dev", range(100, 110)), ("Test", range(200, 205))):
        rows = [arc(f"{split}{i}", f"{split} question {i}?") for i in ids]
        (tmp_path / f"ARC-Easy-{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_dataset(DatasetSpec(name="arc_easy", path=str(tmp_path), n_val=4), for_training=True)
    assert len(data.validation) == 4 and all(e.uid.startswith("Dev") for e in data.validation)
    assert len(data.train) == 30 and all(e.uid.startswith("Train") for e in data.train)
    assert all(e.uid.startswith("Test") for e in data.test)
