"""The data section of the sweep configuration (``data:``): datasets, their field maps, and the
``n_train`` sweep dimension. Split from :mod:`rankscope.config.specs` to keep each module small;
import specs from :mod:`rankscope.config`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from rankscope.config.base import Spec

Relation = Literal["in", "near", "far"]


class FieldMap(Spec):
    """Column names in a user file, mapped to the Example fields.

    question: the column holding the question text (a dotted path reaches into nested JSON).
    choices: multiple choice only: one column holding a list of choices, or a list of columns
        (``[A, B, C, D]``, or ``A,B,C,D``) holding one choice each; empty means ``choices``.
    answer: the gold answer: for mc a 0-based index, a letter or a choice's text; for generative
        the answer text (or a list: the answer then its aliases).
    aliases: generative only: a column with other accepted answers (a list or one string).
    id: a column with a stable item id (default: NAME-ROW).
    """

    question: str = "question"
    choices: str | list[str] | None = None
    answer: str = "answer"
    aliases: str | None = None
    id: str | None = None


class DatasetSpec(Spec):
    """One dataset of the sweep.

    name: a builtin or benchmark name (``rankscope datasets list``), or your own name for a file;
        the key of the set in results.csv, so unique within data.train and data.eval.
    path: a local file or folder (relative to the config file), a hub id ``org/name[:config]``
        with ``source: hub``, or ``lmeval:<task>`` for an lm-evaluation-harness task.
    format: ``mc`` (scored by the log-likelihood of each choice) or ``generative`` (greedy
        generation, then exact match); needed for your own files.
    kind: ``reasoning`` or ``recall`` (how the report groups sets); needed for your own files.
    fields: which columns of your file hold the question, choices, answer (see FieldMap).
    split: benchmark split to evaluate on (default the benchmark's test split, or validation
        where test is unlabelled); hub datasets read with ``fields:`` default to ``test``.
    subjects: mmlu and medmcqa only: keep these subjects.
    on_bad_row: ``fail`` stops at the first bad row (file:line and field); ``skip`` skips bad
        rows and warns once with their count and the first place.

    source: ``builtin`` (generated or shipped offline), ``hub`` (Hugging Face datasets),
        ``file`` (local JSONL/JSON/CSV/parquet or an upstream-schema file/folder). Left empty it is
        inferred: a ``path`` means file, a builtin name means builtin, otherwise hub.
    n_train / n_test: seeded sample sizes (None = all available).
    sample_of: the builtin, benchmark or file-backed set this one samples, when ``name`` is a
        label of its own (set by an ``n_train`` list; rarely written by hand).
    domain: ``in`` or ``out``; left empty, a training set's own test split is in-domain and
        every other evaluated set out-of-domain.
    primary_metric: the metric that drives gain, forgetting and the recommendation on this set;
        ``auto`` is ``acc_norm`` for a multiple-choice set whose choices differ in length, else
        ``accuracy``.
    relation: how this set relates to the training sets (``in``, ``near`` or ``far``; one value
        for every training set, or a mapping training-set name -> value). Left empty: a training
        set's own test split is in, a set of the same kind near, the rest far. Forgetting is
        judged on far sets, transfer reported on near sets.
    """

    name: str
    source: Literal["builtin", "hub", "file"] | None = None
    path: str | None = None
    format: Literal["mc", "generative"] | None = None
    kind: Literal["reasoning", "recall"] | None = None
    fields: FieldMap | None = None
    split: str | None = None
    subjects: list[str] | None = None
    # Seeded sample size (None = all). A list on a training set is a sweep dimension: one training set
    # per size, named <name>-n<size>, nested samples of one pool tested on the same items, so "rank
    # needed vs dataset size" is read off one run.
    n_train: int | list[int] | None = None
    n_test: int | None = Field(default=None, gt=0)
    # The set this one is a sample of (its rows, splits and test items); set by an n_train list, so
    # every size trains on nested rows of the same pool and is tested on the same items.
    sample_of: str | None = None
    # Training sets only: validation rows that pick the learning rate from a grid, disjoint by uid
    # and question from the training rows and the test split. The benchmark's own validation split
    # when it has one (and tests on another), else carved from the training pool before n_train is
    # sampled; 0 = none (a learning-rate grid then cannot be used).
    n_val: int = Field(default=50, ge=0)
    domain: Literal["in", "out"] | None = None
    on_bad_row: Literal["skip", "fail"] = "fail"
    # Which score decides gain/forgetting here: summed log-likelihood favours short choices.
    primary_metric: Literal["auto", "accuracy", "acc_norm"] = "auto"
    # in | near | far to the training sets (or {train_set: relation}); empty: by kind (docstring).
    relation: Relation | dict[str, Relation] | None = None
    # lm-eval tasks only: a local copy of the task's data in its own schema ({test: file} or one file
    # = test), read as lm-eval's `dataset_path: json`, so a hub task runs offline.
    data_files: dict[Literal["train", "validation", "test"], str] | str | None = None
    # lm-eval tasks only: few-shot examples in the prompt, drawn by lm-eval; 0 = zero-shot (its default).
    num_fewshot: int = Field(default=0, ge=0)
    # What training teaches: auto = the worked solution for generative sets that have one (GSM8K),
    # the answer for multiple choice; solution = every worked solution (MathQA's rationale too);
    # answer = bare final answers. Reasoning trained on bare numbers measures format, not skill.
    target: Literal["auto", "solution", "answer"] = "auto"
    # New tokens generated for this set (a worked solution needs ~256); None = the set's own
    # default (GSM8K: 256), else eval.max_new_tokens.
    max_new_tokens: int | None = Field(default=None, gt=0)
    # Training sequence length for this set (prompt + target); None = the set's own default
    # (GSM8K: 384), else train.max_length.
    max_length: int | None = Field(default=None, ge=8)

    @field_validator("name", "sample_of")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value or not all(ch.isalnum() or ch in "-_." for ch in value) or value.startswith("."):
            raise ValueError(
                f"dataset name {value!r} must be letters, digits, '-', '_' or '.', not starting with '.'"
            )
        return value

    @field_validator("n_train")
    @classmethod
    def _sizes(cls, value: int | list[int] | None) -> int | list[int] | None:
        problem = _size_problem(value)
        if problem:
            raise ValueError(problem)
        return value


def _size_problem(value) -> str | None:
    """Why an ``n_train`` value (a size, a list of sizes or None) is not usable; None when it is."""
    sizes = value if isinstance(value, list) else [] if value is None else [value]
    if not all(isinstance(size, int) for size in sizes):
        return f"n_train {value} must be whole numbers"  # the field itself sees them parsed; the expansion may not
    if any(size <= 0 for size in sizes):
        return f"n_train {value} must be positive"
    if isinstance(value, list) and not value:
        return "n_train is an empty list; give one size or several"
    if len(set(sizes)) != len(sizes):
        return f"n_train {value} contains duplicates; list each size once"
    return None


class DataSpec(Spec):
    """Training sets (each arm is trained once per training set) and evaluation sets.

    train: sets to train on; each arm is trained once per set and scored on its test split
        (in-domain) and on every other set (out-of-domain).
    eval: further sets every arm is scored on (forgetting and transfer).
    """

    train: list[DatasetSpec] = Field(min_length=1)
    eval: list[DatasetSpec] = Field(default_factory=list)
    seed: int = 0  # sampling of n_train/n_test: the same rows for every arm, whatever the arm's seed

    @model_validator(mode="before")
    @classmethod
    def _expand_sizes(cls, data):
        """A training set with ``n_train: [a, b]`` becomes the sets ``<name>-na`` and ``<name>-nb``,
        each ``sample_of`` the original: nested seeded samples of one pool, one test split."""
        if not isinstance(data, dict) or not isinstance(data.get("train"), list):
            return data
        expanded = []
        for entry in data["train"]:
            raw = entry.model_dump(exclude_unset=True) if isinstance(entry, DatasetSpec) else entry
            sizes = raw.get("n_train") if isinstance(raw, dict) else None
            if not isinstance(sizes, list) or not sizes or _size_problem(sizes):
                expanded.append(entry)  # not a list, or a bad one left for the field's own message
                continue
            if len(sizes) == 1:
                expanded.append({**raw, "n_train": sizes[0]})
                continue
            name = raw.get("name")
            for size in sizes:
                expanded.append({**raw, "name": f"{name}-n{size}", "sample_of": raw.get("sample_of") or name,
                                 "n_train": size})
        return {**data, "train": expanded}

    @model_validator(mode="after")
    def _eval_sizes(self) -> DataSpec:
        for spec in self.eval:
            if isinstance(spec.n_train, list):
                raise ValueError(f"data.eval: {spec.name}: n_train {spec.n_train} is a list; a list of sizes is a "
                                 "sweep dimension of training sets: move it under data.train")
        return self
