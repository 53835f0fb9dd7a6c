"""The lm-evaluation-harness bridge: export rankscope sets as lm-eval tasks, load lm-eval tasks back.

Export checks need only PyYAML. The tests marked by ``pytest.importorskip("lm_eval")`` build the
exported tasks with lm-eval's own TaskManager (include_path = the export folder, no builtin task
index, no network) and check docs, rendered prompts, continuations and scoring against rankscope.
"""

from __future__ import annotations

import functools
import json
import re
import string
import sys
from types import SimpleNamespace

import pytest
import yaml

from rankscope.cli import main
from rankscope.config import DatasetSpec
from rankscope.data import lm_eval_bridge as bridge
from rankscope.data.answers import _NUMBER, extract_number, is_correct
from rankscope.data.prompts import continuation, render_prompt
from rankscope.data.registry import load_dataset, resolve_source
from rankscope.data.types import Example, LoadedDataset, TaskInfo
from rankscope.errors import DatasetError

PLAIN = SimpleNamespace(chat_template=None)  # a tokenizer without a chat template: the plain frame

# Keys of lm-eval 0.4.x's TaskConfig that an exported YAML may use.
TASK_CONFIG_KEYS = {
    "task", "dataset_path", "dataset_kwargs", "test_split", "output_type", "doc_to_text", "doc_to_choice",
    "doc_to_target", "target_delimiter", "generation_kwargs", "filter_list", "metric_list", "metadata",
}


def _export(tmp_path, name: str, n: int):
    dataset = load_dataset(DatasetSpec(name=name, n_test=n), seed=0)
    exported = bridge.export_lm_eval_task(dataset, tmp_path / "tasks")
    config = yaml.safe_load(exported.yaml_path.read_text(encoding="utf-8"))
    rows = [json.loads(line) for line in exported.jsonl_path.read_text(encoding="utf-8").splitlines()]
    return dataset, exported, config, rows


def _common_keys(config, exported, name):
    assert set(config) <= TASK_CONFIG_KEYS
    assert config["task"] == name and exported.yaml_path.name == f"{name}.yaml"
    assert config["dataset_path"] == "json" and config["test_split"] == "test"
    assert config["dataset_kwargs"] == {"data_files": {"test": str(exported.jsonl_path.resolve())}}
    assert config["doc_to_text"] == "Question: {{question}}\nAnswer:"
    assert config["target_delimiter"] == " "
    assert config["metadata"]["rankscope_dataset"] == name


def test_export_mc_capitals(tmp_path):
    dataset, exported, config, rows = _export(tmp_path, "capitals", 12)
    _common_keys(config, exported, "capitals")
    assert config["output_type"] == "multiple_choice"
    assert (config["doc_to_choice"], config["doc_to_target"]) == ("choices", "gold")
    assert [m["metric"] for m in config["metric_list"]] == ["acc", "acc_norm"]
    assert exported.rows == len(rows) == len(dataset.test) == 12
    for row, example in zip(rows, dataset.test, strict=True):
        assert (row["uid"], row["question"], row["answer"]) == (example.uid, example.question, example.answer)
        assert row["choices"] == list(example.choices) and row["gold"] == example.gold
        assert row["choices"][row["gold"]] == example.answer


def test_export_generative_number_arith_chain(tmp_path):
    dataset, exported, config, rows = _export(tmp_path, "arith_chain", 10)
    _common_keys(config, exported, "arith_chain")
    assert config["output_type"] == "generate_until" and config["doc_to_target"] == "target"
    assert "Question:" in config["generation_kwargs"]["until"] and config["generation_kwargs"]["do_sample"] is False
    [pipeline] = config["filter_list"]
    assert pipeline["name"] == "flexible-extract"
    assert [f["function"] for f in pipeline["filter"]] == ["regex", "take_first"]
    assert pipeline["filter"][0]["regex_pattern"] == bridge.NUMBER_REGEX
    [metric] = config["metric_list"]
    assert metric["metric"] == "exact_match" and metric["regexes_to_ignore"] == bridge.NUMBER_IGNORE
    assert [r["uid"] for r in rows] == [e.uid for e in dataset.test]
    for row, example in zip(rows, dataset.test, strict=True):
        assert row["question"] == example.question and row["answer"] == example.answer
        assert row["target"] == extract_number(example.answer) and row["target"].isdigit()


