"""Turning raw rows into :class:`Example` objects, with one policy for bad rows.

Every source (user file, upstream benchmark file, hub) yields :class:`Record` objects that know
where they came from (``file:line`` or ``hub:org/name[split] row N``). A converter raises
:class:`RowError` naming the field; :func:`convert_rows` then either fails with a
:class:`~rankscope.errors.DatasetError` naming the place and field (``on_bad_row: fail``) or
skips the row and warns once with the count and the first place (``on_bad_row: skip``) -- a bad
row is never dropped silently.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from rankscope.data.sampling import DatasetWarning
from rankscope.data.types import Example
from rankscope.errors import DatasetError

logger = logging.getLogger(__name__)

OnBadRow = Literal["skip", "fail"]


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
