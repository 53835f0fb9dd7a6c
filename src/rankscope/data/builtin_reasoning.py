"""Procedurally generated reasoning sets: answers correct by construction, fully offline.

Each generator draws questions from a seeded ``random.Random`` and returns ``(train, test)``.
Questions are unique across both splits (deduplicated by exact text: test is filled first, then
train from further draws), so no test question is ever trained on.

The surface forms are deliberately regular and short (a handful of templates, < 30 words):
``arith_chain`` is the demo's in-domain training task and a 135M-parameter model should be able
to pick up the format and much of the skill within ~60 LoRA steps of batch 8. The other sets use
different surface forms on purpose, so they measure transfer rather than template matching.
"""

from __future__ import annotations

import dataclasses

import random
from collections.abc import Callable
from dataclasses import dataclass

from rankscope.data.types import Example
from rankscope.errors import DatasetError

Split = tuple[list[Example], list[Example]]
_MAX_MISSES = 5000

# (name, subject pronoun, object pronoun) -- a small fixed cast keeps the surface form regular.
_PEOPLE = (("Mia", "She", "her"), ("Tom", "He", "him"), ("Ana", "She", "her"), ("Leo", "He", "him"),
           ("Sara", "She", "her"), ("Ben", "He", "him"), ("Lily", "She", "her"), ("Sam", "He", "him"),
           ("Emma", "She", "her"), ("Noah", "He", "him"), ("Zoe", "She", "her"), ("Max", "He", "him"))
_ITEMS = ("apples", "pencils", "stickers", "marbles", "cookies", "books", "cards", "stamps",
          "balloons", "shells", "coins", "toys")


@dataclass(frozen=True)
class ChainTemplate:
    """A two-step word problem: start with ``a``, then apply ``sign_b * b`` and ``sign_c * c``."""

    text: str
    sign_b: int
    sign_c: int


CHAIN_TEMPLATES = (
    ChainTemplate("{name} has {a} {item}. {Pro} buys {b} more and gives away {c}. "
                  "How many {item} does {pro} have now?", +1, -1),
    ChainTemplate("{name} has {a} {item}. {Pro} gives away {b} and then finds {c} more. "
                  "How many {item} does {pro} have now?", -1, +1),
    ChainTemplate("{name} has {a} {item}. {Pro} gets {b} more on Monday and {c} more on Tuesday. "
                  "How many {item} does {pro} have now?", +1, +1),
    ChainTemplate("{name} has {a} {item}. {Pro} gives {b} to a friend and loses {c}. "
                  "How many {item} does {pro} have left?", -1, -1),
    ChainTemplate("There are {a} {item} in a box. {name} puts in {b} more and takes out {c}. "
                  "How many {item} are in the box now?", +1, -1),
)


def _draw_unique(make: Callable[[random.Random], Example | None], n_train: int, n_test: int,
                 seed: int, name: str) -> Split:
    """Draw examples until ``n_test`` then ``n_train`` distinct questions exist.

    ``make`` returns None for a draw it rejects (e.g. a negative intermediate result).
    """
    rng = random.Random(f"{name}:{seed}")
    seen: set[str] = set()
    test: list[Example] = []
    train: list[Example] = []
    misses = 0  # consecutive rejected draws: many in a row means the question space is used up
    while len(test) < n_test or len(train) < n_train:
        example = make(rng)
        if example is None or example.question in seen:
            misses += 1
            if misses > _MAX_MISSES:
                raise DatasetError(f"builtin {name}", f"could only generate {len(seen)} distinct questions, "
                                   f"asked for {n_train + n_test}", "ask for fewer (n_train/n_test)")
            continue
        misses = 0
        seen.add(example.question)
        target, split = (test, "test") if len(test) < n_test else (train, "train")
        target.append(dataclasses.replace(example, uid=f"{name}-{split}-{len(target)}"))
    return train, test


def worked_solution(a: int, steps: list[tuple[int, int]]) -> tuple[str, int]:
    """``"12 + 7 = 19. 19 - 5 = 14. The answer is 14."`` for a start and (sign, amount) steps.

    The target spells out every intermediate result, GSM8K style (Cobbe et al. 2021): a small
    model learns one-operation steps far more readily than the whole chain in one token, and the
    final number is read after "The answer is" like any other generative answer.
    """
    parts, value = [], a
    for sign, amount in steps:
        result = value + sign * amount
        parts.append(f"{value} {'+' if sign > 0 else '-'} {amount} = {result}.")
        value = result
    return " ".join(parts) + f" The answer is {value}.", value


