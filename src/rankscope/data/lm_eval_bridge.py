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
* **Import** (:func:`load_lmeval_task`): a dataset spec whose ``path`` is ``lmeval:<task>`` is
  built through lm-eval's ``TaskManager`` and each doc becomes an :class:`Example` through the
  task's own ``doc_to_text`` / ``doc_to_choice`` / ``doc_to_target``. Only this direction needs
  lm-eval installed (``pip install 'rankscope[lmeval]'``).

Sweep config for the import direction (the dataset name stays a plain key, the task goes in path)::

    data:
      eval:
        - {name: arc_easy_lm, path: "lmeval:arc_easy"}
        - {name: hellaswag, path: "lmeval:hellaswag", kind: recall}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rankscope.data.answers import extract_number
from rankscope.data.types import AnswerType, Example, Format, Kind, LoadedDataset, TaskInfo
from rankscope.errors import DatasetError

#: ``path:`` prefix naming an lm-eval task (or group) in a dataset spec.
LMEVAL_PREFIX = "lmeval:"
INSTALL_HINT = "pip install 'rankscope[lmeval]'"

#: The prompt frame, identical to :func:`rankscope.data.prompts.render_prompt` without a chat template.
DOC_TO_TEXT = "Question: {{question}}\nAnswer:"
_FRAME = re.compile(r"\AQuestion:[ \t]*(?P<q>.*?)\s*\nAnswer:\s*\Z", re.DOTALL)

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


# ---------------------------------------------------------------------------------------------
# Import: lm-eval task -> rankscope examples


def lmeval_task_of(path: str | None) -> str | None:
    """The task in a spec path ``lmeval:<task>``, else None.

    Also recognises the form ``config.resolve_paths`` gives a relative path (``/config/dir/lmeval:x``)
    when no such file exists, so a sweep config works whichever way its paths were resolved.
    """
    if not path:
        return None
    if path.startswith(LMEVAL_PREFIX):
        return path[len(LMEVAL_PREFIX):]
    tail = Path(path).name
    if tail.startswith(LMEVAL_PREFIX) and not Path(path).exists():
        return tail[len(LMEVAL_PREFIX):]
    return None


def lmeval_dataset_name(reference: str) -> str:
    """A dataset name (letters, digits, '-', '_', '.') for ``lmeval:<task>`` given on a command line."""
    task = reference[len(LMEVAL_PREFIX):] if reference.startswith(LMEVAL_PREFIX) else reference
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", task).lstrip(".")
    return name or "lmeval_task"


_TASK_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")


def _import_task_manager(where: str) -> Any:
    try:
        import lm_eval  # noqa: F401, PLC0415 - optional dependency, imported on use
        from lm_eval.tasks import TaskManager  # noqa: PLC0415
    except ImportError:
        raise DatasetError(where, "lm-eval tasks need the lm-eval package, which is not installed",
                           INSTALL_HINT) from None
    return TaskManager


def build_lmeval_tasks(task: str, where: str, include_path: str | Path | None = None,
                       include_defaults: bool = True) -> dict[str, Any]:
    """Leaf Task objects for a task or group name, built by lm-eval's TaskManager."""
    if not _TASK_NAME.match(task):
        raise DatasetError(where, f"{task!r} is not an lm-eval task name",
                           "write path: lmeval:<task>, e.g. lmeval:arc_easy")
    manager_cls = _import_task_manager(where)
    try:
        manager = manager_cls(include_path=str(include_path) if include_path else None,
                              include_defaults=include_defaults)
        if hasattr(manager, "load"):  # lm-eval >= 0.4.10
            leaves = dict(manager.load([task])["tasks"])
        else:  # older 0.4.x: nested {name or group: Task | {...}}
            from lm_eval.tasks import get_task_dict  # noqa: PLC0415

            leaves = dict(_flatten(get_task_dict([task], manager)))
    except DatasetError:
        raise
    except Exception as error:  # unknown name, download failure, bad YAML: all user-fixable
        raise DatasetError(where, f"lm-eval could not build task {task!r} ({type(error).__name__}: {error})",
                           "check the name (`lm_eval ls tasks`), the network or the local data") from None
    if not leaves:
        raise DatasetError(where, f"lm-eval task {task!r} has no subtasks", "check the task name")
    return leaves


def _flatten(tree: Mapping[Any, Any]) -> Iterable[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, Mapping):
            yield from _flatten(value)
        elif value is not None:
            yield str(getattr(key, "group_name", key)), value


def _docs(task_obj: Any, split: str | None, where: str) -> tuple[str, list[Any]]:
    order = [split] if split else ["test", "validation"]
    for name in order:
        if name not in {"test", "validation", "train"}:
            raise DatasetError(f"{where}: split", f"unknown split {name!r}", "use test, validation or train")
        has = getattr(task_obj, f"has_{'training' if name == 'train' else name}_docs")()
        if has:
            docs = getattr(task_obj, f"{'training' if name == 'train' else name}_docs")()
            return name, list(docs)
    raise DatasetError(f"{where}: split", f"the task has no {' or '.join(order)} split",
                       "set split: to one the task defines")


