"""Reading one field's value out of a raw row: text, lists, choices, aliases, a gold choice.

Each reader takes the raw value (as JSON, CSV, parquet or the hub gave it) and the field's name,
and returns a clean Python value or raises :class:`~rankscope.data.rows.RowError` naming that
field, so a bad row is reported as ``file:line: field 'x': problem``. The field map's converter
(:mod:`rankscope.data.fieldmap`) and the named transforms (:mod:`rankscope.data.transforms`) are
built from these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from rankscope.data.rows import RowError

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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
    """``row[key]``, or None when ``key`` is None or the row lacks it."""
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