def _chain_example(rng: random.Random) -> Example | None:
    template = rng.choice(CHAIN_TEMPLATES)
    a, b, c = rng.randint(5, 40), rng.randint(2, 20), rng.randint(2, 20)
    middle = a + template.sign_b * b
    if middle < 0:
        return None
    solution, result = worked_solution(a, [(template.sign_b, b), (template.sign_c, c)])
    if not 0 <= result <= 99:
        return None
    name, pro_cap, _ = rng.choice(_PEOPLE)
    question = template.text.format(name=name, Pro=pro_cap, pro=pro_cap.lower(), item=rng.choice(_ITEMS),
                                    a=a, b=b, c=c)
    return Example(question=question, answer=solution, aliases=(str(result),))


def arith_chain(n_train: int = 2000, n_test: int = 500, seed: int = 0) -> Split:
    """Two-step add/subtract word problems; the target is a worked solution ending in
    "The answer is N" (scored by the extracted number; ``aliases`` holds the bare number).

    Starting amounts 5-40, changes 2-20, every intermediate and final result in 0..99.
    """
    return _draw_unique(_chain_example, n_train, n_test, seed, "arith_chain")


def _distractors(answer: int, rng: random.Random, count: int = 3) -> list[int]:
    """Distinct non-negative numbers near ``answer`` (the mistakes people make: off by 1, 2, 10)."""
    offsets = [-10, -2, -1, 1, 2, 10, -3, 3, 5, -5]
    rng.shuffle(offsets)
    out: list[int] = []
    for offset in offsets:
        value = answer + offset
        if value >= 0 and value != answer and value not in out:
            out.append(value)
        if len(out) == count:
            break
    return out


def _mc_example(rng: random.Random) -> Example | None:
    a, b, c = rng.randint(2, 50), rng.randint(1, 30), rng.randint(1, 30)
    op1, op2 = rng.choice("+-"), rng.choice("+-")
    middle = a + b if op1 == "+" else a - b
    result = middle + c if op2 == "+" else middle - c
    if middle < 0 or not 0 <= result <= 99:
        return None
    values = [result, *_distractors(result, rng)]
    rng.shuffle(values)
    choices = tuple(str(v) for v in values)
    gold = values.index(result)
    return Example(question=f"What is {a} {op1} {b} {op2} {c}?", answer=choices[gold], choices=choices, gold=gold)


def arith_mc(n_train: int = 2000, n_test: int = 500, seed: int = 0) -> Split:
    """Bare expressions ("What is 17 + 25 - 9?") with 4 numeric choices near the answer.

    A different surface form from ``arith_chain`` (no story, multiple choice scored by
    log-likelihood), so it measures whether arithmetic skill transfers across formats.
    """
    return _draw_unique(_mc_example, n_train, n_test, seed, "arith_mc")


@dataclass(frozen=True)
class Conversion:
    big: str
    small: str
    factor: int


CONVERSIONS = (
    Conversion("hours", "minutes", 60), Conversion("minutes", "seconds", 60), Conversion("days", "hours", 24),
    Conversion("weeks", "days", 7), Conversion("years", "months", 12), Conversion("kilometers", "meters", 1000),
    Conversion("meters", "centimeters", 100), Conversion("centimeters", "millimeters", 10),
    Conversion("kilograms", "grams", 1000), Conversion("liters", "milliliters", 1000),
    Conversion("feet", "inches", 12), Conversion("dozen", "eggs", 12),
)
_SINGLE = ("How many {small} are in {n} {big}?", "Convert {n} {big} to {small}.")


def _unit_example(rng: random.Random) -> Example | None:
    conv = rng.choice(CONVERSIONS)
    if rng.random() < 0.7:
        n = rng.randint(2, 99)
        question = rng.choice(_SINGLE).format(small=conv.small, big=conv.big, n=n)
        return Example(question=question, answer=str(n * conv.factor))
    # Two-part quantity: "3 hours and 15 minutes" -> one more addition step.
    n, rest = rng.randint(2, 9), rng.randint(1, conv.factor - 1)
    question = f"How many {conv.small} are in {n} {conv.big} and {rest} {conv.small}?"
    return Example(question=question, answer=str(n * conv.factor + rest))


def unit_conv(n_train: int = 2000, n_test: int = 500, seed: int = 0) -> Split:
    """Unit conversions ("How many minutes are in 3 hours?" -> "180"), generative numeric.

    Twelve exact conversions (time, length, mass, volume, dozens); about a third of the
    questions add a remainder ("... in 2 hours and 15 minutes?"), a second arithmetic step.
    """
    return _draw_unique(_unit_example, n_train, n_test, seed, "unit_conv")
