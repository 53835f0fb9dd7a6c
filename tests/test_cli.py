"""CLI commands other than the sweep: datasets, eval, report errors."""

from __future__ import annotations

import csv
import json

from rankscope.cli import main


def test_datasets_list_json_has_builtins(capsys):
    assert main(["datasets", "list", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    builtin = [e for e in entries if e["source"] == "builtin"]
    assert sum(e["kind"] == "reasoning" for e in builtin) >= 3
    assert sum(e["kind"] == "recall" for e in builtin) >= 3
    assert {"gsm8k", "mmlu", "medmcqa", "arc_easy", "triviaqa"} <= {e["name"] for e in entries}


def test_datasets_show_renders_questions(capsys):
    assert main(["datasets", "show", "capitals", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("--- test") == 2 and "*" in out
    # the rows training would use, each with its training target
    assert out.count("--- train") == 2 and out.count("training target:") == 2


def test_datasets_show_gsm8k_trains_on_the_worked_solution(capsys):
    from test_data_benchmarks import shared

    assert main(["datasets", "show", "gsm8k", "--path", str(shared("gsm8k")), "-n", "1"]) == 0
    out = capsys.readouterr().out
    target = out.split("training target:\n", 1)[1].split("--- test", 1)[0]
    assert len(target.splitlines()) >= 2 and "<<" not in target  # a worked solution, annotations removed
    answer = out.split("--- train", 1)[1].split("\nA: ", 1)[1].split()[0]
    assert target.strip().endswith(f"#### {answer}")


def test_unknown_dataset_is_exit_2(capsys):
    assert main(["datasets", "show", "no_such_set"]) == 2
    assert "no_such_set" in capsys.readouterr().err


def test_eval_writes_tidy_results(tiny_model_dir, tmp_path, capsys):
    sets = tmp_path / "sets.yaml"
    sets.write_text("- {name: capitals}\n- {name: arith_chain}\n")
    out = tmp_path / "eval"
    assert main(["eval", "--model", str(tiny_model_dir), "--datasets", str(sets), "--limit", "5",
                 "--max-new-tokens", "4", "--out", str(out)]) == 0
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["dataset"], r["metric"]) for r in rows} == {("capitals", "accuracy"), ("capitals", "acc_norm"),
                                                           ("capitals", "margin"), ("arith_chain", "accuracy"),
                                                           ("arith_chain", "truncated"),
                                                           ("generic_text", "nll"), ("generic_text", "nll_delta")}
    assert all(r["n"] == "5" for r in rows if r["dataset"] != "generic_text")
    assert sorted(p.name for p in out.glob("arms/*/items/*")) == ["arith_chain.jsonl.gz", "capitals.jsonl.gz"]
    # a lone model is its own base: nll_delta reads 0, nll is the absolute value
    nll = {r["metric"]: float(r["value"]) for r in rows if r["dataset"] == "generic_text"}
    assert nll["nll_delta"] == 0.0 and nll["nll"] > 0.0


def test_eval_bad_model_is_exit_2(tmp_path, capsys):
    sets = tmp_path / "sets.yaml"
    sets.write_text("- {name: capitals}\n")
    assert main(["eval", "--model", str(tmp_path / "missing"), "--datasets", str(sets), "--limit", "2",
                 "--out", str(tmp_path / "o")]) == 2
    assert "model.id" in capsys.readouterr().err


def test_report_on_a_folder_without_results_is_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "results.csv" in capsys.readouterr().err


def test_report_json_prints_the_recommendation(tmp_path, capsys):
    from fixtures_report import build_run_store

    run = build_run_store(tmp_path / "run", analysis=False)
    assert main(["report", str(run), "--json"]) == 0
    out = capsys.readouterr()
    payload = json.loads(out.out)  # stdout is only the JSON
    assert [(p["run_dir"], p["rank"], p["decided"]) for p in payload] == [(str(run), 8, True)]
    assert {"rule", "test", "gain_margin", "forgetting_margin", "reason", "train_set"} <= set(payload[0])
    assert "report:" in out.err
    assert json.loads((run / "recommendation.json").read_text())["rank"] == 8
