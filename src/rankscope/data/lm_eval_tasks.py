"""Import an lm-evaluation-harness task (``path: lmeval:<task>``) as rankscope examples, as lm-eval defines it.

The task is built by lm-eval's own ``TaskManager`` and every multiple-choice request by the task's
own ``fewshot_context`` / ``construct_requests`` (its description, ``doc_to_text``,
``target_delimiter`` and ``doc_to_choice``; zero-shot unless ``num_fewshot`` says otherwise), so
nothing of its templating is re-implemented here. Each :class:`Example` carries that verbatim
context and the scored continuations; the scorer (:mod:`rankscope.evaluate.lm_eval_scoring`)
tokenizes them as lm-eval's HF model does and reports lm-eval's ``acc`` (as ``accuracy``) and
``acc_norm``, so the numbers compare one to one with an ``lm_eval`` run of the same model.

Training on such a set uses rankscope's own prompt (the question without the task's frame, as
every arm is trained), while evaluation keeps the task's prompt, so the in-domain number of an
lm-eval training set is measured in lm-eval's format.

Generative tasks keep the older mapping: the question is the task's ``doc_to_text`` without its
``Question: ...\\nAnswer:`` frame and rankscope's own prompt and scorer are used (lm-eval's
filters and stop sequences are not reproduced).

Offline: a task whose data lives on the hub runs on a local copy in the task's own schema, given
as ``data_files`` (``{test: file}``, or one file meaning test). The task's YAML is read from
lm-eval's index and rebuilt with ``dataset_path: json`` and those ``data_files``, which is how
lm-eval itself reads local data; everything else in the task (prompt, target, metric) is kept.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rankscope.data.answers import extract_number
from rankscope.data.types import AnswerType, Example, Format, Kind, TaskInfo
from rankscope.errors import DatasetError

#: ``path:`` prefix naming an lm-eval task (or group) in a dataset spec.
LMEVAL_PREFIX = "lmeval:"
INSTALL_HINT = "pip install 'rankscope[lmeval]'"

_FRAME = re.compile(r"\AQuestion:[ \t]*(?P<q>.*?)\s*\nAnswer:\s*\Z", re.DOTALL)
_TASK_NAME = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.\-]*\Z")
_SPLIT_KEYS = {"train": "training_split", "validation": "validation_split", "test": "test_split"}
_OFFLINE_WORDS = ("offline", "connect", "resolve", "couldn't reach", "network", "unreachable", "max retries")
OFFLINE_FIX = ("offline, give data_files: a local copy in the task's schema "
               "(e.g. data_files: {test: arc_easy.jsonl} with the hub dataset's columns)")


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


def _import_task_manager(where: str) -> Any:
    try:
        import lm_eval  # noqa: F401, PLC0415 - optional dependency, imported on use
        from lm_eval.tasks import TaskManager  # noqa: PLC0415
    except ImportError:
        raise DatasetError(where, "lm-eval tasks need the lm-eval package, which is not installed",
                           INSTALL_HINT) from None
    return TaskManager


@functools.lru_cache(maxsize=4)
def task_manager(include_path: str | None = None, include_defaults: bool = True) -> Any:
    """lm-eval's TaskManager, built once per process: indexing its ~10k task YAMLs takes seconds.

    ``load`` builds fresh Task objects on every call, so one index serves every dataset.
    """
    return _import_task_manager(f"{LMEVAL_PREFIX}tasks")(include_path=include_path, include_defaults=include_defaults)


def _load_task_yaml(path: Path) -> dict[str, Any]:
    """A task YAML as lm-eval reads it (``include:`` merged, ``!function`` resolved)."""
    try:
        from lm_eval.tasks._yaml_loader import load_yaml  # noqa: PLC0415 - lm-eval >= 0.4.10

        return dict(load_yaml(path, resolve_func=True))
    except ImportError:
        from lm_eval.utils import load_yaml_config  # noqa: PLC0415 - older 0.4.x

        return dict(load_yaml_config(yaml_path=str(path), mode="full"))


def local_task_config(manager: Any, task: str, data_files: Mapping[str, str], where: str) -> dict[str, Any]:
    """The registered task's config, reading its data from local files (lm-eval's ``dataset_path: json``).

    Split names are the files' roles (train / validation / test); a split without a file is
    dropped from the task, so lm-eval never looks for it on the hub. Few-shot examples then come
    from the local train (else validation) file, as lm-eval falls back when a task has no
    ``fewshot_split``.
    """
    entry = manager.task_index.get(task)
    kind = getattr(getattr(entry, "kind", None), "name", "")
    if entry is None or kind not in {"TASK"} or getattr(entry, "yaml_path", None) is None:
        what = "not a task lm-eval knows" if entry is None else f"a {kind.lower() or 'python'} entry, not a YAML task"
        raise DatasetError(f"{where}: data_files", f"{task!r} is {what}; local files replace one task's data",
                           "name one YAML task (`lm_eval ls tasks`), e.g. lmeval:arc_easy or lmeval:mmlu_anatomy")
    unknown = set(data_files) - set(_SPLIT_KEYS)
    if unknown or not data_files:
        raise DatasetError(f"{where}: data_files", f"unknown split {sorted(unknown)}" if unknown else "is empty",
                           "give {test: FILE} (and optionally train:, validation:)")
    for split, file in data_files.items():
        if not Path(file).is_file():
            raise DatasetError(f"{where}: data_files.{split}", f"no such file {file}",
                               "point it at a local JSON/JSONL copy in the task's schema")
    config = _load_task_yaml(Path(entry.yaml_path))
    config.update({"task": task, "dataset_path": "json", "dataset_name": None,
                   "dataset_kwargs": {"data_files": {k: str(v) for k, v in data_files.items()}},
                   "fewshot_split": None})
    config.update({key: (split if split in data_files else None) for split, key in _SPLIT_KEYS.items()})
    for key in ("tag", "group"):
        config.pop(key, None)
    return config


def build_lmeval_tasks(task: str, where: str, include_path: str | Path | None = None,
                       include_defaults: bool = True,
                       data_files: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Leaf Task objects for a task or group name, built by lm-eval's TaskManager.

    data_files: a local copy of one task's data ({split: file}); see :func:`local_task_config`.
    """
    if not _TASK_NAME.match(task):
        raise DatasetError(where, f"{task!r} is not an lm-eval task name",
                           "write path: lmeval:<task>, e.g. lmeval:arc_easy")
    _import_task_manager(where)
    try:
        manager = task_manager(str(include_path) if include_path else None, include_defaults)
        request: Any = local_task_config(manager, task, data_files, where) if data_files else task
        if hasattr(manager, "load"):  # lm-eval >= 0.4.10
            leaves = dict(manager.load([request])["tasks"])
        else:  # older 0.4.x: nested {name or group: Task | {...}}
            from lm_eval.tasks import get_task_dict  # noqa: PLC0415

            leaves = dict(_flatten(get_task_dict([request], manager)))
    except DatasetError:
        raise
    except Exception as error:  # unknown name, no network, bad YAML or local file: all user-fixable
        said = f"{type(error).__name__}: {error}"
        if not data_files and any(word in said.lower() for word in _OFFLINE_WORDS):
            raise DatasetError(where, f"lm-eval could not fetch the data of task {task!r} from the hub ({said})",
                               OFFLINE_FIX) from None
        fix = ("check that the files hold the task's columns (its doc_to_text/doc_to_choice names)" if data_files
               else f"check the name (`lm_eval ls tasks`); {OFFLINE_FIX}")
        raise DatasetError(where, f"lm-eval could not build task {task!r} ({said})", fix) from None
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


