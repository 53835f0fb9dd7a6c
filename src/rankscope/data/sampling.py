"""Seeded sampling and train/test splitting.

Sampling ranks every example by a keyed hash of ``(seed, salt, uid)`` -- a seeded permutation
that does not depend on the order rows arrive in or on the Python/NumPy version -- takes the
first ``n`` and returns them in their original order. Two consequences the sweep relies on:
the same seed always picks the same rows, and for one seed a smaller ``n`` is a subset of a
larger one (growing ``n_test`` only adds questions).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence

from rankscope.data.types import Example

#: Seed of the 80/20 split that turns a single test split into train + test. It is fixed (not
#: the run seed) so every arm and every training seed is evaluated on the same held-out questions.
SPLIT_SEED = 0


class DatasetWarning(UserWarning):
    """Something about the data the user should know, that did not stop loading."""


def _key(seed: int, salt: str, ident: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{salt}\x00{ident}".encode()).digest()


def _identities(examples: Sequence[Example]) -> list[str]:
    """uid of each example, made unique by an occurrence counter (uids may repeat in user data)."""
    seen: dict[str, int] = {}
    out = []
    for index, example in enumerate(examples):
        base = example.uid or f"#{index}"
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.append(base if count == 0 else f"{base}#{count}")
    return out


def seeded_order(examples: Sequence[Example], seed: int, salt: str = "") -> list[int]:
    """Indices of ``examples`` in the seeded permutation order."""
    ids = _identities(examples)
    return sorted(range(len(examples)), key=lambda i: _key(seed, salt, ids[i]))


def sample_examples(examples: Sequence[Example], n: int | None, seed: int, salt: str = "",
                    where: str = "dataset") -> list[Example]:
    """``n`` examples chosen by the seeded permutation, in their original order.

    ``n=None`` keeps everything. Asking for more than exist keeps everything and warns (naming
    ``where``), because silently reporting a different ``n`` would mislead the results table; an
    empty split (the train split of an evaluation-only set) is returned without a warning.
    """
    if n is None or n >= len(examples):
        if n is not None and 0 < len(examples) < n:
            warnings.warn(f"{where}: asked for {n} examples but only {len(examples)} exist; using all of them",
                          DatasetWarning, stacklevel=2)
        return list(examples)
    chosen = sorted(seeded_order(examples, seed, salt)[:n])
    return [examples[i] for i in chosen]


def split_train_test(examples: Sequence[Example], test_fraction: float = 0.2,
                     seed: int = SPLIT_SEED) -> tuple[list[Example], list[Example]]:
    """Split one list into (train, test) by the seeded permutation, keeping original order.

    Used when a dataset has a single split but is used as a training set: the default 80/20
    with the fixed :data:`SPLIT_SEED` means the held-out questions are the same for every arm and
    every training seed. Examples with the same question text always land on the same side, so
    a question seen in training is never scored as held-out.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    groups: dict[str, list[int]] = {}
    for index, example in enumerate(examples):
        groups.setdefault(example.question.strip(), []).append(index)
    ordered = sorted(groups, key=lambda q: _key(seed, "split", q))
    n_test = max(1, round(len(groups) * test_fraction)) if len(groups) > 1 else 0
    test_questions = set(ordered[:n_test])
    train = [e for e in examples if e.question.strip() not in test_questions]
    test = [e for e in examples if e.question.strip() in test_questions]
    return train, test


def without_questions(rows: Sequence[Example], *others: Sequence[Example]) -> list[Example]:
    """``rows`` minus those whose question text is in any of ``others``."""
    seen = {e.question.strip() for split in others for e in split}
    return [e for e in rows if e.question.strip() not in seen]


def drop_overlap(train: Sequence[Example], test: Sequence[Example], where: str) -> list[Example]:
    """``train`` without examples whose question text also appears in ``test`` (warns if any)."""
    kept = without_questions(train, test)
    dropped = len(train) - len(kept)
    if dropped:
        warnings.warn(f"{where}: dropped {dropped} training example(s) whose question also appears "
                      f"in the test split, so no test question is trained on", DatasetWarning, stacklevel=2)
    return kept
