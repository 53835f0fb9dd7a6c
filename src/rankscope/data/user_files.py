"""User data files (JSONL, JSON, CSV/TSV, parquet) and hub datasets mapped through ``fields:``.

The user's :class:`~rankscope.config.FieldMap` becomes a :class:`~rankscope.data.fieldmap.RowMap`
and the rows go through the one converter every source shares
(:func:`~rankscope.data.fieldmap.to_example`); what this module adds is what only a user's own map
needs: a missing column explained with a suggested ``fields:`` line, and the answer type inferred.

Field mapping (:class:`~rankscope.config.FieldMap`): ``question``, ``answer``, and optionally
``choices``, ``aliases`` and ``id`` name columns; a name may be a dotted path into nested JSON
(``answer.value``). For CSV, ``choices`` may also list several columns separated by commas
(``choices: [A, B, C, D]`` or ``choices: A,B,C,D``), or name one column holding a JSON list.
A mapped column a row lacks is reported with the row's columns and a suggested ``fields:`` line.

multiple choice: ``answer`` is a 0-based index, a letter A-Z, or the text of a choice (see
:func:`~rankscope.data.values.resolve_gold` for how ambiguous text is read).
generative: ``answer`` is a string, or a list whose first item is the answer and the rest are
aliases; an ``aliases`` column adds more. A generative file whose every answer is a number is
scored as numbers (``answer_type: number``), otherwise as SQuAD-normalized text.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from rankscope.config import FieldMap
from rankscope.data.fieldmap import RowMap, Schema, record_converter
from rankscope.data.readers import read_records
from rankscope.data.rows import OnBadRow, Record, RowError, convert_rows
from rankscope.data.types import AnswerType, Example, Format

#: Column names that usually hold each field, for the suggested ``fields:`` line.
_USUAL = {
    "question": ("question", "q", "prompt", "input", "query", "text", "problem", "instruction"),
    "choices": ("choices", "options", "answers", "candidates", "endings"),
    "answer": ("answer", "gold", "label", "target", "output", "solution", "correct", "response"),
}


def _best_column(columns: list[str], usual: tuple[str, ...]) -> str | None:
    """The column named like a usual name: exactly, containing it, or close to it (difflib)."""
    lowered = {c.lower(): c for c in columns}
    for test in (lambda c, u: c == u, lambda c, u: len(u) > 2 and u in c,
                 lambda c, u: bool(difflib.get_close_matches(c, [u], cutoff=0.6))):
        for u in usual:
            for low, column in lowered.items():
                if test(low, u):
                    return column
    return None


def _flow_scalar(column: str) -> str:
    """A column name as YAML reads it back inside ``{...}``: plain when it is a simple name, else a
    double-quoted string (JSON's escaping is valid YAML), so the suggestion stays one pasteable line."""
    return column if re.fullmatch(r"[A-Za-z_][\w.-]*", column) else json.dumps(column)


def suggest_fields(columns: list[str], fmt: Format) -> str:
    """A ``fields:`` line guessed from a row's columns, ready to paste into the config."""
    wanted = ("question", "choices", "answer") if fmt == "mc" else ("question", "answer")
    picked: dict[str, str] = {}
    free = list(columns)
    for name in ("question", "answer", "choices"):  # answer before choices: "ans" is no list of answers
        if name not in wanted:
            continue
        match = _best_column(free, _USUAL[name])
        if match is not None:
            picked[name] = _flow_scalar(match)
            free.remove(match)
    if fmt == "mc" and "choices" not in picked and len(free) >= 3:  # one column per choice (A, B, C, D)
        letters = [c for c in free if len(c) == 1 and c.isalpha()] or free[:4]
        picked["choices"] = "[" + ", ".join(_flow_scalar(c) for c in letters) + "]"
    for name in wanted:
        picked.setdefault(name, "COLUMN")
    return "fields: {" + ", ".join(f"{k}: {picked[k]}" for k in wanted) + "}"


def _missing_field_fix(row: Mapping, error: RowError, fmt: Format, first_row: bool) -> RowError:
    """A mapped column the row lacks: name the row's columns; on the first row the mapping is the
    likely mistake, so the fix is a ready ``fields:`` line (later rows: fix or skip the row)."""
    columns = [str(c) for c in row]
    fix = (f"map the columns in the dataset's config, e.g. {suggest_fields(columns, fmt)}" if first_row
           else "fix the row, or set on_bad_row: skip to skip bad rows")
    return RowError(error.field, f"missing; the row's columns are {columns}", fix)


def explain_missing(convert: Callable[[Record], Example], fmt: Format) -> Callable[[Record], Example]:
    """``convert``, with a missing mapped column explained (see :func:`_missing_field_fix`). Only a
    user's own map gets this: when the map is the user's, a missing column most likely means the
    map is wrong; a benchmark's map is ours, so there the row is."""

    def explained(record: Record) -> Example:
        try:
            return convert(record)
        except RowError as error:
            row = record.data
            if error.problem == "missing" and isinstance(row, Mapping) and error.field.split(".")[0] not in row:
                raise _missing_field_fix(row, error, fmt, first_row=record.index == 0) from None
            raise

    return explained


def infer_answer_type(examples: Iterable[Example], fmt: Format) -> AnswerType:
    """``number`` when every generative answer is a plain number, else ``text``."""
    examples = list(examples)
    if fmt == "mc" or not examples:
        return "text"
    plain_number = re.compile(r"-?\d+(?:\.\d+)?")
    if all(plain_number.fullmatch(e.answer.replace(",", "").strip()) for e in examples):
        return "number"
    return "text"


def load_mapped(records: Iterable[Record], fields: FieldMap | None, fmt: Format, name: str,
                on_bad_row: OnBadRow, source: str) -> list[Example]:
    """Examples from rows mapped by a user's ``fields:`` (a user file's rows, or a hub dataset's)."""
    schema = Schema(RowMap.from_field_map(fields or FieldMap(), fmt))
    return convert_rows(records, explain_missing(record_converter(schema, name), fmt), on_bad_row, source)


def load_user_file(path: Path, fields: FieldMap | None, fmt: Format, name: str, on_bad_row: OnBadRow) -> list[Example]:
    """Examples from one user file."""
    return load_mapped(read_records(path), fields, fmt, name, on_bad_row, str(path))
