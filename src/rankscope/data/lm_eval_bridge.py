"""Bridge to EleutherAI's lm-evaluation-harness (lm-eval 0.4.x, the optional ``lmeval`` extra).

Two directions:

* **Export** (:func:`export_lm_eval_task`): any rankscope dataset becomes an lm-eval task folder,
  ``<name>.yaml`` (the task config) next to ``<name>.jsonl`` (the rows), so the same questions
  can be scored by ``lm_eval --include_path DIR --tasks <name>``. The prompt is rankscope's plain
  frame ``Question: ...\\nAnswer:``; multiple-choice options are scored as continuations after a
  space (``target_delimiter: " "``), as lm-eval's ``arc_easy`` does, with ``acc``/``acc_norm``.
  Generative sets use ``generate_until`` and ``exact_match`` after a filter that mirrors
  :func:`rankscope.data.answers.extract_number` (number answers, compared with a ``target`` column
  holding the answer's final number, since an answer may be a worked solution) or rankscope's
  short-answer rule (text answers, against ``answer``, or the ``targets`` list when aliases exist).
  The exported text task keeps lm-eval's strict exact match; rankscope's own scorer also accepts
  the answer stated in the first sentence, so it can only score a chat model higher.
  Writing needs only PyYAML; lm-eval is not imported.
* **Import** (:func:`load_lmeval_task`, in :mod:`rankscope.data.lm_eval_tasks`): a dataset spec
  whose ``path`` is ``lmeval:<task>`` is built through lm-eval's ``TaskManager``; a multiple-choice
  task keeps its own prompt, continuations and metric (acc, acc_norm). Only this direction needs
  lm-eval installed (``pip install 'rankscope[lmeval]'``).

Sweep config for the import direction (the dataset name stays a plain key, the task goes in path;
``data_files`` runs a hub task offline on a local copy in its own schema)::

    data:
      eval:
        - {name: arc_easy_lm, path: "lmeval:arc_easy"}
        - {name: arc_easy_local, path: "lmeval:arc_easy", data_files: {test: arc_easy_test.jsonl}}
        - {name: hellaswag, path: "lmeval:hellaswag", kind: recall}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rankscope.data.answers import extract_number
from rankscope.data.types import Example, LoadedDataset, TaskInfo
from rankscope.errors import DatasetError

# The import direction lives in lm_eval_tasks; re-exported here, where callers have found it.
from rankscope.data.lm_eval_tasks import (  # noqa: F401
    INSTALL_HINT,
    LMEVAL_PREFIX,
    build_lmeval_tasks,
    doc_to_example,
    lmeval_dataset_name,
    lmeval_task_of,
    load_lmeval_task,
)

#: The prompt frame, identical to :func:`rankscope.data.prompts.render_prompt` without a chat template.
DOC_TO_TEXT = "Question: {{question}}\nAnswer:"

#: Stop sequences for generative tasks: lm-eval's gsm8k set plus a blank line (next question).
UNTIL = ["\n\n", "Question:", "</s>", "<|im_end|>"]

# A number as rankscope's answers._NUMBER writes it (kept in sync by a test).
_NUM = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"

#: One regex reproducing extract_number for lm-eval's ``regex`` filter: anchored at the start, so
#: ``findall`` yields one match whose first non-empty group is the answer. Alternatives in
#: extract_number's order: the first number after ``####``; else the first number after "The
#: (final) answer is"; else the last number (greedy ``.*`` backtracks to the rightmost number start;
#: the look-behinds reject starts inside "1,234" / "2.5" and keep a leading minus). It differs from
#: extract_number only on digit runs glued by a comma or dot that are not one number ("5,6", "v1.5").
NUMBER_REGEX = (
    r"(?is)\A(?:"
    rf".*?####.*?(?<![\w])({_NUM})"
    rf"|.*?the (?:final )?answer is.*?(?<![\w])({_NUM})"
    rf"|.*(?<![\w])(?<!\d,)(?<!\d\.)(?:(?<!-)|(?<=\w-))({_NUM})"
    r")"
)

#: Text answers: the first non-empty line, without a leading "The answer is" / "Answer:" / "A:"
#: (rankscope's answers._short_answer), for exact match after SQuAD-like normalization.
SHORT_ANSWER_REGEX = r"(?i)\A\s*(?:(?:the (?:final )?answer is|answer[ \t]*:|a[ \t]*:)[ \t]*)?([^\n]*)"

#: Applied to prediction and reference before exact match (then case and punctuation are ignored):
#: thousands commas, a dollar sign, and zeros ending a decimal part ("2.50" = "2.5", "1200.0" = "1200";
#: lm-eval's look-behinds are fixed-width, so up to three decimals before the zeros).
NUMBER_IGNORE = [",", r"\$", r"(?<=\.\d)0+$|(?<=\.\d\d)0+$|(?<=\.\d\d\d)0+$|\.0+$"]
TEXT_IGNORE = [r"(?i)\b(?:a|an|the)\b", r"\s+"]


def _safe_name(name: str) -> str:
    """A file stem that cannot leave the export folder (same rule as DatasetSpec.name)."""
    if not name or name.startswith(".") or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise DatasetError(f"export name {name!r}", "must be letters, digits, '-', '_' or '.', not starting with '.'",
                           "rename the dataset")
    return name


# ---------------------------------------------------------------------------------------------
# Export: rankscope dataset -> lm-eval task folder


@dataclass(frozen=True)
class ExportedTask:
    """What :func:`export_lm_eval_task` wrote."""

    task: str
    yaml_path: Path
    jsonl_path: Path
    rows: int


def task_rows(examples: Sequence[Example], info: TaskInfo) -> list[dict[str, Any]]:
    """The JSONL rows of an exported task: one per example, in order."""
    with_aliases = info.format == "generative" and any(e.aliases for e in examples)
    rows: list[dict[str, Any]] = []
    for example in examples:
        row: dict[str, Any] = {"uid": example.uid, "question": example.question, "answer": example.answer}
        if info.format == "mc":
            if example.choices is None or example.gold is None:
                raise DatasetError(f"dataset {info.name!r} row {example.uid!r}", "an mc row without choices/gold",
                                   "check the dataset's format")
            row["choices"] = list(example.choices)
            row["gold"] = int(example.gold)
        elif info.answer_type == "number":
            # exact match compares the filtered number with this column (the answer may be a worked solution)
            numbers = [extract_number(a) for a in example.accepted_answers()]
            row["target"] = next((n for n in numbers if n is not None), example.answer)
        elif with_aliases:
            row["targets"] = list(example.accepted_answers())
        rows.append(row)
    return rows


def task_config(info: TaskInfo, task: str, data_file: str, *, multi_target: bool = False) -> dict[str, Any]:
    """The lm-eval task config (a dict, dumped as ``<task>.yaml``)."""
    config: dict[str, Any] = {
        "task": task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": data_file}},
        "test_split": "test",
        "doc_to_text": DOC_TO_TEXT,
        "target_delimiter": " ",
    }
    if info.format == "mc":
        config.update({
            "output_type": "multiple_choice",
            "doc_to_choice": "choices",  # column names: lm-eval reads doc[...] directly
            "doc_to_target": "gold",
            "metric_list": [
                {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
            ],
        })
    else:
        number = info.answer_type == "number"
        config.update({
            "output_type": "generate_until",
            "doc_to_target": "target" if number else ("targets" if multi_target else "answer"),
            "generation_kwargs": {"until": list(UNTIL), "do_sample": False, "temperature": 0.0,
                                  # the set's own generation length (GSM8K: 256), as rankscope generates
                                  **({"max_gen_toks": info.max_new_tokens} if info.max_new_tokens else {})},
            "filter_list": [{
                "name": "flexible-extract" if number else "short-answer",
                "filter": [
                    {"function": "regex", "regex_pattern": NUMBER_REGEX if number else SHORT_ANSWER_REGEX,
                     "group_select": 0},
                    {"function": "take_first"},
                ],
            }],
            "metric_list": [{
                "metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                "ignore_case": True, "ignore_punctuation": not number,
                "regexes_to_ignore": list(NUMBER_IGNORE if number else TEXT_IGNORE),
            }],
        })
    config["metadata"] = {"version": 1.0, "rankscope_dataset": info.name, "kind": info.kind,
                          "format": info.format, "answer_type": info.answer_type}
    return config


class _Dumper(yaml.SafeDumper):
    """Strings with a newline as one double-quoted line ("Question: {{question}}\nAnswer:")."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if "\n" in value else None)