def _regex_filter(pattern: str, text: str) -> str:
    """lm-eval's RegexFilter with group_select 0 (findall, first non-empty group, else fallback)."""
    found = re.findall(pattern, text)
    if not found:
        return "[invalid]"
    match = found[0]
    if isinstance(match, tuple):
        match = next((m for m in match if m), "[invalid]")
    return match.strip()


def _exact_match(prediction: str, reference: str, ignore: list[str], punctuation: bool) -> bool:
    """lm-eval's exact_match: regexes_to_ignore, then ignore_case, then ignore_punctuation."""
    for pattern in ignore:
        prediction, reference = re.sub(pattern, "", prediction), re.sub(pattern, "", reference)
    prediction, reference = prediction.lower(), reference.lower()
    if punctuation:
        table = str.maketrans("", "", string.punctuation)
        prediction, reference = prediction.translate(table), reference.translate(table)
    return prediction == reference


def test_number_pattern_is_rankscopes():
    assert bridge._NUM == _NUMBER.pattern.removeprefix("(?<![\\w])")


@pytest.mark.parametrize("text", [
    "35", " 35.", "-7", "x = -7", "5 - 3 = 2", "1,234", "costs $1,234.50 total", "2.50", "1.5 and 1,000,000",
    "29 - 8 = 21. 21 + 14 = 35. The answer is 35.", "The answer is 12. Then 99 more", "So 4 #### 72\nQuestion: 8",
    "#### 1,200.0", "The final answer is: 17", "no number here", "v2 and x86", "3 apples, 4 pears; total 7",
    "He has 10 - 3 = 7 left.\n\nQuestion: Tom has 5", "answer is -3 then 4", "2.500", "10.0", "100", "2.05",
])
def test_number_filter_mirrors_extract_number(text):
    expected = extract_number(text)
    filtered = _regex_filter(bridge.NUMBER_REGEX, text)
    if expected is None:
        assert filtered == "[invalid]"
    else:
        assert _exact_match(filtered, expected, bridge.NUMBER_IGNORE, False), (filtered, expected)


@pytest.mark.parametrize("prediction", [
    "Paris", " paris.", "The answer is Paris", "Answer: Paris\nIt is in France", "\n\nParis\nmore", "the Paris",
    "London", "Paris, France", "A: Paris", "",
])
def test_text_filter_mirrors_is_correct(prediction):
    example = Example(question="What is the capital of France?", answer="Paris", aliases=("Paris city",))
    filtered = _regex_filter(bridge.SHORT_ANSWER_REGEX, prediction)
    scored = any(_exact_match(filtered, ref, bridge.TEXT_IGNORE, True) for ref in example.accepted_answers())
    ours = is_correct(prediction, example, "text")
    assert not scored or ours  # the exported task is never more lenient than rankscope
    # rankscope also accepts the answer stated in the first sentence ("Paris, France"); the exported
    # lm-eval task keeps lm-eval's strict exact match on the short answer.
    if prediction != "Paris, France":
        assert scored == ours


def test_export_refuses_names_that_leave_the_folder(tmp_path):
    info = TaskInfo("../escape", "recall", "generative")
    dataset = LoadedDataset(info, test=[Example(question="q", answer="a", uid="u")])
    with pytest.raises(DatasetError, match="escape"):
        bridge.export_lm_eval_task(dataset, tmp_path / "out")
    assert not any(tmp_path.rglob("*.yaml")) and not any(tmp_path.rglob("*.jsonl"))


