"""Row converters for the benchmarks' upstream schemas: one function per schema family.

Each takes a raw row (a mapping, as read from the upstream file or the hub) and a default uid,
and returns an :class:`Example` or raises :class:`~rankscope.data.rows.RowError` naming the field.
Where a benchmark's published shapes differ (hub vs original file vs a reformatted copy), one
converter recognizes all of them by their keys, so the same name loads from any of them.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping

from rankscope.data.answers import extract_number
from rankscope.data.rows import RowError
from rankscope.data.values import (
    aliases_value,
    choices_value,
    get_field,
    letter_index,
    list_value,
    mc_example,
    resolve_gold,
    text_value,
)
from rankscope.data.solutions import gsm8k_target, mathqa_target
from rankscope.data.types import Example

RowConverter = Callable[[Mapping, str], Example]  # (row, default uid) -> Example


def strip_prompt(text: str) -> str:
    """``"Question: X\\nAnswer:"`` -> ``"X"`` (llm-foundry's reformatted ARC/TriviaQA files)."""
    text = re.sub(r"^\s*Question:\s*", "", text)
    return re.sub(r"\s*Answer:\s*$", "", text).strip()


def gsm8k(row: Mapping, uid: str) -> Example:
    """GSM8K: the solution ends in ``#### N``; Example.answer is N, Example.target the worked
    solution without calculator annotations, ending in ``#### N`` (:func:`rankscope.data.solutions.gsm8k_target`)."""
    question = text_value(get_field(row, "question"), "question")
    solution = text_value(get_field(row, "answer"), "answer")
    if "####" not in solution:
        raise RowError("answer", "no '#### <number>' final answer")
    number = extract_number(solution[solution.rindex("####"):])
    if number is None:
        raise RowError("answer", "no number after '####'")
    return Example(question=question, answer=number, uid=uid, target=gsm8k_target(solution, number))


def parse_mathqa_options(value: object) -> tuple[str, ...]:
    """``"a ) 38 , b ) 27.675 , c ) 30"`` -> ``("38", "27.675", "30")``.

    Options are found by walking the letters a, b, c, ... in order and splitting at
    ``, <letter> )``, so commas inside an option ("rs . 1,200") are kept.
    """
    if isinstance(value, (list, tuple)) or (isinstance(value, str) and value.strip().startswith("[")):
        items = [text_value(v, "options") for v in list_value(value, "options")]
        return tuple(re.sub(r"^[a-e]\s*\)\s*", "", item) for item in items)
    text = text_value(value, "options")
    start = re.match(r"\s*a\s*\)\s*", text)
    if not start:
        raise RowError("options", f"expected 'a ) ... , b ) ...', got {text[:40]!r}")
    options, pos = [], start.end()
    for letter in "bcdefgh":
        nxt = re.compile(rf"\s*,\s*{letter}\s*\)\s*").search(text, pos)
        if not nxt:
            break
        options.append(text[pos:nxt.start()].strip())
        pos = nxt.end()
    options.append(text[pos:].strip())
    if len(options) < 2 or any(not o for o in options):
        raise RowError("options", f"could not split into options: {text[:60]!r}")
    return tuple(options)


def mathqa(row: Mapping, uid: str) -> Example:
    question = text_value(get_field(row, "Problem"), "Problem")
    choices = parse_mathqa_options(get_field(row, "options"))
    example = mc_example(question, choices, letter_index(get_field(row, "correct"), len(choices), "correct"), uid)
    rationale = row.get("Rationale")
    if isinstance(rationale, str) and rationale.strip().strip('"').strip():
        # kept for target: solution; the default policy trains MC sets on the choice
        example = dataclasses.replace(example, target=mathqa_target(rationale, example.answer))
    return example


def mmlu(row: Mapping, uid: str) -> Example:
    """MMLU: upstream CSV columns question,A,B,C,D,answer-letter; hub rows question,choices,answer(0-3)."""
    question = text_value(get_field(row, "question"), "question")
    if "choices" in row:  # hub: answer is a 0-3 ClassLabel index
        choices = choices_value(row["choices"], "choices")
        gold = get_field(row, "answer")
        if isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices):
            raise RowError("answer", f"expected an index 0-{len(choices) - 1}, got {gold!r}")
    else:  # upstream CSV: answer is a letter
        choices = tuple(text_value(get_field(row, c), c) for c in "ABCD")
        gold = letter_index(get_field(row, "answer"), len(choices), "answer")
    return mc_example(question, choices, gold, uid)