_Dumper.add_representer(str, _represent_str)


def export_lm_eval_task(dataset: LoadedDataset, out_dir: str | Path, *, split: str = "test",
                        relative_data_file: bool = False) -> ExportedTask:
    """Write ``out_dir/<name>.yaml`` and ``out_dir/<name>.jsonl`` for one split of ``dataset``.

    The YAML points at the JSONL by absolute path (lm-eval hands ``data_files`` to
    ``datasets.load_dataset``, which resolves relative paths against the working directory);
    ``relative_data_file=True`` writes the bare file name instead, for a folder that is moved and
    evaluated from inside itself.
    """
    info = dataset.info
    task = _safe_name(info.name)
    examples = {"test": dataset.test, "train": dataset.train}.get(split)
    if examples is None:
        raise DatasetError(f"export split {split!r}", "unknown split", "use test or train")
    if not examples:
        raise DatasetError(f"dataset {info.name!r}", f"has no {split} rows to export", "pick another split")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jsonl_path = out / f"{task}.jsonl"
    yaml_path = out / f"{task}.yaml"
    rows = task_rows(examples, info)
    with open(jsonl_path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    data_file = jsonl_path.name if relative_data_file else str(jsonl_path.resolve())
    config = task_config(info, task, data_file, multi_target=any("targets" in row for row in rows))
    header = (f"# lm-eval task exported by rankscope from dataset {info.name!r} ({split} split, {len(rows)} rows).\n"
              f"# Run: lm_eval --model hf --model_args pretrained=MODEL --include_path {out} --tasks {task}\n")
    text = yaml.dump(config, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=1000)
    yaml_path.write_text(header + text, encoding="utf-8")
    return ExportedTask(task, yaml_path, jsonl_path, len(rows))
