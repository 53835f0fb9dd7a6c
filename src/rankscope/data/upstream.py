"""Where a benchmark's rows come from: a local copy in its upstream layout, or the hub.

Local folders: the file for a split is found by name (``test``; ``validation``/``val``/``dev``;
``train``) as a word of the file name (``test.jsonl``, ``ARC-Easy-Test.jsonl``,
``dev_rand_split.jsonl``, ``NQ-open.dev.jsonl``); a folder holding a single data file uses it
as the evaluation split (whatever its name). MMLU keeps its own layout (``dev/ val/ test/`` of
``<subject>_<split>.csv``, ``Benchmark.file_layout``). The rows then go through the benchmark's
declared schema and the one converter every source shares
(:func:`rankscope.data.fieldmap.record_converter`), under the spec's bad-row policy.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from rankscope.data.benchmarks import Benchmark
from rankscope.data.fieldmap import Schema, record_converter
from rankscope.data.hub import load_hub_records, split_hub_id
from rankscope.data.readers import EXTENSIONS, read_csv, read_records
from rankscope.data.rows import OnBadRow, Record, Unreadable, convert_rows
from rankscope.data.types import Example
from rankscope.errors import DatasetError

_SPLIT_WORDS = {"test": ("test",), "validation": ("validation", "val", "dev", "valid"), "train": ("train",)}
_METADATA = {"provenance", "readme", "license", "metadata"}


def split_words(split: str) -> tuple[str, ...]:
    for words in _SPLIT_WORDS.values():
        if split.lower() in words:
            return words
    return (split.lower(),)


# ---------------------------------------------------------------------------------------------
# Local files


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS
                  and p.stem.lower() not in _METADATA)


def find_split_file(folder: Path, split: str, required: bool = True) -> Path | None:
    """The data file in ``folder`` for ``split`` (see the module docstring)."""
    files = _data_files(folder)
    words = split_words(split)
    matches = [p for p in files if set(re.split(r"[-_.\s]+", p.stem.lower())) & set(words)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise DatasetError(str(folder), f"several files match split {split!r}: {[p.name for p in matches]}",
                           "point path: at one file")
    if len(files) == 1 and "train" not in words:  # a lone unnamed file is the evaluation split
        return files[0]
    if required:
        raise DatasetError(str(folder), f"no file for split {split!r} (found {[p.name for p in files]})",
                           "set split: to one of the files' splits, or point path: at a file")
    return None


_MMLU_FOLDERS = {"test": "test", "validation": "val", "val": "val", "dev": "dev"}


def _mmlu_files(path: Path, split: str) -> list[tuple[str, Path]]:
    """(subject, csv) pairs for an MMLU split: a folder of split folders, a split folder, or one CSV."""
    folder_name = _MMLU_FOLDERS.get(split.lower())
    if folder_name is None:
        raise DatasetError(f"mmlu split {split!r}", "unknown MMLU split", "use split: test, validation (val) or dev")
    if path.is_file():
        return [(re.sub(r"_(test|val|dev)$", "", path.stem), path)]
    base = path / "data" if (path / "data").is_dir() else path
    folder = base / folder_name if (base / folder_name).is_dir() else base
    files = sorted(folder.glob(f"*_{folder_name}.csv"))
    if not files:
        raise DatasetError(str(folder), f"no <subject>_{folder_name}.csv files for split {split!r}",
                           "point path: at the MMLU data folder (with dev/ val/ test/) or at one CSV")
    return [(p.stem.removesuffix(f"_{folder_name}"), p) for p in files]


def _mmlu_records(path: Path, split: str, subjects: list[str] | None) -> list[Record]:
    files = _mmlu_files(path, split)
    if subjects:
        known = {s for s, _ in files}
        unknown = [s for s in subjects if s not in known]
        if unknown:
            raise DatasetError(f"mmlu subjects {unknown}", "not found in the data",
                               f"use names such as {', '.join(sorted(known)[:5])} ({len(known)} available)")
        files = [(s, p) for s, p in files if s in subjects]
    columns = ("question", "A", "B", "C", "D", "answer")
    records: list[Record] = []
    for subject, csv_path in files:
        for record in read_csv(csv_path, header=False):
            cells = record.data
            data = (Unreadable(f"expected 6 columns (question,A,B,C,D,answer), got {len(cells)}")
                    if len(cells) != 6 else {**dict(zip(columns, cells)), "subject": subject})
            records.append(Record(record.where, data, len(records)))
    return records


def _filter_subjects(records: list[Record], bench: Benchmark, subjects: list[str] | None) -> list[Record]:
    if not subjects:
        return records
    field = bench.subject_field
    wanted = {s.lower() for s in subjects}
    present = {str(r.data.get(field, "")).lower() for r in records if isinstance(r.data, Mapping)}
    unknown = sorted(wanted - present)
    if unknown:
        raise DatasetError(f"{bench.name} subjects {unknown}", "not found in the data",
                           f"use names from: {', '.join(sorted(p for p in present if p)[:10])}")
    return [r for r in records if isinstance(r.data, Mapping) and str(r.data.get(field, "")).lower() in wanted]


def _convert(records: list[Record], schema: Schema, name: str, split: str, on_bad_row: OnBadRow,
             source: str) -> list[Example]:
    return convert_rows(records, record_converter(schema, f"{name}-{split}"), on_bad_row, source)


def check_subjects(bench: Benchmark, subjects: list[str] | None) -> None:
    if subjects and bench.subject_field is None:
        raise DatasetError(f"{bench.name}: subjects", "this benchmark has no subjects",
                           "remove subjects: (it applies to mmlu and medmcqa)")


def load_local(bench: Benchmark, path: Path, split: str | None, subjects: list[str] | None,
               on_bad_row: OnBadRow, for_training: bool) -> tuple[list[Example], list[Example]]:
    """(train, test) from a local upstream-schema file or folder. Train is read only when training
    and the folder has a train file; a single file is the test split."""
    check_subjects(bench, subjects)
    split = split or bench.test_split
    if not path.exists():
        raise DatasetError(str(path), "file or folder not found",
                           "check path: (relative paths are resolved against the config file's folder)")
    if bench.file_layout == "mmlu_csvs":
        records = _mmlu_records(path, split, subjects)
        return [], _convert(records, bench.file_schema, bench.name, split, on_bad_row, str(path))
    test_file = path if path.is_file() else find_split_file(path, split)
    test = _convert(_filter_subjects(read_records(test_file), bench, subjects), bench.file_schema,
                    bench.name, split, on_bad_row, str(test_file))
    train: list[Example] = []
    if for_training and path.is_dir() and bench.train_split:
        train_file = find_split_file(path, bench.train_split, required=False)
        if train_file is not None and train_file != test_file:
            train = _convert(_filter_subjects(read_records(train_file), bench, subjects), bench.file_schema,
                             bench.name, bench.train_split, on_bad_row, str(train_file))
    return train, test


# ---------------------------------------------------------------------------------------------
# Hub


def load_hub(bench: Benchmark, hub_id: str | None, split: str | None, subjects: list[str] | None,
             on_bad_row: OnBadRow, for_training: bool) -> tuple[list[Example], list[Example]]:
    """(train, test) from the hub; ``hub_id`` (``org/name[:config]``) overrides the default repo."""
    check_subjects(bench, subjects)
    repo, config = split_hub_id(hub_id) if hub_id else (bench.hub_id, bench.hub_config)
    split = split or bench.test_split

    def fetch(which: str) -> list[Example]:
        if bench.hub_config_per_subject and subjects:
            records = [r for s in subjects for r in load_hub_records(repo, s, which)]
            records = [Record(r.where, r.data, i) for i, r in enumerate(records)]
        else:
            records = _filter_subjects(load_hub_records(repo, config, which), bench, subjects)
        return _convert(records, bench.hub_schema, bench.name, which, on_bad_row, f"hub:{repo}[{which}]")

    test = fetch(split)
    train = fetch(bench.train_split) if for_training and bench.train_split and bench.train_split != split else []
    return train, test
