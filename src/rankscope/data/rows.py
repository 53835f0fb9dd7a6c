"""Turning raw rows into :class:`Example` objects, with one policy for bad rows.

Every source (user file, upstream benchmark file, hub) yields :class:`Record` objects that know
where they came from (``file:line`` or ``hub:org/name[split] row N``). A converter raises
:class:`RowError` naming the field; :func:`convert_rows` then either fails with a
:class:`~rankscope.errors.DatasetError` naming the place and field (``on_bad_row: fail``) or
skips the row and warns once with the count and the first place (``on_bad_row: skip``) -- a bad
row is never dropped silently.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rankscope.data.sampling import DatasetWarning
from rankscope.data.types import Example
from rankscope.errors import DatasetError

logger = logging.getLogger(__name__)

OnBadRow = Literal["skip", "fail"]
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class RowError(Exception):
    """One row cannot become an Example: ``field`` names the column, ``problem`` says why, and
    ``fix`` (when the row is fine but the mapping is not) says what to change instead."""

    def __init__(self, field: str, problem: str, fix: str | None = None):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class Unreadable:
    """Placeholder data for a row the reader could not parse (bad JSON, wrong column count)."""

    problem: str


@dataclass(frozen=True)
class Record:
    """A raw row and the place it came from."""

    where: str
    data: Any
    index: int = 0  # position within its split, for default uids


def convert_rows(records: Iterable[Record], convert: Callable[[Record], Example],
                 on_bad_row: OnBadRow, source: str) -> list[Example]:
    """Apply ``convert`` to every record under the bad-row policy; see the module docstring."""
    examples: list[Example] = []
    skipped = 0
    first: tuple[str, RowError] | None = None
    for record in records:
        try:
            if isinstance(record.data, Unreadable):
                raise RowError("row", record.data.problem)
            examples.append(convert(record))
        except RowError as error:
            if on_bad_row == "fail":
                raise DatasetError(record.where, f"field {error.field!r}: {error.problem}",
                                   error.fix or "fix the row, or set on_bad_row: skip to skip bad rows") from None
            skipped += 1
            if first is None:
                first = (record.where, error)
    if first is not None:
        where, error = first
        message = (f"{source}: skipped {skipped} bad row(s) (on_bad_row: skip); first at {where}: "
                   f"field {error.field!r}: {error.problem}")
        logger.warning(message)
        warnings.warn(message, DatasetWarning, stacklevel=2)
    return examples


# ---------------------------------------------------------------------------------------------
# Field helpers shared by user files and benchmark schemas


def get_field(row: Any, key: str) -> Any:
    """``row[key]``, where ``key`` may be a dotted path (``answer.value``); missing -> RowError."""
    node = row
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            raise RowError(key, "missing")
    return node


def get_optional(row: Any, key: str | None) -> Any:
    if key is None:
        return None
    try:
        return get_field(row, key)
    except RowError:
        return None


def text_value(value: Any, field: str) -> str:
    """A non-empty string (numbers are written as text); anything else is a RowError."""
    if isinstance(value, bool) or value is None:
        raise RowError(field, "empty" if value is None else f"expected text, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise RowError(field, f"expected text, got {type(value).__name__}")
    value = value.strip()
    if not value:
        raise RowError(field, "empty")
    return value


def list_value(value: Any, field: str) -> list[Any]:
    """A list from a list/tuple, or from a JSON list written as text (CSV cells)."""
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except json.JSONDecodeError:
                raise RowError(field, "text starting with '[' is not a valid JSON list") from None
    if hasattr(value, "tolist") and not isinstance(value, (list, tuple, str)):
        value = value.tolist()  # numpy arrays from parquet
    if not isinstance(value, (list, tuple)):
        raise RowError(field, f"expected a list, got {type(value).__name__}")
    return list(value)


def choices_value(value: Any, field: str) -> tuple[str, ...]:
    """Choice texts from a list, a JSON list in text, or a hub-style ``{"text": [...], ...}``."""
    if isinstance(value, Mapping):
        if "text" not in value:
            raise RowError(field, "a mapping of choices needs a 'text' list")
        value = value["text"]
    items = list_value(value, field)
    if len(items) < 2:
        raise RowError(field, f"needs at least 2 choices, got {len(items)}")
    return tuple(text_value(item, f"{field}[{i}]") for i, item in enumerate(items))


def aliases_value(value: Any, field: str, answer: str) -> tuple[str, ...]:
    """Aliases from a list (or JSON list text, or one string), without the answer, deduplicated."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) and not value.strip().startswith("[") else list_value(value, field)
    out: list[str] = []
    for item in items:
        if item is None or (isinstance(item, str) and not item.strip()):
            continue
        text = text_value(item, field)
        if text != answer and text not in out:
            out.append(text)
    return tuple(out)


def resolve_gold(value: Any, choices: Sequence[str], field: str) -> int:
    """Index of the correct choice from an index, a letter or the choice text.

    Integers are 0-based indices. For text, an exact choice text wins (so a choice "B" or "2"
    is never misread), then a single letter A-Z (either case), then a base-10 integer index.
    """
    if isinstance(value, bool):
        raise RowError(field, f"expected an index, letter or choice text, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if 0 <= value < len(choices):
            return value
        raise RowError(field, f"index {value} out of range for {len(choices)} choices (0-based)")
    if value is None or (isinstance(value, str) and not value.strip()):
        raise RowError(field, "empty")
    if not isinstance(value, str):
        raise RowError(field, f"expected an index, letter or choice text, got {value!r}")
    text = value.strip()
    if text in choices:
        return choices.index(text)
    if len(text) == 1 and text.upper() in _LETTERS:
        index = _LETTERS.index(text.upper())
        if index < len(choices):
            return index
        raise RowError(field, f"letter {text!r} out of range for {len(choices)} choices")
    if text.lstrip("-").isdigit():
        return resolve_gold(int(text), choices, field)
    raise RowError(field, f"answer {text!r} is not among the choices, a letter or an index")


def letter_index(value: Any, n_choices: int, field: str) -> int:
    """0-based index of an answer letter (A-Z, either case); used where a schema says "letter"."""
    text = text_value(value, field).upper()
    if len(text) != 1 or text not in _LETTERS:
        raise RowError(field, f"expected a letter A-{_LETTERS[n_choices - 1]}, got {text!r}")
    index = _LETTERS.index(text)
    if index >= n_choices:
        raise RowError(field, f"letter {text!r} out of range for {n_choices} choices")
    return index


def mc_example(question: str, choices: Sequence[str], gold: int, uid: str) -> Example:
    return Example(question=question, answer=choices[gold], choices=tuple(choices), gold=gold, uid=uid)
