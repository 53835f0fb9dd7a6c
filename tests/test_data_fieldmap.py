"""The one conversion path: field maps, benchmark declarations, and the same rows read any way.

A benchmark is a field map like a user file's, so the same rows must give the same Examples
whether they arrive as the benchmark's upstream file, from the hub, or as a user file mapped by
``fields:`` (where a user's map can say what the benchmark's says).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankscope.config import DatasetSpec, FieldMap
from rankscope.data import load_dataset, schemas
from rankscope.data.benchmarks import BENCHMARKS, Benchmark
from rankscope.data.fieldmap import RowMap, Schema, When, to_example
from rankscope.data.rows import RowError

# --- declarations -------------------------------------------------------------------------------


def test_every_benchmark_declares_schemas_of_its_format():
    for bench in BENCHMARKS.values():
        assert bench.file_schema.format == bench.hub_schema.format == bench.format, bench.name
        assert bench.file_schema.shapes[-1].when is None and bench.hub_schema.shapes[-1].when is None


@pytest.mark.parametrize(("fields", "problem"), [
    ({"choices": "c", "aliases": "a"}, "apply to generative"),
    ({"choices": "c", "answer_form": "gsm8k_solution"}, "apply to generative"),
    ({"solution": "s"}, "apply to multiple-choice"),
    ({"gold": "letter"}, "apply to multiple-choice"),
    ({"choices": ("a", "b"), "choices_form": "labeled"}, "reads one column"),
    ({"choices": "c", "gold": "label"}, "needs choices_form 'labeled'"),
])
def test_inconsistent_field_maps_fail_at_declaration(fields, problem):
    with pytest.raises(ValueError, match=problem):
        RowMap(**fields)


def test_schema_shapes_must_end_in_one_catch_all_and_share_a_format():
    with pytest.raises(ValueError, match="last shape"):
        Schema(RowMap(when=When("x")))
    with pytest.raises(ValueError, match="only the last"):
        Schema(RowMap(), RowMap())
    with pytest.raises(ValueError, match="same format"):
        Schema(RowMap(when=When("x"), choices="c"), RowMap())
    with pytest.raises(ValueError, match="generative schema for a mc set"):
        dataclasses.replace(BENCHMARKS["mmlu"], file_schema=schemas.gsm8k)


def test_shapes_are_told_apart_by_their_key():
    hub = {"question": "Sky?", "choices": {"label": ["A", "B"], "text": ["red", "blue"]}, "answerKey": "B"}
    labeled = [{"label": "A", "text": "red"}, {"label": "B", "text": "blue"}]
    original = {"question": {"stem": "Sky?", "choices": labeled}, "answerKey": "B"}
    reformatted = {"query": "Question: Sky?\nAnswer:", "choices": ["red", "blue"], "gold": 1}
    examples = [schemas.labeled_choices(row, "u") for row in (hub, original, reformatted)]
    assert examples[0] == examples[1] == examples[2]
    assert (examples[0].question, examples[0].answer, examples[0].gold) == ("Sky?", "blue", 1)


def test_a_bad_row_names_the_field_the_map_reads():
    with pytest.raises(RowError) as info:
        to_example({"question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 5},
                   schemas.medmcqa_file, "u")
    assert info.value.field == "cop" and "1-4" in info.value.problem
    with pytest.raises(RowError) as info:
        to_example(["not", "a", "row"], schemas.gsm8k, "u")
    assert info.value.field == "row"


def test_user_field_map_becomes_a_row_map():
    mc = RowMap.from_field_map(FieldMap(question="q", choices="A, B ,C", answer="ans", id="key"), "mc")
    assert (mc.question, mc.choices, mc.answer, mc.id, mc.gold) == ("q", ("A", "B", "C"), "ans", ("key",), "any")
    assert RowMap.from_field_map(FieldMap(choices=["opts"]), "mc").choices == "opts"
    assert RowMap.from_field_map(FieldMap(), "mc").choices == "choices"
    gen = RowMap.from_field_map(FieldMap(choices="ignored", aliases="alt"), "generative")
    assert (gen.format, gen.choices, gen.aliases, gen.id) == ("generative", None, "alt", ())


# --- the same rows, read any way ----------------------------------------------------------------

#: One valid row per benchmark in its upstream file schema, and the same row as the hub has it.
ROWS = {
    "gsm8k": ({"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"},) * 2,
    "mathqa": ({"Problem": "p?", "options": "a ) 1 , b ) 2", "correct": "b", "Rationale": "\"1+1\""},) * 2,
    "mmlu": ({"question": "Bones?", "A": "206", "B": "12", "C": "5", "D": "1", "answer": "A"},
             {"question": "Bones?", "choices": ["206", "12", "5", "1"], "answer": 0}),
    "medmcqa": ({"id": "m1", "question": "Q?", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": 3},
                {"id": "m1", "question": "Q?", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": 2}),
    "arc_easy": ({"id": "a1", "answerKey": "2", "question": {"stem": "Sky?", "choices": [
        {"label": "1", "text": "red"}, {"label": "2", "text": "blue"}]}},
        {"id": "a1", "question": "Sky?", "answerKey": "2", "choices": {"label": ["1", "2"], "text": ["red", "blue"]}}),
    "triviaqa": ({"context": "Question: Capital of France?\nAnswer:", "answer": "Paris", "aliases": ["Paris", "Paree"]},
                 {"question": "Capital of France?", "answer": {"value": "Paris", "aliases": ["Paree"]}}),
    "nq_open": ({"question": "who wrote hamlet", "answer": ["Shakespeare", "W. Shakespeare"]},) * 2,
}


def _fake_hub(monkeypatch, rows_by_key):
    def load(path, name=None, split=None, **kwargs):
        return [dict(r) for r in rows_by_key[(path, name, split)]]

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load))


@pytest.mark.parametrize("name", sorted(ROWS))
def test_a_benchmark_reads_the_same_from_its_file_and_from_the_hub(tmp_path, monkeypatch, name):
    """Two sources, one converter: the Examples (ids included) do not depend on where rows came from,
    even where the schemas differ (MMLU's CSV letters vs hub indices, MedMCQA's cop 1-4 vs 0-3)."""
    bench = BENCHMARKS[name]
    file_row, hub_row = ROWS[name]
    if bench.file_layout == "mmlu_csvs":
        (tmp_path / "test").mkdir()
        (tmp_path / "test" / "anatomy_test.csv").write_text(
            ",".join(str(file_row[c]) for c in ("question", "A", "B", "C", "D", "answer")) + "\n", encoding="utf-8")
    else:
        (tmp_path / "test.jsonl").write_text(json.dumps(file_row) + "\n", encoding="utf-8")
    from_file = load_dataset(DatasetSpec(name=name, path=str(tmp_path)))
    _fake_hub(monkeypatch, {(bench.hub_id, bench.hub_config, bench.test_split): [hub_row]})
    from_hub = load_dataset(DatasetSpec(name=name))
    assert from_file.test == from_hub.test and len(from_file.test) == 1
    assert dataclasses.replace(from_file.info, source="hub") == from_hub.info


texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: s.strip() and not s.strip().startswith("["))
ids = st.text("abcdef0123456789", min_size=1, max_size=8)


def _same_rows_as_benchmark_and_user_file(tmp_path, name, rows, fields, fmt):
    """The rows written once, read by the benchmark's name and as a user file mapped by ``fields``."""
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    bench = BENCHMARKS[name]
    as_benchmark = load_dataset(DatasetSpec(name=name, path=str(path)))
    as_user_file = load_dataset(DatasetSpec(name=name, path=str(path), format=fmt, kind=bench.kind,
                                            fields=fields))
    return as_benchmark.test, as_user_file.test


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(ids, texts, st.lists(texts, min_size=4, max_size=4), st.integers(0, 3)),
                min_size=1, max_size=4, unique_by=lambda row: row[0]))
