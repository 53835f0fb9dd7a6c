"""Answer extraction follows the GSM8K and SQuAD conventions; stated as round trips where possible."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rankscope.data.answers import extract_number, is_correct, normalize_text
from rankscope.data.types import Example


def test_gsm8k_hashes_win_over_other_numbers():
    solution = "She sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\n#### 18"
    assert extract_number(solution) == "18"
    assert extract_number("#### 5\nThe answer is 7. 9") == "5"


def test_answer_is_then_last_number():
    assert extract_number("So 3 + 4 = 7. The answer is 7.") == "7"
    assert extract_number("The answer is: $1,234.") == "1234"
    assert extract_number("First 12, then 30, finally 42") == "42"
    assert extract_number("no digits here") is None
    assert extract_number("") is None


def test_commas_trailing_zero_and_sign():
    assert extract_number("#### 1,000") == "1000"
    assert extract_number("It is 18.0") == "18"
    assert extract_number("It is 2.50") == "2.5"
    assert extract_number("It is -5") == "-5"
    assert extract_number("16-3=13") == "13"  # a minus between numbers is not a sign
    assert extract_number("model v2 says x86") is None


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=-10**9, max_value=10**9))
def test_formatted_integers_round_trip(value):
    assert extract_number(f"Work... #### {value:,}") == str(value)
    assert extract_number(f"The answer is {value:,}.") == str(value)
    assert extract_number(f"blah {value}.0") == str(value)


def test_normalize_text_is_squad_normalization():
    assert normalize_text("The  Eiffel Tower!") == "eiffel tower"
    assert normalize_text("an Apple, a day") == "apple day"
    assert normalize_text(normalize_text("A B. the C")) == normalize_text("A B. the C")


def test_is_correct_number_text_and_mc():
    number = Example(question="q", answer="28")
    assert is_correct("Let me think: 20 + 8 = 28", number, "number")
    assert is_correct("#### 28.0", number, "number")
    assert not is_correct("27", number, "number")
    assert not is_correct("no idea", number, "number")

    text = Example(question="q", answer="Paris", aliases=("City of Paris",))
    assert is_correct("paris.", text, "text")
    assert is_correct("The answer is the city of Paris\nbecause ...", text, "text")
    assert not is_correct("Lyon", text, "text")

    mc = Example(question="q", answer="Fe", choices=("Fe", "F", "Ir", "I"), gold=0)
    assert is_correct("Fe", mc, "text")
    assert not is_correct("F", mc, "text")


def test_text_answers_stated_in_a_sentence_count_but_only_the_first_sentence():
    from rankscope.data.answers import is_correct
    from rankscope.data.types import Example

    kabul = Example(question="What is the capital of Afghanistan?", answer="Kabul")
    assert is_correct("The capital of Afghanistan is Kabul.", kabul, "text")
    assert is_correct("Kabul", kabul, "text")
    assert not is_correct("The capital is Kandahar. Some say Kabul.", kabul, "text")
    assert not is_correct("The capital is Kandahar.\nKabul", kabul, "text")
    assert not is_correct("Kabulistan is a region.", kabul, "text")  # whole words only
    andorra = Example(question="Capital of Andorra?", answer="Andorra la Vella")
    assert not is_correct("The capital of Andorra is Montserrat.", andorra, "text")
    lincoln = Example(question="First Republican president?", answer="ABRAHAM LINCOLN", aliases=("Lincoln",))
    assert is_correct("The first Republican President was Abraham Lincoln. He served from 1861.", lincoln, "text")
