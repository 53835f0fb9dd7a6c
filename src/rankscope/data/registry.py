"""The dataset registry and the one entry point, :func:`load_dataset`.

Where a dataset comes from (``DatasetSpec.source``, or inferred when left empty):

* ``path:`` given -> ``file``: a known benchmark name reads that benchmark's upstream schema
  (unless ``fields:`` is given); any other name is a user file read through ``fields:`` and
  needs ``format:`` and ``kind:``.
* a builtin name -> ``builtin`` (generated or built from fact tables, offline).
* a benchmark name -> ``hub`` (Hugging Face ``datasets``; ``path:`` then overrides the hub id,
  ``org/name`` or ``org/name:config``).
* ``path: lmeval:<task>`` (source empty or ``hub``) -> an lm-evaluation-harness task or group,
  built by lm-eval's TaskManager (optional extra ``rankscope[lmeval]``), see
  :mod:`rankscope.data.lm_eval_tasks`. The name stays a plain key (e.g. ``arc_easy_lm``);
  ``data_files:`` runs the task on a local copy in its schema, ``num_fewshot:`` (default 0).

Rows from a file, a folder or the hub all become Examples the same way: a field map (the user's
``fields:``, or the benchmark's declared schema) read by the one converter,
:func:`rankscope.data.fieldmap.to_example`; see docs/architecture.md, "The data layer".

Seeds: builtin sets are fixed datasets, generated with
:data:`~rankscope.data.builtin_sets.GENERATION_SEED` like a published benchmark; the run ``seed``
only chooses which rows ``n_train``/``n_test`` sample (a seeded permutation, see
:mod:`rankscope.data.sampling`). ``test_seed`` lets a caller keep one test sample for every
training seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from rankscope.config import DatasetSpec, did_you_mean
from rankscope.data import upstream
from rankscope.data.benchmarks import BENCHMARKS, Benchmark
from rankscope.data.builtin_sets import BUILTINS, GENERATION_SEED, Split
from rankscope.data.hub import load_hub_records, split_hub_id
from rankscope.data.lm_eval_tasks import LMEVAL_PREFIX, lmeval_task_of, load_lmeval_task
from rankscope.data.sampling import SPLIT_SEED, drop_overlap, sample_examples, split_train_test, without_questions
from rankscope.data.solutions import apply_target_policy
from rankscope.data.types import AnswerType, Example, Format, Kind, LoadedDataset, TaskInfo
from rankscope.data.user_files import infer_answer_type, load_mapped, load_user_file
from rankscope.data.validation import carve_validation, check_disjoint
from rankscope.errors import DatasetError


@dataclass(frozen=True)
class DatasetEntry:
    """One row of ``rankscope datasets list``. ``size`` is None for benchmarks (depends on split)."""

    name: str
    source: Literal["builtin", "benchmark"]
    kind: Kind
    format: Format
    size: int | None
    description: str
    answer_type: AnswerType = "text"
    notes: str = ""

    def to_json(self) -> dict[str, object]:
        """Plain dict for ``rankscope datasets list --json``."""
        return asdict(self)


def _known_names(name: str | None = None) -> str:
    """The names a dataset may have, led by the closest one to a misspelt ``name`` (difflib)."""
    guess = did_you_mean(name, [*BUILTINS, *BENCHMARKS]) if name else None
    lead = f"did you mean {guess!r}? " if guess else ""
    return f"{lead}use one of builtin: {', '.join(BUILTINS)}; benchmarks: {', '.join(BENCHMARKS)}"


def list_datasets() -> list[DatasetEntry]:
    """Every named dataset: builtins (with their default size) then benchmarks."""
    return [get_entry(name) for name in (*BUILTINS, *BENCHMARKS)]


def get_entry(name: str) -> DatasetEntry:
    """The registry entry for ``name`` (for ``rankscope datasets show NAME``)."""
    if name in BUILTINS:
        b = BUILTINS[name]
        train, test = b.generate(b.default_train, b.default_test, GENERATION_SEED)
        return DatasetEntry(b.name, "builtin", b.kind, b.format, len(train) + len(test), b.description,
                            b.answer_type, f"train {len(train)}, test {len(test)}")
    if name in BENCHMARKS:
        m = BENCHMARKS[name]
        notes = f"{m.notes} Hub: {m.hub_id}{':' + m.hub_config if m.hub_config else ''}, default split {m.test_split}."
        return DatasetEntry(m.name, "benchmark", m.kind, m.format, None, m.description, m.answer_type, notes)
    raise DatasetError(f"dataset {name!r}", "unknown dataset name", _known_names(name))


def resolve_source(spec: DatasetSpec) -> Literal["builtin", "hub", "file"]:
    """``spec.source``, checked, or inferred (path -> file, builtin name -> builtin, benchmark -> hub)."""
    where = f"dataset {spec.name!r}"
    source = spec.source
    if lmeval_task_of(spec.path) is not None:
        if source not in (None, "hub"):
            raise DatasetError(f"{where}: source", f"path: {LMEVAL_PREFIX}<task> is an lm-eval task, "
                               f"not a {source} set", "remove source: or set source: hub")
        return "hub"
    if source is None:
        if spec.path:
            return "file"
        if spec.name in BUILTINS:
            return "builtin"
        if spec.name in BENCHMARKS:
            return "hub"
        raise DatasetError(f"{where}: name", "unknown dataset name",
                           f"{_known_names(spec.name)}, or give path: to a file (with format: and kind:)")
    if source == "builtin":
        if spec.name not in BUILTINS:
            guess = did_you_mean(spec.name, list(BUILTINS))
            raise DatasetError(f"{where}: name", "not a builtin dataset",
                               (f"did you mean {guess!r}? " if guess else "") + f"use one of {', '.join(BUILTINS)}")
        if spec.path:
            raise DatasetError(f"{where}: path", "builtin datasets take no path", "remove path:, or set source: file")
    elif source == "file" and not spec.path:
        raise DatasetError(f"{where}: path", "source: file needs a path", "add path: to the file or folder")
    elif source == "hub" and spec.name not in BENCHMARKS and not spec.path:
        raise DatasetError(f"{where}: name", "not a known benchmark",
                           f"use one of {', '.join(BENCHMARKS)}, or give path: org/name (the hub id) with fields:")
    return source


def _require_format_kind(spec: DatasetSpec, bench: Benchmark | None) -> tuple[Format, Kind]:
    fmt = spec.format or (bench.format if bench else None)
    kind = spec.kind or (bench.kind if bench else None)
    where = f"dataset {spec.name!r}"
    if fmt is None:
        raise DatasetError(f"{where}: format", "a user dataset needs format:", "add format: mc or format: generative")
    if kind is None:
        raise DatasetError(f"{where}: kind", "a user dataset needs kind:", "add kind: reasoning or kind: recall")
    return fmt, kind


def _check_format(spec: DatasetSpec, fmt: Format) -> None:
    """A named dataset has a fixed format; a different ``format:`` in the spec is a mistake."""
    if spec.format and spec.format != fmt:
        raise DatasetError(f"dataset {spec.name!r}: format", f"{spec.name} is {fmt}, not {spec.format}",
                           f"remove format: or set it to {fmt}")


def _no_split_options(spec: DatasetSpec) -> None:
    if spec.split:
        raise DatasetError(f"dataset {spec.name!r}: split", "split: applies to benchmarks, not to this dataset",
                           "remove split:")
    if spec.subjects:
        raise DatasetError(f"dataset {spec.name!r}: subjects", "subjects: applies to mmlu and medmcqa only",
                           "remove subjects:")


def _load_builtin(spec: DatasetSpec) -> tuple[TaskInfo, Split]:
    _no_split_options(spec)
    b = BUILTINS[spec.name]
    n_train = max(b.default_train, spec.n_train or 0) if b.default_train else 0
    n_test = max(b.default_test, spec.n_test or 0) if b.default_test else 0
    _check_format(spec, b.format)
    info = TaskInfo(spec.name, spec.kind or b.kind, b.format, b.answer_type, b.description, "builtin")
    return info, b.generate(n_train, n_test, GENERATION_SEED)


def _load_file(spec: DatasetSpec, for_training: bool) -> tuple[TaskInfo, Split]:
    path = Path(spec.path or "")
    bench = BENCHMARKS.get(spec.name)
    if bench is not None and spec.fields is None:
        _check_format(spec, bench.format)
        split = upstream.load_local(bench, path, spec.split, spec.subjects, spec.on_bad_row, for_training)
        info = TaskInfo(spec.name, spec.kind or bench.kind, bench.format, bench.answer_type, bench.description, "file")
        return info, split
    fmt, kind = _require_format_kind(spec, bench)
    _no_split_options(spec)
    if path.is_dir():
        raise DatasetError(str(path), "is a folder; a user dataset is one file",
                           "point path: at a .jsonl/.json/.csv/.parquet file")
    test = load_user_file(path, spec.fields, fmt, spec.name, spec.on_bad_row)
    answer_type = bench.answer_type if bench else infer_answer_type(test, fmt)
    return TaskInfo(spec.name, kind, fmt, answer_type, f"user file {path.name}", "file"), ([], test)


def _load_lmeval(spec: DatasetSpec, task: str, for_training: bool) -> tuple[TaskInfo, Split]:
    where = f"dataset {spec.name!r}"
    if spec.fields is not None:
        raise DatasetError(f"{where}: fields", "an lm-eval task maps its own fields", "remove fields:")
    if spec.subjects:
        raise DatasetError(f"{where}: subjects", "subjects: applies to mmlu and medmcqa only",
                           f"name the subtask instead, e.g. path: {LMEVAL_PREFIX}mmlu_anatomy")
    bench = BENCHMARKS.get(task)
    return load_lmeval_task(task, name=spec.name, kind=spec.kind, fmt=spec.format, split=spec.split,
                            for_training=for_training, kind_default=bench.kind if bench else None,
                            data_files=spec.data_files, num_fewshot=spec.num_fewshot)


def _load_hub(spec: DatasetSpec, for_training: bool) -> tuple[TaskInfo, Split]:
    bench = BENCHMARKS.get(spec.name)
    if bench is not None and spec.fields is None:
        _check_format(spec, bench.format)
        split = upstream.load_hub(bench, spec.path, spec.split, spec.subjects, spec.on_bad_row, for_training)
        info = TaskInfo(spec.name, spec.kind or bench.kind, bench.format, bench.answer_type, bench.description, "hub")
        return info, split
    fmt, kind = _require_format_kind(spec, bench)
    if spec.subjects:
        raise DatasetError(f"dataset {spec.name!r}: subjects", "subjects: applies to mmlu and medmcqa only",
                           "remove subjects:")
    if spec.path:
        repo, config = split_hub_id(spec.path)
    else:  # resolve_source guarantees a benchmark here
        assert bench is not None
        repo, config = bench.hub_id, bench.hub_config
    split = spec.split or "test"
    records = load_hub_records(repo, config, split)
    test = load_mapped(records, spec.fields, fmt, spec.name, spec.on_bad_row, f"hub:{repo}[{split}]")
    answer_type = bench.answer_type if bench else infer_answer_type(test, fmt)
    return TaskInfo(spec.name, kind, fmt, answer_type, f"hub dataset {repo}", "hub"), ([], test)


def load_dataset(spec: DatasetSpec, seed: int = 0, *, for_training: bool = False,
                 test_seed: int | None = None) -> LoadedDataset:
    """Load, split and sample one dataset.

    for_training: the spec is a training set, so a train split is required. Sources with a train
        split provide it (builtins; a benchmark folder with a train file; the hub's train split);
        a single split is divided 80/20 by :func:`split_train_test` with the fixed
        :data:`~rankscope.data.sampling.SPLIT_SEED`, so held-out questions do not depend on the run
        seed. When False, only the evaluation split is read (no large hub train downloads).
    seed: seeds the ``n_train`` sample, and the ``n_test`` sample unless ``test_seed`` is given.
    Train examples whose question text also appears in the test split are dropped (with a warning).
    A spec with ``sample_of`` loads that set (same pool, splits and seeded samples, so the sizes of
    an ``n_train`` list are nested and share the test items) under its own name.
    """
    if spec.sample_of:
        loaded = load_dataset(spec.model_copy(update={"name": spec.sample_of, "sample_of": None}), seed,
                              for_training=for_training, test_seed=test_seed)
        return dataclasses.replace(loaded, info=dataclasses.replace(loaded.info, name=spec.name))
    source = resolve_source(spec)
    task = lmeval_task_of(spec.path)
    if task is None and (spec.data_files is not None or spec.num_fewshot):
        key = "data_files" if spec.data_files is not None else "num_fewshot"
        raise DatasetError(f"dataset {spec.name!r}: {key}", f"{key}: applies to lm-eval tasks only",
                           f"remove {key}:, or set path: {LMEVAL_PREFIX}<task>")
    if task is not None:
        info, (train, test) = _load_lmeval(spec, task, for_training)
    elif source == "builtin":
        info, (train, test) = _load_builtin(spec)
    elif source == "file":
        info, (train, test) = _load_file(spec, for_training)
    else:
        info, (train, test) = _load_hub(spec, for_training)
    where = f"dataset {spec.name!r}" + (f" ({spec.path})" if spec.path else "")
    if not train and not test:
        raise DatasetError(where, "no usable rows", "check the file and its fields: mapping")
    if for_training and not train:
        train, test = split_train_test(test, 0.2, SPLIT_SEED)
    train = drop_overlap(train, test, where)
    validation: list[Example] = []
    if for_training and spec.n_val:
        own = without_questions(_own_validation(spec, source, test), test)
        if own:
            validation = sample_examples(own, spec.n_val, SPLIT_SEED, f"{spec.name}/validation", f"{where}: n_val")
            train = without_questions(train, validation)
        else:  # carved before n_train is sampled, with the fixed split seed (like the 80/20 split)
            train, validation = carve_validation(train, spec.n_val, SPLIT_SEED, where)
    train = sample_examples(train, spec.n_train, seed, f"{spec.name}/train", f"{where}: n_train")
    test = sample_examples(test, spec.n_test, seed if test_seed is None else test_seed, f"{spec.name}/test",
                           f"{where}: n_test")
    if for_training and not train:
        raise DatasetError(where, "no training examples", "use a larger dataset for training")
    check_disjoint({"training": train, "validation": validation, "test": test}, where)
    info = with_lengths(info, spec)
    train = apply_target_policy(train, info.format, spec.target)
    test = apply_target_policy(test, info.format, spec.target)
    validation = apply_target_policy(validation, info.format, spec.target)
    return LoadedDataset(info=info, train=train, test=test, validation=validation)


def _own_validation(spec: DatasetSpec, source: str, test: list[Example]) -> list[Example]:
    """A benchmark's own validation split, when it has one and the test is scored on another
    split (read from the same local folder or hub repo); [] means carve from the training pool."""
    bench = BENCHMARKS.get(spec.name)
    if bench is None or spec.fields is not None or lmeval_task_of(spec.path) is not None:
        return []
    if (spec.split or bench.test_split) == "validation" or source not in ("file", "hub"):
        return []
    try:
        if source == "file":
            path = Path(spec.path or "")
            if not path.is_dir():
                return []  # one file is one split
            _, rows = upstream.load_local(bench, path, "validation", spec.subjects, spec.on_bad_row, False)
        else:
            _, rows = upstream.load_hub(bench, spec.path, "validation", spec.subjects, spec.on_bad_row, False)
    except DatasetError:  # no validation split here: carve one
        return []
    return rows


def with_lengths(info: TaskInfo, spec: DatasetSpec) -> TaskInfo:
    """The set's generation/training lengths: the spec's keys, else the benchmark's own defaults."""
    bench = BENCHMARKS.get(spec.name)
    max_new_tokens = spec.max_new_tokens or (bench.max_new_tokens if bench else None)
    max_length = spec.max_length or (bench.max_length if bench else None)
    if spec.target == "answer" and spec.max_new_tokens is None:
        max_new_tokens = None  # bare answers: the short eval default
    return dataclasses.replace(info, max_new_tokens=max_new_tokens, max_length=max_length)