def test_cli_export_and_show_default(tmp_path, capsys):
    out = tmp_path / "lm"
    assert main(["datasets", "export", "capitals", "--to", "lm-eval", "--out", str(out), "-n", "4"]) == 0
    assert "--include_path" in capsys.readouterr().out
    assert len((out / "capitals.jsonl").read_text().splitlines()) == 4 and (out / "capitals.yaml").is_file()
    assert main(["datasets", "export", "capitals"]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["datasets", "show", "capitals"]) == 0
    assert capsys.readouterr().out.count("--- test") == 3


# ---------------------------------------------------------------------------------------------
# lmeval:<task> specs


def test_lmeval_path_resolves_as_hub_and_rejects_other_sources():
    assert bridge.lmeval_task_of("lmeval:arc_easy") == "arc_easy"
    assert bridge.lmeval_task_of("/cfg/dir/lmeval:arc_easy") == "arc_easy"  # after config.resolve_paths
    assert bridge.lmeval_task_of("data/arc.jsonl") is None and bridge.lmeval_task_of(None) is None
    assert resolve_source(DatasetSpec(name="arc_lm", path="lmeval:arc_easy")) == "hub"
    assert resolve_source(DatasetSpec(name="arc_lm", source="hub", path="lmeval:arc_easy")) == "hub"
    with pytest.raises(DatasetError, match="source"):
        resolve_source(DatasetSpec(name="arc_lm", source="file", path="lmeval:arc_easy"))
    with pytest.raises(DatasetError, match="not an lm-eval task name"):
        load_dataset(DatasetSpec(name="x", path="lmeval:../../etc"))
    assert bridge.lmeval_dataset_name("lmeval:mmlu/anatomy") == "mmlu_anatomy"


def test_lmeval_without_the_package_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # makes `import lm_eval` raise ImportError
    monkeypatch.setitem(sys.modules, "lm_eval.tasks", None)
    with pytest.raises(DatasetError) as info:
        load_dataset(DatasetSpec(name="arc_lm", path="lmeval:arc_easy"))
    message = str(info.value)
    assert "arc_easy" in message and "pip install 'rankscope[lmeval]'" in message
    assert main(["datasets", "show", "lmeval:arc_easy"]) == 2
    assert "rankscope[lmeval]" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# With lm-eval installed: its TaskManager reads the exported folder


@pytest.fixture()
def lm_eval_offline(monkeypatch, tmp_path):
    pytest.importorskip("lm_eval")
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))  # not ~/.cache
    from lm_eval.tasks import TaskManager

    return TaskManager


def test_lm_eval_task_manager_reads_the_export(tmp_path, lm_eval_offline):
    sets = {name: _export(tmp_path, name, 6)[0] for name in ("capitals", "arith_chain", "capitals_gen")}
    manager = lm_eval_offline(include_path=str(tmp_path / "tasks"), include_defaults=False)
    tasks = manager.load(list(sets))["tasks"]
    assert set(tasks) == set(sets)
    for name, dataset in sets.items():
        task = tasks[name]
        docs = list(task.test_docs())
        assert [d["uid"] for d in docs] == [e.uid for e in dataset.test]
        for index, (doc, example) in enumerate(zip(docs, dataset.test, strict=True)):
            context = task.doc_to_text(doc)
            assert context == render_prompt(PLAIN, example.question)
            requests = task.construct_requests(doc, context, metadata=(name, index, 1))
            if dataset.info.format == "mc":
                assert task.doc_to_choice(doc) == list(example.choices)
                assert task.doc_to_target(doc) == example.gold
                assert [r.arguments for r in requests] == [(context, continuation(PLAIN, c)) for c in example.choices]
                scores = [(0.0 if j == example.gold else -5.0, False) for j in range(len(example.choices))]
                assert task.process_results(doc, scores)["acc"] == 1.0
                continue
            [request] = requests if isinstance(requests, list) else [requests]
            assert request.arguments[0] == context and "Question:" in request.arguments[1]["until"]
            gold = task.doc_to_target(doc)
            for prediction in (f" {example.answer}", " I think it is 3.\n", f" The answer is {example.answer}!"):
                request.resps = [prediction]
                for ensemble in task._filters:
                    ensemble.apply([request])
                [filtered] = request.filtered_resps.values()
                expected = float(is_correct(prediction, example, dataset.info.answer_type))
                assert task.process_results(doc, [filtered])["exact_match"] == expected, (name, prediction, gold)


