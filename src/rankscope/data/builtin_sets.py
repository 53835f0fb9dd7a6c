"""The builtin datasets: generated reasoning sets and fact-table recall sets, offline.

Builtin sets are fixed datasets, generated with :data:`GENERATION_SEED` like a published
benchmark; the run ``seed`` only chooses which rows ``n_train``/``n_test`` sample
(:mod:`rankscope.data.sampling`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rankscope.data import builtin_reasoning, builtin_recall
from rankscope.data.types import AnswerType, Example, Format, Kind

#: Seed the builtin generators run with: a builtin name always means the same questions.
GENERATION_SEED = 0

Split = tuple[list[Example], list[Example]]


@dataclass(frozen=True)
class BuiltinSet:
    """A builtin dataset: ``generate(n_train, n_test, seed) -> (train, test)``."""

    name: str
    kind: Kind
    format: Format
    answer_type: AnswerType
    description: str
    generate: Callable[[int, int, int], Split]
    default_train: int = 0
    default_test: int = 0


def _recall(make: Callable[[int], list[Example]]) -> Callable[[int, int, int], Split]:
    return lambda n_train, n_test, seed: ([], make(seed))


BUILTINS: dict[str, BuiltinSet] = {b.name: b for b in (
    BuiltinSet("arith_chain", "reasoning", "generative", "number",
               "Two-step add/subtract word problems, results 0-99, target a worked solution (the demo's training task).",
               builtin_reasoning.arith_chain, 2000, 500),
    BuiltinSet("arith_mc", "reasoning", "mc", "text",
               "'What is 17 + 25 - 9?' with 4 nearby numeric choices (arithmetic in another format).",
               builtin_reasoning.arith_mc, 2000, 500),
    BuiltinSet("unit_conv", "reasoning", "generative", "number",
               "Unit conversions ('How many minutes are in 3 hours?'), some with a remainder step.",
               builtin_reasoning.unit_conv, 2000, 500),
    BuiltinSet("capitals", "recall", "mc", "text",
               "Country capitals agreed by countryinfo and GeoNames, 4 choices.",
               _recall(builtin_recall.capitals)),
    BuiltinSet("capitals_gen", "recall", "generative", "text",
               "Country capitals agreed by countryinfo and GeoNames, answered in words.",
               _recall(builtin_recall.capitals_gen)),
    BuiltinSet("element_symbols", "recall", "mc", "text",
               "Chemical element symbols from mendeleev, 4 choices.",
               _recall(builtin_recall.element_symbols)),
    BuiltinSet("currencies", "recall", "mc", "text",
               "Country currencies (ISO code agreed by countryinfo and GeoNames), 4 choices.",
               _recall(builtin_recall.currencies)),
)}