def lm_eval_requests(task_obj: Any, doc: Mapping[str, Any], num_fewshot: int, doc_id: int,
                     where: str) -> tuple[str, tuple[str, ...]]:
    """(context, continuations) of a multiple-choice doc, exactly as lm-eval's loglikelihood requests.

    Built by the task's own ``fewshot_context`` and ``construct_requests`` (what lm-eval's
    ``build_all_requests`` calls per doc), without a chat template, as ``lm_eval --model hf`` runs.
    """
    kwargs: dict[str, Any] = {}
    if "gen_prefix" in inspect.signature(task_obj.fewshot_context).parameters:
        kwargs["gen_prefix"] = task_obj.doc_to_prefix(doc)
    context = task_obj.fewshot_context(doc, num_fewshot=num_fewshot, **kwargs)
    requests = task_obj.construct_requests(doc=doc, ctx=context, metadata=(task_obj.config.task, doc_id, 1))
    requests = requests if isinstance(requests, list) else [requests]
    n_choices = len(task_obj.doc_to_choice(doc))
    arguments = [r.arguments for r in requests[:n_choices]]  # acc_mutual_info appends unconditional ones
    if not isinstance(context, str) or any(a[0] != context for a in arguments):
        raise DatasetError(where, "the task varies the context per choice (a multiple-input task)",
                           "use a task whose choices continue one prompt, e.g. arc_easy or mmlu")
    return context, tuple(str(a[1]) for a in arguments)