def test_lmeval_tasks_load_back_as_examples(tmp_path, lm_eval_offline, monkeypatch):
    """The import direction on local tasks: rankscope's export, and ARC/GSM8K-style templated YAMLs."""
    capitals = _export(tmp_path, "capitals", 5)[0]
    arith = _export(tmp_path, "arith_chain", 5)[0]
    tasks = tmp_path / "tasks"
    (tasks / "arc.jsonl").write_text(json.dumps({
        "question": "Which is a mammal?", "answerKey": "B",
        "choices": {"text": ["trout", "whale", "shark"], "label": ["A", "B", "C"]}}) + "\n")
    (tasks / "arc_like.yaml").write_text(
        "task: arc_like\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {tasks / 'arc.jsonl'}}}}}\ntest_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Question: {{question}}\\nAnswer:"\n'
        'doc_to_target: "{{choices.label.index(answerKey)}}"\ndoc_to_choice: "{{choices.text}}"\n')
    (tasks / "gsm.jsonl").write_text(json.dumps({"question": "2 + 3?", "answer": "2 + 3 = 5\n#### 5"}) + "\n")
    (tasks / "gsm_like.yaml").write_text(
        "task: gsm_like\ndataset_path: json\n"
        f"dataset_kwargs: {{data_files: {{test: {tasks / 'gsm.jsonl'}}}}}\ntest_split: test\n"
        'output_type: generate_until\ndoc_to_text: "Question: {{question}}\\nAnswer:"\ndoc_to_target: "{{answer}}"\n'
        'generation_kwargs: {until: ["Question:"]}\n')
    local = functools.partial(bridge.load_lmeval_task, include_path=tasks, include_defaults=False)
    monkeypatch.setattr("rankscope.data.registry.load_lmeval_task", local)

    back = load_dataset(DatasetSpec(name="caps_lm", path="lmeval:capitals", kind="recall"))
    assert back.info.format == "mc" and back.info.source == "hub"
    assert [(e.question, e.choices, e.gold, e.answer) for e in back.test] == \
        [(e.question, e.choices, e.gold, e.answer) for e in capitals.test]

    numbers = load_dataset(DatasetSpec(name="arith_lm", path="lmeval:arith_chain", kind="reasoning"))
    assert numbers.info.answer_type == "number"
    assert [e.answer for e in numbers.test] == [extract_number(e.answer) for e in arith.test]

    [arc] = load_dataset(DatasetSpec(name="arc_lm", path="lmeval:arc_like", kind="reasoning")).test
    assert (arc.question, arc.choices, arc.gold, arc.answer) == ("Which is a mammal?", ("trout", "whale", "shark"),
                                                                  1, "whale")
    gsm = load_dataset(DatasetSpec(name="gsm_lm", path="lmeval:gsm_like", kind="reasoning"))
    assert gsm.info.answer_type == "number" and [(e.question, e.answer) for e in gsm.test] == [("2 + 3?", "5")]

    with pytest.raises(DatasetError, match="kind"):
        load_dataset(DatasetSpec(name="arc_lm", path="lmeval:arc_like"))
    with pytest.raises(DatasetError, match="is mc, not generative"):
        load_dataset(DatasetSpec(name="arc_lm", path="lmeval:arc_like", kind="recall", format="generative"))
    with pytest.raises(DatasetError, match="could not build task 'no_such_task'"):
        load_dataset(DatasetSpec(name="nope", path="lmeval:no_such_task", kind="recall"))