def medmcqa(one_based: bool) -> RowConverter:
    """MedMCQA with ``cop`` numbered 1-4 (upstream files) or 0-3 (hub ClassLabel)."""
    low, high = (1, 4) if one_based else (0, 3)

    def convert(row: Mapping, uid: str) -> Example:
        question = text_value(get_field(row, "question"), "question")
        choices = tuple(text_value(get_field(row, c), c) for c in ("opa", "opb", "opc", "opd"))
        cop = get_field(row, "cop")
        if isinstance(cop, str) and cop.strip().lstrip("-").isdigit():
            cop = int(cop)
        if cop is None or cop == -1:
            raise RowError("cop", "no correct option (MedMCQA's test split is unlabelled; use split: validation)")
        if isinstance(cop, bool) or not isinstance(cop, int) or not low <= cop <= high:
            hint = ("; upstream files number options 1-4 -- a hub export numbers them 0-3: load it with "
                    "fields: {choices: 'opa,opb,opc,opd', answer: cop}" if one_based else "")
            raise RowError("cop", f"expected {low}-{high}, got {cop!r}{hint}")
        return mc_example(question, choices, cop - low, uid)

    return convert


def labeled_choices(row: Mapping, uid: str) -> Example:
    """ARC and CommonsenseQA in any of their published shapes.

    hub: ``question`` str, ``choices {label: [...], text: [...]}``, ``answerKey``;
    original AI2 JSONL: ``question {stem, choices: [{label, text}]}``, ``answerKey``;
    llm-foundry reformat (the shared ARC file): ``query "Question: ..."``, ``choices [...]``, ``gold`` index.
    ARC labels are usually A-D but some rows use 1-4, so the key is looked up among the labels.
    """
    if "query" in row:
        question = strip_prompt(text_value(row["query"], "query"))
        choices = choices_value(get_field(row, "choices"), "choices")
        return mc_example(question, choices, resolve_gold(get_field(row, "gold"), choices, "gold"), uid)
    raw_question = get_field(row, "question")
    if isinstance(raw_question, Mapping):
        question = text_value(raw_question.get("stem"), "question.stem")
        raw_choices = get_field(raw_question, "choices")
    else:
        question = text_value(raw_question, "question")
        raw_choices = get_field(row, "choices")
    if isinstance(raw_choices, Mapping):
        labels = [str(x).strip() for x in list_value(raw_choices.get("label"), "choices.label")]
        choices = choices_value(raw_choices, "choices")
    else:
        items = list_value(raw_choices, "choices")
        if not all(isinstance(item, Mapping) for item in items):
            raise RowError("choices", "expected a list of {label, text} objects")
        labels = [str(item.get("label", "")).strip() for item in items]
        choices = tuple(text_value(item.get("text"), f"choices[{i}].text") for i, item in enumerate(items))
    if len(labels) != len(choices):
        raise RowError("choices", f"{len(labels)} labels for {len(choices)} texts")
    key = text_value(get_field(row, "answerKey"), "answerKey")
    if key not in labels:
        raise RowError("answerKey", f"{key!r} is not one of the labels {labels}")
    return mc_example(question, choices, labels.index(key), uid)


def triviaqa(row: Mapping, uid: str) -> Example:
    """TriviaQA: shared-file ``context/answer/aliases`` or hub ``question/answer{value, aliases}``."""
    if "context" in row:
        question = strip_prompt(text_value(row["context"], "context"))
        answer = text_value(get_field(row, "answer"), "answer")
        aliases = aliases_value(row.get("aliases"), "aliases", answer)
    else:
        question = text_value(get_field(row, "question"), "question")
        answer = text_value(get_field(row, "answer.value"), "answer.value")
        aliases = aliases_value(row["answer"].get("aliases"), "answer.aliases", answer)
    return Example(question=question, answer=answer, aliases=aliases, uid=uid)


def nq_open(row: Mapping, uid: str) -> Example:
    """NQ-open: ``question`` and ``answer`` as a list of acceptable strings (first is canonical)."""
    question = text_value(get_field(row, "question"), "question")
    answers = aliases_value(get_field(row, "answer"), "answer", answer="")
    if not answers:
        raise RowError("answer", "empty list of answers")
    return Example(question=question, answer=answers[0], aliases=answers[1:], uid=uid)