def doc_to_example(task_obj: Any, doc: Mapping[str, Any], output_type: str, uid: str, where: str,
                   num_fewshot: int = 0, doc_id: int = 0) -> Example:
    """One lm-eval doc as an Example, through the task's own doc_to_text/choice/target.

    Multiple choice: the Example keeps lm-eval's verbatim context and continuations (``prompt``,
    ``continuations``) and its choices exactly as ``doc_to_choice`` gives them (their lengths are
    acc_norm's normaliser). The question (for training and display) is doc_to_text without the
    ``Question: ...\\nAnswer:`` frame.
    """
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
        if isinstance(target, list):
            target = target[0]
        gold = target if isinstance(target, int) else (choices.index(str(target)) if str(target) in choices else -1)
        if not 0 <= gold < len(choices):
            raise DatasetError(f"{where} {uid}", f"gold {target!r} is not one of the {len(choices)} choices",
                               "check the task's doc_to_target")
        prompt, continuations = lm_eval_requests(task_obj, doc, num_fewshot, doc_id, where)
        return Example(question=question, answer=choices[gold], choices=tuple(choices), gold=gold, uid=uid,
                       prompt=prompt, continuations=continuations)
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
                     kind_default: Kind | None = None, data_files: Mapping[str, str] | str | None = None,
                     num_fewshot: int = 0) -> tuple[TaskInfo, tuple[list[Example], list[Example]]]:
    """Examples of lm-eval task (or group) ``task``: (info, (train, test)).

    test: the task's test docs, else its validation docs (or ``split``). train: its training docs
    when ``for_training`` (otherwise not read). A group's subtasks are concatenated (uids
    ``<subtask>/<i>``); they must share one output type. data_files: a local copy of the task's
    data (one file = the test split). num_fewshot: few-shot examples lm-eval puts in each prompt.
    """
    where = f"dataset {name!r} ({LMEVAL_PREFIX}{task})"
    files = {"test": data_files} if isinstance(data_files, str) else data_files
    leaves = build_lmeval_tasks(task, where, include_path, include_defaults, files)
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
        test += [doc_to_example(task_obj, doc, output_type, f"{stem}{split_name}-{i}", where, num_fewshot, i)
                 for i, doc in enumerate(docs)]
        if for_training and split_name != "train" and task_obj.has_training_docs():
            train += [doc_to_example(task_obj, doc, output_type, f"{stem}train-{i}", where, num_fewshot, i)
                      for i, doc in enumerate(task_obj.training_docs())]
    answer_type: AnswerType = "text"
    plain_number = re.compile(r"-?\d+(?:\.\d+)?")
    every = train + test
    if task_format == "generative" and every and all(plain_number.fullmatch(e.answer.replace(",", "")) for e in every):
        answer_type = "number"
    info = TaskInfo(name, kind, task_format, answer_type, f"lm-eval task {task}", "file" if files else "hub")
    return info, (train, test)
