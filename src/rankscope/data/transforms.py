"""The named transforms a field map may refer to, for what naming a column cannot say.

A field map (:class:`~rankscope.data.fieldmap.RowMap`) names the columns that hold the question,
the choices and the answer. Most upstream schemas need nothing more; where one does -- GSM8K's
answer is a worked solution ending in ``#### N``, MathQA packs its options into one string, ARC
labels its choices and names the gold by label, MedMCQA numbers options 1-4 in its files and 0-3
on the hub -- the field map names one of the transforms below instead of the benchmark shipping a
converter of its own (lm-evaluation-harness's tasks-as-data do the same with ``!function``).

Each transform is small and pure and raises :class:`~rankscope.data.rows.RowError` naming the
field it read, so a bad row is still reported as ``file:line: field 'x': problem``. The names are
plain strings (typed by the ``Literal`` aliases) so a field map stays data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rankscope.data.answers import extract_number
from rankscope.data.rows import RowError
from rankscope.data.solutions import gsm8k_target, mathqa_target
from rankscope.data.values import (
    aliases_value,
    choices_value,
    letter_index,
    list_value,
    resolve_gold,
    text_value,
)

QuestionTransform = Literal["strip_prompt"]
ChoicesForm = Literal["list", "labeled", "mathqa_options"]
GoldForm = Literal["any", "letter", "index", "label", "medmcqa_cop_1_4", "medmcqa_cop_0_3"]
AnswerForm = Literal["text_or_list", "text", "list", "gsm8k_solution"]


@dataclass(frozen=True)
class Choices:
    """Choice texts, and their labels where the schema labels them (ARC's ``A``-``D`` or ``1``-``4``)."""

    texts: tuple[str, ...]
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Answer:
    """A generative answer: the answer, more accepted answers given with it, and the training target
    when it is not the answer itself (a worked solution)."""

    answer: str
    extra: tuple[str, ...] = ()
    target: str | None = None


# ---------------------------------------------------------------------------------------------
# Question


def strip_prompt(text: str) -> str:
    """``"Question: X\\nAnswer:"`` -> ``"X"`` (llm-foundry's reformatted ARC/TriviaQA files)."""
    text = re.sub(r"^\s*Question:\s*", "", text)
    return re.sub(r"\s*Answer:\s*$", "", text).strip()


QUESTION: dict[QuestionTransform, Callable[[str], str]] = {"strip_prompt": strip_prompt}


# ---------------------------------------------------------------------------------------------
# Choices (one column; one column per choice needs no transform)


def parse_mathqa_options(value: object, field: str = "options") -> tuple[str, ...]:
    """``"a ) 38 , b ) 27.675 , c ) 30"`` -> ``("38", "27.675", "30")``.

    Options are found by walking the letters a, b, c, ... in order and splitting at
    ``, <letter> )``, so commas inside an option ("rs . 1,200") are kept.
    """
    if isinstance(value, (list, tuple)) or (isinstance(value, str) and value.strip().startswith("[")):
        items = [text_value(v, field) for v in list_value(value, field)]
        return tuple(re.sub(r"^[a-e]\s*\)\s*", "", item) for item in items)
    text = text_value(value, field)
    start = re.match(r"\s*a\s*\)\s*", text)
    if not start:
        raise RowError(field, f"expected 'a ) ... , b ) ...', got {text[:40]!r}")
    options, pos = [], start.end()
    for letter in "bcdefgh":
        nxt = re.compile(rf"\s*,\s*{letter}\s*\)\s*").search(text, pos)
        if not nxt:
            break
        options.append(text[pos:nxt.start()].strip())
        pos = nxt.end()
    options.append(text[pos:].strip())
    if len(options) < 2 or any(not o for o in options):
        raise RowError(field, f"could not split into options: {text[:60]!r}")
    return tuple(options)


def labeled_choices(value: Any, field: str) -> Choices:
    """Labeled choices, as ARC and CommonsenseQA publish them: the hub's ``{label: [...], text: [...]}``
    or the original files' ``[{label, text}, ...]``."""
    if isinstance(value, Mapping):
        labels = [str(x).strip() for x in list_value(value.get("label"), f"{field}.label")]
        texts = choices_value(value, field)
    else:
        items = list_value(value, field)
        if not all(isinstance(item, Mapping) for item in items):
            raise RowError(field, "expected a list of {label, text} objects")
        labels = [str(item.get("label", "")).strip() for item in items]
        texts = tuple(text_value(item.get("text"), f"{field}[{i}].text") for i, item in enumerate(items))
    if len(labels) != len(texts):
        raise RowError(field, f"{len(labels)} labels for {len(texts)} texts")
    return Choices(texts, tuple(labels))


CHOICES: dict[ChoicesForm, Callable[[Any, str], Choices]] = {
    "list": lambda value, field: Choices(choices_value(value, field)),
    "labeled": labeled_choices,
    "mathqa_options": lambda value, field: Choices(parse_mathqa_options(value, field)),
}


# ---------------------------------------------------------------------------------------------
# Gold: which choice the answer column names


def _strict_index(value: Any, choices: Choices, field: str) -> int:
    """A 0-based integer index and nothing else (the hub's ClassLabel columns)."""
    n = len(choices.texts)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < n:
        raise RowError(field, f"expected an index 0-{n - 1}, got {value!r}")
    return value


def _by_label(value: Any, choices: Choices, field: str) -> int:
    """The choice whose label the answer names (ARC's ``answerKey``; labels may be A-D or 1-4)."""
    key = text_value(value, field)
    labels = list(choices.labels or ())
    if key not in labels:
        raise RowError(field, f"{key!r} is not one of the labels {labels}")
    return labels.index(key)


def _medmcqa_cop(one_based: bool) -> Callable[[Any, Choices, str], int]:
    """MedMCQA's ``cop``: numbered 1-4 in the upstream files, 0-3 by the hub's ClassLabel."""
    low, high = (1, 4) if one_based else (0, 3)

    def gold(value: Any, choices: Choices, field: str) -> int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if value is None or value == -1:
            raise RowError(field, "no correct option (MedMCQA's test split is unlabelled; use split: validation)")
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            hint = ("; upstream files number options 1-4 -- a hub export numbers them 0-3: load it with "
                    "fields: {choices: 'opa,opb,opc,opd', answer: cop}" if one_based else "")
            raise RowError(field, f"expected {low}-{high}, got {value!r}{hint}")
        return value - low

    return gold


GOLD: dict[GoldForm, Callable[[Any, Choices, str], int]] = {
    "any": lambda value, choices, field: resolve_gold(value, choices.texts, field),
    "letter": lambda value, choices, field: letter_index(value, len(choices.texts), field),
    "index": _strict_index,
    "label": _by_label,
    "medmcqa_cop_1_4": _medmcqa_cop(one_based=True),
    "medmcqa_cop_0_3": _medmcqa_cop(one_based=False),
}


# ---------------------------------------------------------------------------------------------
# Generative answers


def _text_or_list(value: Any, field: str) -> Answer:
    """A string, or a list (or JSON-list text) whose first item is the answer and the rest aliases."""
    if isinstance(value, (list, tuple)) or (isinstance(value, str) and value.strip().startswith("[")):
        return _answer_list(value, field)
    return Answer(text_value(value, field))


def _answer_list(value: Any, field: str) -> Answer:
    """A list of acceptable answers, the first canonical (NQ-open's ``answer``)."""
    answers = aliases_value(value, field, answer="")
    if not answers:
        raise RowError(field, "empty list of answers")
    return Answer(answers[0], answers[1:])


def gsm8k_solution(value: Any, field: str) -> Answer:
    """GSM8K: the solution ends in ``#### N``; the answer is N, the target the worked solution
    without calculator annotations, ending in ``#### N`` (:func:`rankscope.data.solutions.gsm8k_target`)."""
    solution = text_value(value, field)
    if "####" not in solution:
        raise RowError(field, "no '#### <number>' final answer")
    number = extract_number(solution[solution.rindex("####"):])
    if number is None:
        raise RowError(field, "no number after '####'")
    return Answer(number, target=gsm8k_target(solution, number))


ANSWER: dict[AnswerForm, Callable[[Any, str], Answer]] = {
    "text_or_list": _text_or_list,
    "text": lambda value, field: Answer(text_value(value, field)),
    "list": _answer_list,
    "gsm8k_solution": gsm8k_solution,
}


def solution_target(value: Any, answer: str) -> str | None:
    """A multiple-choice set's worked solution (MathQA's ``Rationale``) as a training target ending in
    the gold choice, or None when the column is absent or blank (it is optional: no RowError)."""
    if isinstance(value, str) and value.strip().strip('"').strip():
        return mathqa_target(value, answer)
    return None
