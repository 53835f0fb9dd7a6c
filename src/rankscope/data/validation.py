"""The validation split of a training set: what picks the learning rate, never the test split.

A rate chosen on the test split would make the reported score the best of several looks at the
test set: optimistic, and unfair to the arms whose grid was narrower. So every training set has
a third split, held apart from both the training rows and the test questions:

* a benchmark's own validation split, when it has one and the test is scored on another split;
* otherwise ``n_val`` rows carved from the training pool by the seeded permutation with the
  fixed split seed (:mod:`rankscope.data.sampling`), *before* ``n_train`` is sampled. It is
  carved whether or not a learning-rate grid is used, so a tuned and an untuned sweep of the same
  config train on the same rows and their recommendations can be set side by side.

:func:`check_disjoint` then proves the three splits share no uid and no question text, and
stops the load naming the first shared item when they do.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from rankscope.data.sampling import DatasetWarning, seeded_order
from rankscope.data.types import Example
from rankscope.errors import DatasetError

#: Salt of the validation carve: independent of the n_train / n_test samples of the same seed.
VALIDATION_SALT = "validation"


def carve_validation(pool: Sequence[Example], n_val: int, seed: int, where: str,
                     ) -> tuple[list[Example], list[Example]]:
    """(rest, validation): ``n_val`` rows of ``pool`` by the seeded permutation, original order kept.

    Rows with the same question text go to the same side, so no validation question is trained on.
    At most half the pool is carved (a warning says so): a training set left with a handful of rows
    would measure the carve, not the learning rate.
    """
    if n_val <= 0 or not pool:
        return list(pool), []
    if n_val > len(pool) // 2:
        warnings.warn(f"{where}: n_val={n_val} would leave too few training rows of {len(pool)}; "
                      f"carving {len(pool) // 2} validation rows instead (lower n_val or add rows)",
                      DatasetWarning, stacklevel=2)
        n_val = len(pool) // 2
    rows_per_question: dict[str, int] = {}
    for example in pool:
        question = example.question.strip()
        rows_per_question[question] = rows_per_question.get(question, 0) + 1
    chosen_questions: set[str] = set()
    taken = 0
    for index in seeded_order(pool, seed, VALIDATION_SALT):
        question = pool[index].question.strip()
        if taken >= n_val:
            break
        if question not in chosen_questions:
            chosen_questions.add(question)
            taken += rows_per_question[question]
    validation = [e for e in pool if e.question.strip() in chosen_questions]
    rest = [e for e in pool if e.question.strip() not in chosen_questions]
    return rest, validation


def check_disjoint(splits: dict[str, Sequence[Example]], where: str) -> None:
    """Every pair of splits shares no uid and no question text, or a DatasetError names the item."""
    names = list(splits)
    for i, first in enumerate(names):
        first_uids = {e.uid: e for e in splits[first] if e.uid}
        first_questions = {e.question.strip() for e in splits[first]}
        for second in names[i + 1:]:
            for example in splits[second]:
                if example.uid and example.uid in first_uids:
                    raise DatasetError(where, f"uid {example.uid!r} is in both the {first} and the {second} split",
                                       "give every row a unique id (fields: id:), or remove the duplicate row")
                if example.question.strip() in first_questions:
                    raise DatasetError(where, f"the question {example.question.strip()[:60]!r} is in both the "
                                       f"{first} and the {second} split", "remove the duplicate row")