def _strip_frame(text: str) -> str:
    """``Question: X\\nAnswer:`` -> ``X``, so rankscope's own frame reproduces the task's prompt."""
    match = _FRAME.match(text)
    return match.group("q") if match else text.strip()


def _gsm8k_number(text: str) -> str:
    """A ``... #### N`` worked solution -> ``N`` (rankscope's gsm8k convention); other text unchanged."""
    if "####" in text:
        number = extract_number(text[text.rindex("####"):])
        if number is not None:
            return number
    return text


def doc_to_example(task_obj: Any, doc: Mapping[str, Any], output_type: str, uid: str, where: str) -> Example:
    """One lm-eval doc as an Example, through the task's own doc_to_text/choice/target."""
    text = task_obj.doc_to_text(doc)
    if not isinstance(text, str):
        raise DatasetError(where, "the task varies the context per choice (doc_to_text is not text)",
                           "use a task whose prompt is one text, e.g. arc_easy or gsm8k")
    description = getattr(task_obj.config, "description", None) or ""
    question = (description if isinstance(description, str) else "") + _strip_frame(text)
    target = task_obj.doc_to_target(doc)
    has_choices = getattr(task_obj.config, "doc_to_choice", None) is not None
    choices = [str(c) for c in task_obj.doc_to_choice(doc)] if has_choices else None
    if output_type == "multiple_choice":
        assert choices is not None
        if getattr(task_obj.config, "target_delimiter", " ") == "":
            choices = [c[1:] if c.startswith(" ") else c for c in choices]  # " x" already is the continuation
        if isinstance(target, list):
            target = target[0]
        gold = target if isinstance(target, int) else (choices.index(str(target)) if str(target) in choices else -1)
        if not 0 <= gold < len(choices):
            raise DatasetError(f"{where} {uid}", f"gold {target!r} is not one of the {len(choices)} choices",
                               "check the task's doc_to_target")
        return Example(question=question, answer=choices[gold], choices=tuple(choices), gold=gold, uid=uid)
    targets = target if isinstance(target, list) else [target]
    if choices is not None:  # generate_until with doc_to_choice: target indexes the choices
        targets = [choices[t] if isinstance(t, int) else t for t in targets]
    answers = [_gsm8k_number(str(t).strip()) for t in targets if str(t).strip()]
    if not answers:
        raise DatasetError(f"{where} {uid}", "empty target", "check the task's doc_to_target")
    return Example(question=question, answer=answers[0], aliases=tuple(dict.fromkeys(answers[1:])), uid=uid)


_OUTPUT_FORMATS: dict[str, Format] = {"multiple_choice": "mc", "generate_until": "generative"}


def load_lmeval_task(task: str, *, name: str, kind: Kind | None = None, fmt: Format | None = None,
                     split: str | None = None, for_training: bool = False,
                     include_path: str | Path | None = None, include_defaults: bool = True,
                     kind_default: Kind | None = None) -> tuple[TaskInfo, tuple[list[Example], list[Example]]]:
    """Examples of lm-eval task (or group) ``task``: (info, (train, test)).

    test: the task's test docs, else its validation docs (or ``split``). train: its training docs
    when ``for_training`` (otherwise not read). A group's subtasks are concatenated (uids
    ``<subtask>/<i>``); they must share one output type.
    """
    where = f"dataset {name!r} ({LMEVAL_PREFIX}{task})"
    leaves = build_lmeval_tasks(task, where, include_path, include_defaults)
    output_types = {getattr(t, "OUTPUT_TYPE", None) or t.config.output_type for t in leaves.values()}
    if len(output_types) != 1 or not output_types <= set(_OUTPUT_FORMATS):
        raise DatasetError(where, f"output type {', '.join(sorted(map(str, output_types)))} is not supported",
                           "use a multiple_choice or generate_until task")
    output_type = output_types.pop()
    task_format = _OUTPUT_FORMATS[output_type]
    if fmt and fmt != task_format:
        raise DatasetError(f"{where}: format", f"the task is {task_format}, not {fmt}",
                           f"remove format: or set it to {task_format}")
    kind = kind or kind_default
    if kind is None:
        raise DatasetError(f"{where}: kind", "an lm-eval task needs kind:", "add kind: reasoning or kind: recall")
    train: list[Example] = []
    test: list[Example] = []
    prefix = len(leaves) > 1
    for leaf_name, task_obj in leaves.items():
        split_name, docs = _docs(task_obj, split, where)
        stem = f"{leaf_name}/" if prefix else ""
        test += [doc_to_example(task_obj, doc, output_type, f"{stem}{split_name}-{i}", where)
                 for i, doc in enumerate(docs)]
        if for_training and split_name != "train" and task_obj.has_training_docs():
            train += [doc_to_example(task_obj, doc, output_type, f"{stem}train-{i}", where)
                      for i, doc in enumerate(task_obj.training_docs())]
    answer_type: AnswerType = "text"
    plain_number = re.compile(r"-?\d+(?:\.\d+)?")
    every = train + test
    if task_format == "generative" and every and all(plain_number.fullmatch(e.answer.replace(",", "")) for e in every):
        answer_type = "number"
    info = TaskInfo(name, kind, task_format, answer_type, f"lm-eval task {task}", "hub")
    return info, (train, test)