def test_medmcqa_hub_export_reads_like_a_user_file_with_its_field_map(rows):
    """The field map a MedMCQA hub export needs as a user file (the hint the 1-4 error gives)
    gives the same Examples as the benchmark's own hub field map."""
    hub_rows = [{"id": i, "question": q, **dict(zip(("opa", "opb", "opc", "opd"), opts)), "cop": cop}
                for i, q, opts, cop in rows]
    user = FieldMap(question="question", choices="opa,opb,opc,opd", answer="cop", id="id")
    read_by_user_map = [to_example(r, Schema(RowMap.from_field_map(user, "mc")), "u") for r in hub_rows]
    assert read_by_user_map == [to_example(r, schemas.medmcqa_hub, "u") for r in hub_rows]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(ids, texts, st.lists(texts, min_size=1, max_size=3)), min_size=1, max_size=4,
                unique_by=lambda row: row[0]))
def test_nq_open_file_reads_like_a_user_file_with_its_field_map(tmp_path_factory, rows):
    rows = [{"id": i, "question": q, "answer": answers} for i, q, answers in rows]
    as_benchmark, as_user_file = _same_rows_as_benchmark_and_user_file(
        tmp_path_factory.mktemp("nq"), "nq_open", rows, {"id": "id"}, "generative")
    assert as_benchmark == as_user_file


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(ids, texts, texts, st.lists(texts, max_size=3)), min_size=1, max_size=4,
                unique_by=lambda row: row[0]))
def test_triviaqa_hub_shape_file_reads_like_a_user_file_with_its_field_map(tmp_path_factory, rows):
    rows = [{"question_id": i, "question": q, "answer": {"value": a, "aliases": more}} for i, q, a, more in rows]
    fields = {"answer": "answer.value", "aliases": "answer.aliases", "id": "question_id"}
    as_benchmark, as_user_file = _same_rows_as_benchmark_and_user_file(
        tmp_path_factory.mktemp("tqa"), "triviaqa", rows, fields, "generative")
    assert as_benchmark == as_user_file


def test_a_new_benchmark_is_a_declaration(tmp_path):
    """Adding a benchmark takes a field map and a catalogue entry, no converter: declared here with
    a field map a user could write, it reads exactly like that user file."""
    rows = [{"q": "Largest planet?", "opts": ["Mars", "Jupiter"], "key": "B", "uid": "p1"}]
    path = tmp_path / "planets.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    user = FieldMap(question="q", choices="opts", answer="key", id="uid")
    schema = Schema(RowMap.from_field_map(user, "mc"))
    bench = Benchmark(name="planets", kind="recall", format="mc", answer_type="text", description="", notes="",
                      hub_id="me/planets", hub_config=None, test_split="test", train_split=None,
                      file_schema=schema, hub_schema=schema)
    from rankscope.data import upstream

    _, test = upstream.load_local(bench, path, None, None, "fail", False)
    assert test == load_dataset(DatasetSpec(name="planets", path=str(path), format="mc", kind="recall",
                                            fields=user)).test
    assert test[0].answer == "Jupiter" and test[0].uid == "p1"
