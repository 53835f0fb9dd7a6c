"""Answer extraction and matching for generative scoring.

Two published conventions are followed so that numbers are comparable with the literature:

* GSM8K (Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems",
  github.com/openai/grade-school-math): a solution ends in ``#### <number>``; the number after
  ``####`` is the final answer, commas removed. Models that do not emit ``####`` are read the
  way lm-evaluation-harness's ``gsm8k`` "flexible extract" does: the number after "The answer
  is", else the last number in the text.
* SQuAD (Rajpurkar et al. 2016, the official ``evaluate-v1.1.py`` script): exact match after
  lowercasing, removing punctuation, removing the articles a/an/the and collapsing whitespace.
  TriviaQA and NQ-open reuse the same normalization against a list of aliases.
"""

from __future__ import annotations

import re
import string
from decimal import Decimal, InvalidOperation

from rankscope.data.types import AnswerType, Example

# A number as people write it: optional sign, digits with optional thousands commas, optional
# decimals. The look-behind keeps identifiers such as "v2" or "x86" from yielding numbers.
_NUMBER = re.compile(r"(?<![\w])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_HASHES = re.compile(r"####\s*(.*)", re.DOTALL)
_ANSWER_IS = re.compile(r"the (?:final )?answer is[:\s]*(.*)", re.IGNORECASE | re.DOTALL)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)
_ANSWER_PREFIX = re.compile(r"^\s*(?:the (?:final )?answer is|answer\s*:|a\s*:)\s*", re.IGNORECASE)


def _canonical_number(raw: str) -> str:
    """``"1,000.00"`` -> ``"1000"``; ``"2.50"`` -> ``"2.5"``; ``"-0"`` -> ``"0"``."""
    text = raw.replace(",", "")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in {"-0", ""}:
        text = "0"
    return text


def _first_number(text: str) -> str | None:
    match = _NUMBER.search(text)
    return _canonical_number(match.group(0)) if match else None


def extract_number(text: str) -> str | None:
    """The final numeric answer in ``text``, canonicalized, or None.

    Order (GSM8K convention, then the usual fallbacks): the first number after ``####``; else
    the first number after "The answer is"; else the last number anywhere in the text. Thousands
    commas are removed and a zero fractional part is dropped (``"1,200.0"`` -> ``"1200"``), so
    the result compares equal as a string whenever the values are equal.
    """
    if not text:
        return None
    for pattern in (_HASHES, _ANSWER_IS):
        match = pattern.search(text)
        if match:
            found = _first_number(match.group(1))
            if found is not None:
                return found
    numbers = _NUMBER.findall(text)
    return _canonical_number(numbers[-1]) if numbers else None


def numbers_equal(left: str, right: str) -> bool:
    """Numeric equality of two canonical number strings (``"2.50"`` == ``"2.5"``)."""
    try:
        return Decimal(left) == Decimal(right)
    except InvalidOperation:
        return left == right


def normalize_text(text: str) -> str:
    """SQuAD normalization: lowercase, drop punctuation, drop articles, collapse whitespace.

    Mirrors ``normalize_answer`` in the official SQuAD v1.1 evaluation script, so exact-match
    numbers agree with published TriviaQA/NQ-open scores.
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _short_answer(prediction: str) -> str:
    """The answer part of a free-form generation: its first non-empty line, without a leading
    "The answer is" / "Answer:". A chat model often adds an explanation after the answer; SQuAD
    exact match on the whole generation would count that as wrong."""
    for line in prediction.strip().splitlines():
        if line.strip():
            return _ANSWER_PREFIX.sub("", line.strip())
    return ""


def short_answer(prediction: str) -> str:
    """The part of a free-form generation that text sets compare (see :func:`_short_answer`)."""
    return _short_answer(prediction)


def is_correct(prediction_text: str, example: Example, answer_type: AnswerType) -> bool:
    """Whether a generated (or chosen) answer matches the example.

    number: :func:`extract_number` of the prediction equals the number of any accepted answer.
    text: SQuAD-normalized exact match of the prediction's short answer (first line, without an
    "Answer:" prefix) against any accepted answer (``example.answer`` and its aliases), or the
    accepted answer appearing as whole words in the first sentence of that line (a chat model's
    "The capital of Afghanistan is Kabul."; a later sentence or line does not count). For a
    multiple-choice example pass the chosen choice's text; it matches iff it is the gold choice.
    """
    if answer_type == "number":
        predicted = extract_number(prediction_text)
        if predicted is None:
            return False
        for accepted in example.accepted_answers():
            target = extract_number(accepted)
            if target is not None and numbers_equal(predicted, target):
                return True
        return False
    if example.choices is not None and example.gold is not None:
        return normalize_text(prediction_text) == normalize_text(example.choices[example.gold])
    predicted = normalize_text(_short_answer(prediction_text))
    sentence = f" {normalize_text(_first_sentence(prediction_text))} "
    for accepted in example.accepted_answers():
        target = normalize_text(accepted)
        if not target:
            continue
        # Exact match, or the whole accepted answer stated in the first sentence: chat models
        # answer "The capital of Afghanistan is Kabul." where a base model says "Kabul".
        if predicted == target or f" {target} " in sentence:
            return True
    return False


def _first_sentence(prediction: str) -> str:
    """The first line of the answer, cut at the first sentence end (". " / "? " / "! ")."""
    line = _short_answer(prediction)
    match = re.search(r"[.!?](\s|$)", line)
    return line[: match.start()] if match else line
