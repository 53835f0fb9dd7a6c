"""Field maps, and the one converter from a raw row to an :class:`Example`.

Every row that becomes an Example -- a user file's, a hub dataset's, an upstream benchmark file's
-- goes through :func:`to_example` with a field map saying where each field is. A user writes the
map in the config (:class:`~rankscope.config.FieldMap`, turned into a :class:`RowMap` by
:meth:`RowMap.from_field_map`); a benchmark declares its own in :mod:`rankscope.data.schemas`. What
a column name cannot say (GSM8K's ``#### N``, labeled choices, a letter for the gold) is one of the
named transforms in :mod:`rankscope.data.transforms`, chosen by the map, so no source has a
converter of its own and a benchmark reads exactly like a user file with the benchmark's map.

A benchmark published in several shapes (ARC on the hub, in AI2's original files, in a reformatted
copy) declares one :class:`RowMap` per shape in a :class:`Schema`; the first whose ``when`` matches
a row reads it, so the same name loads from any of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rankscope.config import FieldMap
from rankscope.data.rows import Record, RowError
from rankscope.data.transforms import (
    ANSWER,
    CHOICES,
    GOLD,
    QUESTION,
    AnswerForm,
    Choices,
    ChoicesForm,
    GoldForm,
    QuestionTransform,
    solution_target,
)
from rankscope.data.types import Example, Format
from rankscope.data.values import aliases_value, get_field, get_optional, text_value


@dataclass(frozen=True)
class When:
    """Which rows a shape reads: those with a top-level column ``key``, or, with ``mapping``, those
    whose ``key`` holds an object (AI2's original ARC files nest ``question {stem, choices}``)."""

    key: str
    mapping: bool = False

    def matches(self, row: Mapping[str, Any]) -> bool:
        return isinstance(row.get(self.key), Mapping) if self.mapping else self.key in row


@dataclass(frozen=True, kw_only=True)
class RowMap:
    """Where each Example field is in a row, and how it reads.

    question / answer / aliases / solution: column names; a dotted name reaches into nested JSON
        (``answer.value``). ``aliases`` (generative) adds accepted answers; ``solution`` (multiple
        choice) is an optional worked solution kept as the training target (MathQA's Rationale).
    choices: multiple choice only (None means generative): one column holding the choices, or a
        tuple of columns holding one choice each (MMLU's ``A``-``D``, MedMCQA's ``opa``-``opd``).
    id: columns tried in order for the item id; the first with a value (not None or "") wins, else
        the loader's default ``<name>[-<split>]-<row>``.
    question_transform, choices_form, gold, answer_form: named transforms
        (:mod:`rankscope.data.transforms`); the defaults read a user file: the question as is, a
        list of choices, a gold given as index, letter or choice text, an answer given as text or as
        a list (answer then aliases).
    when: the rows this map applies to, in a :class:`Schema` of several shapes (None: any row).
    """

    question: str = "question"
    answer: str = "answer"
    choices: str | tuple[str, ...] | None = None
    aliases: str | None = None
    solution: str | None = None
    id: tuple[str, ...] = ()
    question_transform: QuestionTransform | None = None
    choices_form: ChoicesForm = "list"
    gold: GoldForm = "any"
    answer_form: AnswerForm = "text_or_list"
    when: When | None = None

    def __post_init__(self) -> None:
        """A declaration error is a bug in the declaration, so it fails at import, not on a row."""
        problems = []
        if self.format == "mc" and (self.aliases is not None or self.answer_form != "text_or_list"):
            problems.append("aliases and answer_form apply to generative sets (choices is set)")
        if self.format == "generative" and (self.solution is not None or self.gold != "any"
                                            or self.choices_form != "list"):
            problems.append("solution, gold and choices_form apply to multiple-choice sets (choices is not set)")
        if isinstance(self.choices, tuple) and self.choices_form != "list":
            problems.append(f"choices_form {self.choices_form!r} reads one column, not {len(self.choices)}")
        if self.gold == "label" and self.choices_form != "labeled":
            problems.append("gold 'label' needs choices_form 'labeled' (the labels it looks the answer up in)")
        if problems:
            raise ValueError(f"RowMap: {'; '.join(problems)}")

    @property
    def format(self) -> Format:
        return "generative" if self.choices is None else "mc"

    @classmethod
    def from_field_map(cls, fields: FieldMap, fmt: Format) -> RowMap:
        """The map a user's ``fields:`` describes, for a set of format ``fmt`` (a multiple-choice set
        reads its choices from ``choices`` unless told otherwise; a generative one ignores them)."""
        ids = (fields.id,) if fields.id else ()
        if fmt == "mc":
            return cls(question=fields.question, answer=fields.answer,
                       choices=_choice_columns(fields.choices or "choices"), id=ids)
        return cls(question=fields.question, answer=fields.answer, aliases=fields.aliases, id=ids)


def _choice_columns(key: str | list[str]) -> str | tuple[str, ...]:
    """``[A, B, C]`` or ``"A,B,C"`` -> one column per choice; a single name -> one column of choices."""
    if isinstance(key, list) or "," in key:
        columns = key if isinstance(key, list) else [c.strip() for c in key.split(",") if c.strip()]
        return columns[0] if len(columns) == 1 else tuple(columns)
    return key


@dataclass(frozen=True, init=False)
class Schema:
    """The shapes a source's rows come in, ``Schema(shape, ...)``: the first :class:`RowMap` whose
    ``when`` matches reads a row; the last has no ``when`` and reads every other row. Calling a
    schema converts one row."""

    shapes: tuple[RowMap, ...]

    def __init__(self, *shapes: RowMap) -> None:
        object.__setattr__(self, "shapes", shapes)
        if not self.shapes or self.shapes[-1].when is not None:
            raise ValueError("Schema: the last shape must have no `when` (it reads every other row)")
        if any(shape.when is None for shape in self.shapes[:-1]):
            raise ValueError("Schema: only the last shape may have no `when` (later shapes would never match)")
        if len({shape.format for shape in self.shapes}) > 1:
            raise ValueError("Schema: every shape of one source has the same format")

    @property
    def format(self) -> Format:
        return self.shapes[0].format

    def shape_of(self, row: Mapping[str, Any]) -> RowMap:
        return next(shape for shape in self.shapes if shape.when is None or shape.when.matches(row))

    def __call__(self, row: object, uid: str) -> Example:
        return to_example(row, self, uid)


def to_example(row: object, schema: Schema, uid: str) -> Example:
    """The Example a raw row holds, read through ``schema``; ``uid`` is the id when the row has none.

    Raises :class:`RowError` naming the field on a bad row (the caller's bad-row policy decides).
    Fields are read in a fixed order (question, choices, answer, aliases), so the first problem a
    row has is the one reported.
    """
    if not isinstance(row, Mapping):
        raise RowError("row", f"expected an object with named fields, got {type(row).__name__}")
    shape = schema.shape_of(row)
    question = text_value(get_field(row, shape.question), shape.question)
    if shape.question_transform is not None:
        question = QUESTION[shape.question_transform](question)
    uid = _item_id(row, shape.id) or uid
    if shape.choices is not None:
        choices = _read_choices(row, shape.choices, shape.choices_form)
        gold = GOLD[shape.gold](get_field(row, shape.answer), choices, shape.answer)
        example = Example(question=question, answer=choices.texts[gold], choices=choices.texts, gold=gold, uid=uid)
        target = solution_target(get_optional(row, shape.solution), example.answer)
        return example if target is None else dataclasses.replace(example, target=target)
    answer = ANSWER[shape.answer_form](get_field(row, shape.answer), shape.answer)
    aliases = aliases_value(get_optional(row, shape.aliases), shape.aliases or "aliases", answer.answer)
    merged = tuple(dict.fromkeys(a for a in (*answer.extra, *aliases) if a != answer.answer))
    return Example(question=question, answer=answer.answer, aliases=merged, uid=uid, target=answer.target)


def _read_choices(row: Mapping[str, Any], columns: str | tuple[str, ...], form: ChoicesForm) -> Choices:
    if isinstance(columns, tuple):
        return Choices(tuple(text_value(get_field(row, c), c) for c in columns))
    return CHOICES[form](get_field(row, columns), columns)


def _item_id(row: Mapping[str, Any], columns: tuple[str, ...]) -> str | None:
    for column in columns:
        value = get_optional(row, column)
        if value is not None and value != "":
            return str(value)
    return None


def record_converter(schema: Schema, uid_prefix: str) -> Callable[[Record], Example]:
    """Record -> Example for :func:`~rankscope.data.rows.convert_rows`; a row without an id gets
    ``<uid_prefix>-<its index in the split>``."""
    return lambda record: to_example(record.data, schema, f"{uid_prefix}-{record.index}")
