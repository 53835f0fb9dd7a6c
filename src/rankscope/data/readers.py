"""Reading data files into :class:`Record` rows that remember their ``file:line``.

Line numbers matter because a bad row is reported by place: JSON Lines and CSV rows carry the
line they start on; rows of a JSON array carry the line their object starts on (found with an
incremental decoder, not by guessing); parquet has no lines, so rows carry ``row N``.
A row the reader cannot parse becomes an :class:`Unreadable` record, so the bad-row policy
(fail or skip-and-warn) applies to it like to any other malformed row.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path

from rankscope.data.rows import Record, Unreadable
from rankscope.errors import DatasetError

#: File extensions we read, mapped to the reader used.
EXTENSIONS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
              ".parquet": "parquet"}


def require_file(path: Path) -> Path:
    if not path.exists():
        raise DatasetError(str(path), "file not found",
                           "check the path (relative paths are resolved against the config file's folder)")
    if not path.is_file():
        raise DatasetError(str(path), "is a folder, expected a data file",
                           "point path: at a .jsonl/.json/.csv/.parquet file")
    return path


def file_kind(path: Path) -> str:
    kind = EXTENSIONS.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(str(path), f"unsupported file type {path.suffix or '(none)'!r}",
                           f"use one of {', '.join(sorted(EXTENSIONS))}")
    return kind


def _read_text(path: Path) -> str:
    try:
        return require_file(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise DatasetError(str(path), f"not UTF-8 text ({error.reason} at byte {error.start})",
                           "save the file as UTF-8") from None


def read_records(path: Path) -> list[Record]:
    """All rows of a data file, chosen by extension (see :data:`EXTENSIONS`)."""
    kind = file_kind(path)
    if kind == "jsonl":
        return list(read_jsonl(path))
    if kind == "json":
        return read_json(path)
    if kind in {"csv", "tsv"}:
        return list(read_csv(path, header=True, delimiter="\t" if kind == "tsv" else ","))
    return read_parquet(path)


def read_jsonl(path: Path, text: str | None = None) -> Iterator[Record]:
    """One JSON value per line; blank lines are ignored."""
    text = _read_text(path) if text is None else text
    index = 0
    # split on "\n" only: str.splitlines() also splits on U+2028 and friends, which are legal
    # inside JSON strings (TriviaQA has them) and would corrupt the row and the line numbers.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as error:
            data = Unreadable(f"invalid JSON ({error.msg} at column {error.colno})")
        yield Record(where, data, index)
        index += 1


def read_json(path: Path) -> list[Record]:
    """A JSON array of objects, or JSON Lines saved with a .json name (MedMCQA's dev.json is)."""
    text = _read_text(path)
    stripped = text.lstrip()
    if not stripped:
        return []
    if not stripped.startswith("["):
        _reject_single_object(path, text)
        return list(read_jsonl(path, text))
    decoder = json.JSONDecoder()
    records: list[Record] = []
    pos = text.index("[") + 1
    line, counted_to = 1, 0

    def skip_space(at: int) -> int:
        while at < len(text) and text[at] in " \t\r\n":
            at += 1
        return at

    while True:
        pos = skip_space(pos)
        if pos >= len(text):
            raise DatasetError(f"{path}:{line}", "JSON array is not closed", "end the file with ']'")
        if text[pos] == "]":
            break
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        try:
            data, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{path}:{error.lineno}", f"invalid JSON ({error.msg})",
                               "fix the JSON syntax (the file cannot be read past this point)") from None
        records.append(Record(f"{path}:{line}", data, len(records)))
        pos = skip_space(end)
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] != "]":
            line += text.count("\n", counted_to, pos)
            raise DatasetError(f"{path}:{line}", "expected ',' or ']' between array items", "fix the JSON syntax")
    return records


def _reject_single_object(path: Path, text: str) -> None:
    """A pretty-printed single object would otherwise fail line by line as "invalid JSON"."""
    first = next(line for line in text.split("\n") if line.strip())
    try:
        json.loads(first)
        return  # the first line is a whole value: JSON Lines
    except json.JSONDecodeError:
        pass
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return  # neither; the JSON Lines reader reports the bad lines
    if isinstance(whole, dict):
        lists = [key for key, value in whole.items() if isinstance(value, list)]
        hint = f" (its list is under key {lists[0]!r})" if len(lists) == 1 else ""
        raise DatasetError(str(path), f"holds one JSON object{hint}, not a list of rows",
                           "save the rows as a top-level JSON list or as JSON Lines")


def read_csv(path: Path, header: bool = True, delimiter: str = ",") -> Iterator[Record]:
    """CSV rows as dicts (``header=True``) or lists (headerless files such as MMLU's).

    A row whose column count differs from the header's becomes Unreadable, since its values
    cannot be matched to columns safely.
    """
    require_file(path)
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        columns: list[str] | None = None
        start = 1
        index = 0
        try:
            for cells in reader:
                line, start = start, reader.line_num + 1
                if not cells or all(not c.strip() for c in cells):
                    continue
                if header and columns is None:
                    columns = [c.strip() for c in cells]
                    continue
                where = f"{path}:{line}"
                if columns is None:
                    yield Record(where, cells, index)
                elif len(cells) != len(columns):
                    yield Record(where, Unreadable(f"expected {len(columns)} columns, got {len(cells)}"), index)
                else:
                    yield Record(where, dict(zip(columns, cells)), index)
                index += 1
        except csv.Error as error:
            raise DatasetError(f"{path}:{reader.line_num}", f"invalid CSV ({error})", "fix the quoting") from None
        except UnicodeDecodeError as error:
            raise DatasetError(str(path), f"not UTF-8 text ({error.reason})", "save the file as UTF-8") from None


def read_parquet(path: Path) -> list[Record]:
    """Parquet rows; needs pyarrow (an optional dependency, imported only here)."""
    require_file(path)
    if importlib.util.find_spec("pyarrow") is None:
        raise DatasetError(str(path), "reading parquet needs the pyarrow package, which is not installed",
                           "pip install pyarrow, or convert the file to JSONL or CSV")
    import pyarrow.parquet as pq  # noqa: PLC0415 - optional dependency

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as error:  # pyarrow raises several unrelated types for bad files
        raise DatasetError(str(path), f"cannot read parquet ({error})",
                           "check that the file is valid parquet") from None
    return [Record(f"{path}:row {i + 1}", row, i) for i, row in enumerate(rows)]
