"""The field's benchmarks by name, each loadable from the hub or from a local upstream copy.

Every benchmark reads its *upstream* schema: the files as their authors publish them (``path:``
to a file or folder) and the Hugging Face hub rows (``datasets`` library). Where the two number
things differently the loader says so (MedMCQA: upstream files give ``cop`` 1-4, the hub's
ClassLabel gives 0-3 -- checked against the "Ans: X" notes in the upstream dev file).

Local folders: the file for a split is found by name (``test``; ``validation``/``val``/``dev``;
``train``) as a word of the file name (``test.jsonl``, ``ARC-Easy-Test.jsonl``,
``dev_rand_split.jsonl``, ``NQ-open.dev.jsonl``); a folder holding a single data file uses it
as the evaluation split (whatever its name). MMLU keeps its own layout (``dev/ val/ test/`` of
``<subject>_<split>.csv``). Each benchmark's rows are read through its declared schema
(:mod:`rankscope.data.schemas`) by the one converter all sources share
(:func:`rankscope.data.fieldmap.to_example`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rankscope.data import schemas
from rankscope.data.fieldmap import Schema, record_converter
from rankscope.data.hub import load_hub_records
from rankscope.data.readers import EXTENSIONS, read_csv, read_records
from rankscope.data.rows import OnBadRow, Record, Unreadable, convert_rows
from rankscope.data.types import AnswerType, Example, Format, Kind
from rankscope.errors import DatasetError

# ---------------------------------------------------------------------------------------------
# The registry of benchmarks


@dataclass(frozen=True)
class Benchmark:
    """One upstream benchmark: what it measures, where it lives, how its rows read."""

    name: str
    kind: Kind
    format: Format
    answer_type: AnswerType
    description: str
    notes: str  # schema and answer-extraction notes shown by `rankscope datasets show`
    hub_id: str
    hub_config: str | None
    test_split: str
    train_split: str | None
    file_schema: Schema  # the upstream files' rows
    hub_schema: Schema  # the hub's rows
    subject_field: str | None = None
    # Generation and training lengths the set needs (None: the eval/train defaults). GSM8K's
    # worked-solution targets with SmolLM2's tokenizer: median 85 tokens, p99 222, 0.4% over 256;
    # prompt (chat template) + target: median 173, p99 352, 0.5% over 384. 24 new tokens cut
    # almost every solution off.
    max_new_tokens: int | None = None
    max_length: int | None = None


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("gsm8k", "reasoning", "generative", "number",
              "Grade-school math word problems (Cobbe et al. 2021).",
              "JSONL question/answer; the answer is a worked solution ending in '#### N'. Example.answer is N; "
              "training teaches the worked solution without calculator annotations, ending in '#### N' "
              "(target: answer trains on N alone). Predictions are scored by the number after '####', else after "
              "'The answer is', else the last number. 256 new tokens and training length 384 by default.",
              "openai/gsm8k", "main", "test", "train", schemas.gsm8k, schemas.gsm8k,
              max_new_tokens=256, max_length=384),
    Benchmark("mathqa", "reasoning", "mc", "text",
              "Math word problems with 5 options (Amini et al. 2019).",
              "JSON array of Problem, options 'a ) 38 , b ) 27.675 , ...', correct 'a'. Choices scored cloze style; "
              "training teaches the choice (target: solution: the Rationale ending in 'The answer is <choice>.').",
              "allenai/math_qa", None, "test", "train", schemas.mathqa, schemas.mathqa),
    Benchmark("mmlu", "recall", "mc", "text",
              "57-subject knowledge exam (Hendrycks et al. 2021).",
              "Headerless CSV per subject: question,A,B,C,D,answer letter, in dev/ val/ test/ folders of "
              "<subject>_<split>.csv (or one CSV); hub rows question,subject,choices,answer(0-3). "
              "subjects: filters; split: test (default), validation (val) or dev.",
              "cais/mmlu", "all", "test", None, schemas.mmlu, schemas.mmlu, "subject"),
    Benchmark("medmcqa", "recall", "mc", "text",
              "Medical entrance exam questions, 4 options (Pal et al. 2022).",
              "JSON Lines question, opa..opd, cop. Upstream files: cop 1-4; hub: cop 0-3 (ClassLabel a-d). "
              "The test split is unlabelled, so the default split is validation (upstream dev.json). "
              "subjects: filters on subject_name.",
              "openlifescienceai/medmcqa", None, "validation", "train", schemas.medmcqa_file, schemas.medmcqa_hub,
              "subject_name"),
    Benchmark("arc_easy", "reasoning", "mc", "text",
              "AI2 Reasoning Challenge, easy set: grade-school science (Clark et al. 2018).",
              "hub question/choices{text,label}/answerKey; original AI2 JSONL question{stem,choices}/answerKey; "
              "llm-foundry reformat query/choices/gold index. Labels may be A-D or 1-4.",
              "allenai/ai2_arc", "ARC-Easy", "test", "train", schemas.labeled_choices, schemas.labeled_choices),
    Benchmark("arc_challenge", "reasoning", "mc", "text",
              "AI2 Reasoning Challenge, challenge set (Clark et al. 2018).",
              "Same schemas as arc_easy.",
              "allenai/ai2_arc", "ARC-Challenge", "test", "train", schemas.labeled_choices, schemas.labeled_choices),
    Benchmark("triviaqa", "recall", "generative", "text",
              "Trivia questions with answer aliases (Joshi et al. 2017), closed book.",
              "Shared file: context 'Question: ...\\nAnswer:', answer, aliases[]; hub (rc.nocontext): question, "
              "answer{value, aliases}. SQuAD-normalized exact match against any alias.",
              "mandarjoshi/trivia_qa", "rc.nocontext", "validation", "train", schemas.triviaqa, schemas.triviaqa),
    Benchmark("nq_open", "recall", "generative", "text",
              "Natural Questions, open-domain (Lee et al. 2019).",
              "JSONL question, answer[] (any listed answer counts). SQuAD-normalized exact match.",
              "google-research-datasets/nq_open", "nq_open", "validation", "train", schemas.nq_open, schemas.nq_open),
    Benchmark("commonsense_qa", "reasoning", "mc", "text",
              "CommonsenseQA, 5 options (Talmor et al. 2019).",
              "hub question/choices{label,text}/answerKey; original JSONL question{stem,choices}/answerKey. "
              "The test split is unlabelled; the default split is validation (dev_rand_split.jsonl).",
              "tau/commonsense_qa", None, "validation", "train", schemas.labeled_choices, schemas.labeled_choices),
)}

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
    if bench.name == "mmlu":
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


def split_hub_id(text: str) -> tuple[str, str | None]:
    """``"org/name:config"`` -> ``("org/name", "config")``."""
    hub_id, _, config = text.partition(":")
    return hub_id, config or None


def load_hub(bench: Benchmark, hub_id: str | None, split: str | None, subjects: list[str] | None,
             on_bad_row: OnBadRow, for_training: bool) -> tuple[list[Example], list[Example]]:
    """(train, test) from the hub; ``hub_id`` (``org/name[:config]``) overrides the default repo."""
    check_subjects(bench, subjects)
    repo, config = split_hub_id(hub_id) if hub_id else (bench.hub_id, bench.hub_config)
    split = split or bench.test_split

    def fetch(which: str) -> list[Example]:
        if bench.name == "mmlu" and subjects:
            records = [r for s in subjects for r in load_hub_records(repo, s, which)]
            records = [Record(r.where, r.data, i) for i, r in enumerate(records)]
        else:
            records = _filter_subjects(load_hub_records(repo, config, which), bench, subjects)
        return _convert(records, bench.hub_schema, bench.name, which, on_bad_row, f"hub:{repo}[{which}]")

    test = fetch(split)
    train = fetch(bench.train_split) if for_training and bench.train_split and bench.train_split != split else []
    return train, test
