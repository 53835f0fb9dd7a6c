"""Benchmarks on their real upstream files (../shared/data) and on the hub code path (offline, with a
stand-in ``datasets`` module)."""

from __future__ import annotations

import csv
import json
import re
import sys
import types
from pathlib import Path

import pytest

from rankscope.config import DatasetSpec
from rankscope.data import load_dataset
from rankscope.data.schemas import parse_mathqa_options
from rankscope.errors import DatasetError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared benchmark data not found at {path} (expected next to the repository)")
    return path


# --- local upstream files --------------------------------------------------------------------


def test_gsm8k_test_split_every_answer_a_number():
    folder = shared("gsm8k")
    data = load_dataset(DatasetSpec(name="gsm8k", path=str(folder)))
    assert len(data.test) == 1319 and data.train == []
    assert data.info.answer_type == "number" and data.info.format == "generative"
    raw = [json.loads(line) for line in (folder / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    for example, row in zip(data.test, raw, strict=True):
        assert re.fullmatch(r"-?\d+(\.\d+)?", example.answer)
        assert row["answer"].replace(",", "").rstrip().endswith(example.answer)
        assert "####" not in example.answer and example.question == row["question"].strip()


def test_gsm8k_folder_gives_train_when_training():
    data = load_dataset(DatasetSpec(name="gsm8k", path=str(shared("gsm8k")), n_train=100), for_training=True)
    assert len(data.train) == 100 and len(data.test) == 1319


def _csv_rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as handle:
        return sum(1 for row in csv.reader(handle) if row)


def test_mmlu_all_subjects_and_filter():
    folder = shared("mmlu")
    every = load_dataset(DatasetSpec(name="mmlu", path=str(folder)))
    assert len(every.test) == 14079  # the 2020 git version, per shared/data/README.md
    chosen = ["anatomy", "virology"]
    expected = sum(_csv_rows(folder / "test" / f"{s}_test.csv") for s in chosen)
    filtered = load_dataset(DatasetSpec(name="mmlu", path=str(folder), subjects=chosen))
    assert len(filtered.test) == expected
    assert {e.question for e in filtered.test} <= {e.question for e in every.test}
    for example in filtered.test:
        assert len(example.choices) == 4 and example.choices[example.gold] == example.answer


def test_mmlu_single_subject_file_and_splits():
    folder = shared("mmlu")
    one = load_dataset(DatasetSpec(name="mmlu", path=str(folder / "test" / "anatomy_test.csv")))
    assert len(one.test) == _csv_rows(folder / "test" / "anatomy_test.csv")
    with (folder / "test" / "anatomy_test.csv").open(encoding="utf-8", newline="") as handle:
        first = next(csv.reader(handle))
    assert one.test[0].answer == first["ABCD".index(first[5]) + 1]
    dev = load_dataset(DatasetSpec(name="mmlu", path=str(folder), split="dev"))
    val = load_dataset(DatasetSpec(name="mmlu", path=str(folder), split="validation"))
    assert (len(dev.test), len(val.test)) == (285, 1542)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(DatasetSpec(name="mmlu", path=str(folder), subjects=["astrology"]))


def test_medmcqa_cop_is_one_based_in_upstream_file():
    path = shared("medmcqa", "dev.json")
    data = load_dataset(DatasetSpec(name="medmcqa", path=str(path.parent)))
    assert len(data.test) == 4183
    by_uid = {e.uid: e for e in data.test}
    # a known row: cop 1 -> option a (the explanation starts "Ans-a.")
    known = by_uid["b944ada9-d776-4c2a-9180-3ae5f393f72d"]
    assert known.gold == 0 and known.answer.startswith("The oncotic pressure of the fluid leaving")
    # every row whose explanation names the answer letter agrees with the mapped gold
    agree = total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        match = re.match(r"Ans[\s.:\-]*\(?([a-dA-D])\b", row.get("exp") or "")
        if match:
            total += 1
            agree += by_uid[row["id"]].gold == "abcd".index(match.group(1).lower())
    assert total > 500 and agree / total > 0.97


def test_medmcqa_subject_filter():
    data = load_dataset(DatasetSpec(name="medmcqa", path=str(shared("medmcqa")), subjects=["Physiology"]))
    assert 0 < len(data.test) < 4183


def test_arc_easy_via_field_mapping_and_via_name():
    path = shared("arc_easy", "arc_easy.jsonl")
    mapped = load_dataset(DatasetSpec(name="arc_file", path=str(path), format="mc", kind="reasoning",
                                      fields={"question": "query", "choices": "choices", "answer": "gold"}))
    named = load_dataset(DatasetSpec(name="arc_easy", path=str(path)))
    folder = load_dataset(DatasetSpec(name="arc_easy", path=str(path.parent)))
    assert len(mapped.test) == len(named.test) == len(folder.test) == 2376
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert mapped.test[0].answer == named.test[0].answer == first["choices"][first["gold"]]
    assert mapped.test[0].question == first["query"]  # a user mapping keeps the text as is
    assert named.test[0].question == first["query"].removeprefix("Question: ")  # the benchmark strips the frame
    assert [e.gold for e in mapped.test] == [e.gold for e in named.test]


def test_triviaqa_shared_file_with_aliases():
    path = shared("triviaqa", "triviaqa_sm_sub.jsonl")
    data = load_dataset(DatasetSpec(name="triviaqa", path=str(path)))
    assert len(data.test) == 3000 and data.info.format == "generative"
    first = data.test[0]
    assert first.question == "Brunswick, Lancastrian and Pearl Pickler are types of which vegetable?"
    assert first.answer == "Onion" and "Allium cepa" in first.aliases and "Onion" not in first.aliases
    assert all(not e.question.startswith("Question:") and not e.question.endswith("Answer:") for e in data.test)


# --- upstream schemas without shared files ------------------------------------------------------


def test_mathqa_options_keep_commas_inside_values(tmp_path):
    assert parse_mathqa_options("a ) 38 , b ) 27.675 , c ) 30 , d ) data inadequate , e ) none") == (
        "38", "27.675", "30", "data inadequate", "none")
    assert parse_mathqa_options("a ) rs . 1,200 , b ) rs . 1,400") == ("rs . 1,200", "rs . 1,400")
    assert parse_mathqa_options(["a ) 1", "b ) 2"]) == ("1", "2")
    rows = [{"Problem": "what is 2 + 2 ?", "Rationale": "...", "options": "a ) 3 , b ) 4 , c ) 5", "correct": "b"}]
    path = tmp_path / "test.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    data = load_dataset(DatasetSpec(name="mathqa", path=str(tmp_path)))
    assert data.test[0].answer == "4" and data.test[0].gold == 1


def test_arc_original_and_commonsense_qa_shapes(tmp_path):
    arc = {"id": "Q1", "answerKey": "2", "question": {"stem": "Pick two.", "choices": [
        {"label": "1", "text": "one"}, {"label": "2", "text": "two"}, {"label": "3", "text": "three"}]}}
    (tmp_path / "ARC-Challenge-Test.jsonl").write_text(json.dumps(arc) + "\n", encoding="utf-8")
    (tmp_path / "ARC-Challenge-Train.jsonl").write_text(json.dumps({**arc, "id": "Q2", "question": {
        **arc["question"], "stem": "Pick two again."}}) + "\n", encoding="utf-8")
    data = load_dataset(DatasetSpec(name="arc_challenge", path=str(tmp_path)), for_training=True)
    assert data.test[0].answer == "two" and data.test[0].uid == "Q1"
    assert [e.uid for e in data.train] == ["Q2"]

    csqa = {"id": "c1", "question": "Where do fish live?", "answerKey": "B",
            "choices": {"label": ["A", "B"], "text": ["tree", "water"]}}
    path = tmp_path / "csqa" / "dev_rand_split.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(csqa) + "\n", encoding="utf-8")
    assert load_dataset(DatasetSpec(name="commonsense_qa", path=str(path.parent))).test[0].answer == "water"


def test_nq_open_answer_list(tmp_path):
    path = tmp_path / "NQ-open.dev.jsonl"
    path.write_text(json.dumps({"question": "who wrote hamlet", "answer": ["Shakespeare", "W. Shakespeare"]}) + "\n")
    example = load_dataset(DatasetSpec(name="nq_open", path=str(tmp_path))).test[0]
    assert example.accepted_answers() == ("Shakespeare", "W. Shakespeare")


def test_medmcqa_hub_export_gets_a_pointed_error(tmp_path):
    row = {"id": "x", "question": "Q?", "opa": "a", "opb": "b", "opc": "c", "opd": "d", "cop": 0}
    (tmp_path / "dev.json").write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="0-3") as info:
        load_dataset(DatasetSpec(name="medmcqa", path=str(tmp_path)))
    assert info.value.where.endswith("dev.json:1")


# --- hub path, offline -------------------------------------------------------------------------


def test_hub_without_datasets_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(DatasetError) as info:
        load_dataset(DatasetSpec(name="gsm8k"))
    message = str(info.value)
    assert "pip install datasets" in message and "openai/gsm8k" in message and "path:" in message


HUB_ROWS = {
    ("openai/gsm8k", "main", "test"): [{"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}],
    ("openai/gsm8k", "main", "train"): [{"question": "2+2?", "answer": "#### 4"}],
    ("cais/mmlu", "anatomy", "test"): [{"question": "Bones?", "subject": "anatomy",
                                        "choices": ["206", "12", "5", "1"], "answer": 0}],
    ("openlifescienceai/medmcqa", None, "validation"): [
        {"id": "m1", "question": "Q?", "opa": "w", "opb": "x", "opc": "y", "opd": "z", "cop": 2,
         "choice_type": "single", "exp": None, "subject_name": "Anatomy", "topic_name": None}],
    ("allenai/ai2_arc", "ARC-Easy", "test"): [
        {"id": "a1", "question": "Sky?", "answerKey": "C",
         "choices": {"text": ["red", "green", "blue"], "label": ["A", "B", "C"]}}],
    ("mandarjoshi/trivia_qa", "rc.nocontext", "validation"): [
        {"question": "Capital of France?", "question_id": "t1",
         "answer": {"value": "Paris", "aliases": ["Paris", "Paree"], "normalized_value": "paris"}}],
    ("google-research-datasets/nq_open", "nq_open", "validation"): [{"question": "q", "answer": ["x", "y"]}],
    ("tau/commonsense_qa", None, "validation"): [{"id": "c1", "question": "Fish?", "question_concept": "fish",
                                                   "choices": {"label": ["A", "B"], "text": ["tree", "water"]},
                                                   "answerKey": "B"}],
    ("allenai/math_qa", None, "test"): [{"Problem": "p", "options": "a ) 1 , b ) 2", "correct": "a",
                                         "Rationale": "", "annotated_formula": "", "linear_formula": "",
                                         "category": "gain"}],
    ("me/custom", "cfg", "test"): [{"prompt": "Q?", "target": "A"}],
}


@pytest.fixture()
def fake_hub(monkeypatch):
    calls = []

    def load_dataset(path, name=None, split=None, **kwargs):
        calls.append((path, name, split))
        return list(HUB_ROWS[(path, name, split)])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hub_rows_map_like_upstream(fake_hub):
    gsm = load_dataset(DatasetSpec(name="gsm8k"), for_training=True)
    assert (gsm.test[0].answer, gsm.train[0].answer, gsm.info.source) == ("2", "4", "hub")
    assert load_dataset(DatasetSpec(name="mmlu", subjects=["anatomy"])).test[0].answer == "206"
    med = load_dataset(DatasetSpec(name="medmcqa")).test[0]
    assert med.gold == 2 and med.answer == "y"  # hub cop is 0-based
    assert load_dataset(DatasetSpec(name="arc_easy")).test[0].answer == "blue"
    trivia = load_dataset(DatasetSpec(name="triviaqa")).test[0]
    assert trivia.answer == "Paris" and trivia.aliases == ("Paree",) and trivia.uid == "t1"
    assert load_dataset(DatasetSpec(name="nq_open")).test[0].aliases == ("y",)
    assert load_dataset(DatasetSpec(name="commonsense_qa")).test[0].answer == "water"
    assert load_dataset(DatasetSpec(name="mathqa")).test[0].answer == "1"
    assert ("openai/gsm8k", "main", "train") in fake_hub
    assert ("openlifescienceai/medmcqa", None, "train") not in fake_hub  # eval use downloads no train split


def test_hub_generic_dataset_through_fields(fake_hub):
    spec = DatasetSpec(name="custom", source="hub", path="me/custom:cfg", format="generative", kind="recall",
                       fields={"question": "prompt", "answer": "target"})
    example = load_dataset(spec).test[0]
    assert (example.question, example.answer) == ("Q?", "A")


def test_hub_failure_is_one_clear_error(monkeypatch):
    def broken(*args, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=broken))
    with pytest.raises(DatasetError, match="ConnectionError: offline"):
        load_dataset(DatasetSpec(name="arc_challenge"))

