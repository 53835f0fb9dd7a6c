"""User files: formats, field mapping, answer forms, and bad rows named by file:line."""

from __future__ import annotations

import json
import warnings

import pytest

from rankscope.config import DatasetSpec
from rankscope.data import load_dataset
from rankscope.data.readers import read_json
from rankscope.data.sampling import DatasetWarning
from rankscope.errors import DatasetError

MC_ROWS = [
    {"q": "Largest planet?", "opts": ["Mars", "Jupiter", "Venus"], "ans": 1, "key": "p1"},
    {"q": "Red planet?", "opts": ["Mars", "Jupiter", "Venus"], "ans": "A", "key": "p2"},
    {"q": "Hottest planet?", "opts": ["Mars", "Jupiter", "Venus"], "ans": "Venus", "key": "p3"},
    {"q": "Ringed planet?", "opts": ["Saturn", "Mars"], "ans": "b", "key": "p4"},
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _mc_spec(path, **extra):
    return DatasetSpec(name="planets", path=str(path), format="mc", kind="recall",
                       fields={"question": "q", "choices": "opts", "answer": "ans", "id": "key"}, **extra)


def test_jsonl_mc_answers_as_index_letter_and_text(tmp_path):
    data = load_dataset(_mc_spec(_jsonl(tmp_path / "p.jsonl", MC_ROWS)))
    assert [e.answer for e in data.test] == ["Jupiter", "Mars", "Venus", "Mars"]
    assert [e.gold for e in data.test] == [1, 0, 2, 1]
    assert [e.uid for e in data.test] == ["p1", "p2", "p3", "p4"]
    assert data.info.source == "file" and data.info.kind == "recall" and data.train == []


def test_json_array_and_json_lines_with_json_suffix(tmp_path):
    array = tmp_path / "a.json"
    array.write_text(json.dumps(MC_ROWS, indent=2), encoding="utf-8")
    lines = _jsonl(tmp_path / "b.json", MC_ROWS)
    assert load_dataset(_mc_spec(array)).test == load_dataset(_mc_spec(lines)).test


def test_json_array_rows_know_their_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"x": 1},\n\n  {"x": 2,\n   "y": 3}\n]\n', encoding="utf-8")
    assert [r.where for r in read_json(path)] == [f"{path}:2", f"{path}:4"]


def test_csv_with_choice_columns_and_generative_aliases(tmp_path):
    mc = tmp_path / "mc.csv"
    mc.write_text('question,A,B,C,label\n"Capital of Italy, in Europe?",Rome,Milan,Turin,A\n', encoding="utf-8")
    spec = DatasetSpec(name="it", path=str(mc), format="mc", kind="recall",
                       fields={"choices": "A,B,C", "answer": "label"})
    assert load_dataset(spec).test[0].answer == "Rome"

    gen = tmp_path / "gen.csv"
    gen.write_text('question,answer,alt\nWho wrote Hamlet?,Shakespeare,"[""William Shakespeare""]"\n',
                   encoding="utf-8")
    spec = DatasetSpec(name="lit", path=str(gen), format="generative", kind="recall", fields={"aliases": "alt"})
    data = load_dataset(spec)
    assert data.test[0].accepted_answers() == ("Shakespeare", "William Shakespeare")
    assert data.info.answer_type == "text"


def test_generative_answer_list_and_number_inference(tmp_path):
    path = _jsonl(tmp_path / "n.jsonl", [{"question": "2+2?", "answer": ["4", "four"]},
                                         {"question": "3+3?", "answer": 6}])
    data = load_dataset(DatasetSpec(name="n", path=str(path), format="generative", kind="reasoning"))
    assert data.test[0].answer == "4" and data.test[0].aliases == ("four",)
    assert data.test[1].answer == "6"
    assert data.info.answer_type == "number"


def test_dotted_field_paths(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [{"question": "Q?", "answer": {"value": "A", "aliases": ["a1"]}}])
    spec = DatasetSpec(name="d", path=str(path), format="generative", kind="recall",
                       fields={"answer": "answer.value", "aliases": "answer.aliases"})
    assert load_dataset(spec).test[0].accepted_answers() == ("A", "a1")


@pytest.mark.parametrize(("bad", "field", "line"), [
    ({"opts": ["Mars", "Venus"], "ans": 0}, "q", 3),                      # missing question
    ({"q": "  ", "opts": ["Mars", "Venus"], "ans": 0}, "q", 3),           # empty question
    ({"q": "Cold?", "opts": ["Mars", "Venus"], "ans": "Pluto"}, "ans", 3),  # answer not among choices
    ({"q": "Cold?", "opts": ["Mars", "Venus"], "ans": 5}, "ans", 3),      # index out of range
    ({"q": "Cold?", "ans": 0}, "opts", 3),                                # missing choices
])
def test_bad_row_fail_names_file_line_and_field(tmp_path, bad, field, line):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(MC_ROWS[0]) + "\n\n" + json.dumps(bad) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(_mc_spec(path))
    assert info.value.where == f"{path}:{line}"
    assert repr(field) in str(info.value) and "on_bad_row: skip" in str(info.value)


def test_bad_csv_row_names_its_line(tmp_path):
    path = tmp_path / "g.csv"
    path.write_text("question,answer\nA?,1\n\"multi\nline?\",2\nB?,\n", encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        load_dataset(DatasetSpec(name="g", path=str(path), format="generative", kind="reasoning"))
    assert info.value.where == f"{path}:5" and "'answer'" in str(info.value)


def test_bad_rows_skipped_with_one_warning(tmp_path):
    rows = [MC_ROWS[0], {"q": "x"}, "not json", MC_ROWS[1], {"q": "y", "opts": ["a", "b"], "ans": 9}]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(_mc_spec(path, on_bad_row="skip"))
    assert len(data.test) == 2
    messages = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    assert len(messages) == 1
    assert "skipped 3 bad row(s)" in messages[0] and f"{path}:2" in messages[0]


def test_user_file_needs_format_and_kind(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", MC_ROWS)
    with pytest.raises(DatasetError, match="format"):
        load_dataset(DatasetSpec(name="x", path=str(path), kind="recall"))
    with pytest.raises(DatasetError, match="kind"):
        load_dataset(DatasetSpec(name="x", path=str(path), format="mc"))


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(_mc_spec(tmp_path / "nope.jsonl"))
    odd = tmp_path / "data.xml"
    odd.write_text("<x/>")
    with pytest.raises(DatasetError, match="unsupported file type"):
        load_dataset(_mc_spec(odd))


def test_parquet_without_pyarrow_says_how_to_fix(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a))
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DatasetError, match="pip install pyarrow"):
        load_dataset(_mc_spec(path))


def test_single_file_as_training_set_is_split_80_20(tmp_path):
    rows = [{"question": f"{i} + 1?", "answer": str(i + 1)} for i in range(50)]
    spec = DatasetSpec(name="inc", path=str(_jsonl(tmp_path / "inc.jsonl", rows)), format="generative",
                       kind="reasoning", n_val=0)  # no validation carve: the 80/20 split alone
    plain = load_dataset(spec)
    trained = load_dataset(spec, for_training=True)
    assert plain.train == [] and len(plain.test) == 50
    assert len(trained.train) == 40 and len(trained.test) == 10
    assert trained == load_dataset(spec, seed=5, for_training=True)  # the split does not move with the seed


def test_json_single_object_is_explained(tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"data": MC_ROWS}, indent=2), encoding="utf-8")
    with pytest.raises(DatasetError, match="under key 'data'"):
        load_dataset(_mc_spec(path))
