"""rankscope.tracking: a run directory logged to MLflow (optional extra rankscope[mlflow]).

Synthetic run directories (tests/fixtures_report.py), no model. The real-MLflow tests share one
migrated empty SQLite database (migrations cost seconds) copied into each run directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures_report import Arm, build_run_store, default_arms
from rankscope.config import RankscopeConfig, config_from_dict
from rankscope.errors import ConfigError, RankscopeError
from rankscope.tracking import arm_metrics, base_accuracy, default_tracking_uri, log_run_to_mlflow, read_store

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no phoning home from the tests (or their subprocess)

FAILED = Arm("lora", 64, status="failed", error="CUDA out of memory: tried to allocate 2.00 GiB")
R8 = "lora-r8-a16-s0-0000abcd"


def _arms() -> list[Arm]:
    return default_arms() + [FAILED]


def _store(root: Path, template: Path | None = None, arms: list[Arm] | None = None) -> Path:
    run = build_run_store(root, arms or _arms(), analysis=False)
    (run / "summary.md").write_text("# summary\n", encoding="utf-8")
    (run / "report.html").write_text("<html></html>", encoding="utf-8")
    if template is not None:
        shutil.copy(template, run / "mlflow.db")
    return run


def _search(uri: str, experiment: str, deleted: bool = False) -> list:
    import mlflow
    from mlflow.entities import ViewType

    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.search_runs(experiment_names=[experiment], output_format="list",
                                  run_view_type=ViewType.ALL if deleted else ViewType.ACTIVE_ONLY)
    finally:
        mlflow.set_tracking_uri(None)


def _by_arm(runs: list) -> dict:
    return {r.data.tags["rankscope.arm_id"]: r for r in runs if r.data.tags.get("rankscope.role") == "arm"}


# ---------------------------------------------------------------------------------------------
# Without MLflow: config, store reading, metrics, the install hint


def test_tracking_config_section_defaults_and_forbids_unknown_keys():
    base = {"data": {"train": [{"name": "arith_chain"}]}}
    assert RankscopeConfig.model_validate(base).tracking.model_dump() == {"mlflow": False, "uri": None,
                                                                         "experiment": None}
    config = config_from_dict({**base, "tracking": {"mlflow": True, "uri": "sqlite:///x.db", "experiment": "e"}})
    assert config.tracking.mlflow and config.tracking.uri == "sqlite:///x.db" and config.tracking.experiment == "e"
    with pytest.raises(ConfigError, match=r"tracking\.mlfow: unknown key"):
        config_from_dict({**base, "tracking": {"mlfow": True}})


def test_metrics_gain_forgetting_and_loss_curve_from_the_store(tmp_path):
    run = _store(tmp_path / "run")
    (run / "arms" / "lora-r32-x").mkdir()  # no arm.json: unfinished, not logged
    snapshot = read_store(run)
    assert snapshot.name == "synthetic" and snapshot.unfinished == ["lora-r32-x"]
    arms = {a.arm_id: a for a in snapshot.arms}
    assert len(arms) == 5 and arms[FAILED.arm_id].status == "failed"
    base = base_accuracy(snapshot, "arith_chain")
    assert base == {"arith_chain": 0.20, "capitals": 0.90}
    metrics = arm_metrics(arms[R8], base)
    scalars = {k: v for k, v, step in metrics if k != "train/loss"}
    assert scalars["arith_chain/accuracy"] == 0.58 and scalars["capitals/accuracy"] == 0.86
    assert scalars["arith_chain/gain"] == pytest.approx(0.38) and scalars["mean_gain"] == pytest.approx(0.38)
    assert scalars["capitals/forgetting"] == pytest.approx(0.04) and "capitals/gain" not in scalars
    assert scalars["trainable_params"] == 8 * 2 * 576 * 7 * 30 and scalars["wall_time_s"] == 58.0
    assert {"tokens_per_s", "peak_memory_mb", "final_loss", "arith_chain/accuracy_stderr"} <= set(scalars)
    assert [step for k, _, step in metrics if k == "train/loss"] == [1, 5, 9, 13, 17]
    base_metrics = {k for k, _, _ in arm_metrics(arms["base-0000abcd"], {})}
    assert not any(k.endswith(("/gain", "/forgetting")) for k in base_metrics)
    assert arm_metrics(arms[FAILED.arm_id], base) == []


def test_not_a_run_directory_is_a_rankscope_error(tmp_path):
    with pytest.raises(RankscopeError, match="not a run directory"):
        log_run_to_mlflow(tmp_path)


def test_missing_mlflow_says_how_to_install(tmp_path, monkeypatch, capsys):
    from rankscope.cli import main

    run = _store(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    with pytest.raises(RankscopeError, match=r"pip install 'rankscope\[mlflow\]'"):
        log_run_to_mlflow(run)
    assert main(["track", str(run)]) == 2
    assert "pip install 'rankscope[mlflow]'" in capsys.readouterr().err
    # a sweep with tracking on fails before it starts, not after hours of training
    import rankscope.sweep.runner as runner

    monkeypatch.setattr(runner, "run_sweep", lambda *a, **k: pytest.fail("the sweep must not start"))
    config = tmp_path / "c.yaml"
    config.write_text("data:\n  train:\n  - name: arith_chain\ntracking:\n  mlflow: true\n")
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--no-report"]) == 2
    assert "rankscope[mlflow]" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# With the real MLflow client on a temporary SQLite store


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("mlflow") / "empty.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates and migrates the tables
    return path


@pytest.fixture(scope="module")
def logged(tmp_path_factory, template_db):
    run = _store(tmp_path_factory.mktemp("logged") / "run", template_db)
    ids = log_run_to_mlflow(run)
    return run, ids


def test_one_run_per_arm_with_params_metrics_tags_and_artifacts(logged):
    run, ids = logged
    uri = default_tracking_uri(run)
    assert uri == f"sqlite:///{run.resolve()}/mlflow.db"
    runs = _search(uri, "synthetic")
    assert len(runs) == 6 and len(ids) == 6 and {r.info.run_id for r in runs} == set(ids)
    parent = next(r for r in runs if r.data.tags.get("rankscope.role") == "sweep")
    assert parent.info.run_id == ids[0] and parent.data.params["name"] == "synthetic"
    arms = _by_arm(runs)
    assert set(arms) == {a.arm_id for a in _arms()}
    assert all(r.data.tags["mlflow.parentRunId"] == ids[0] for r in arms.values())

    r8 = arms[R8]
    assert r8.data.params == {"arm_id": R8, "method": "lora", "rank": "8", "alpha": "16.0", "seed": "0",
                              "train_set": "arith_chain", "lr": "0.001", "targets": "all-linear"}
    m = r8.data.metrics
    assert m["arith_chain/accuracy"] == 0.58 and m["capitals/accuracy"] == 0.86
    assert m["arith_chain/gain"] == pytest.approx(0.38) and m["capitals/forgetting"] == pytest.approx(0.04)
    assert m["trainable_params"] == 8 * 2 * 576 * 7 * 30 and m["final_loss"] == 0.4
    assert r8.info.status == "FINISHED" and r8.data.tags["status"] == "done" and "error" not in r8.data.tags
    assert "rank" not in arms["base-0000abcd"].data.params

    failed = arms[FAILED.arm_id]
    assert failed.info.status == "FAILED" and failed.data.tags["status"] == "failed"
    assert failed.data.tags["error"] == FAILED.error

    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    history = client.get_metric_history(r8.info.run_id, "train/loss")
    assert sorted(p.step for p in history) == [1, 5, 9, 13, 17]
    assert {a.path for a in client.list_artifacts(r8.info.run_id)} == {"arm.json", "eval.json", "train.json"}
    assert {a.path for a in client.list_artifacts(ids[0])} >= {"config.yaml", "results.csv", "report.html",
                                                                 "summary.md"}
    assert r8.info.artifact_uri.startswith((run.resolve() / "mlartifacts").as_uri())  # not ./mlruns in the cwd


def test_second_log_does_not_duplicate(logged):
    run, ids = logged
    assert log_run_to_mlflow(run) == ids
    uri = default_tracking_uri(run)
    assert len(_search(uri, "synthetic", deleted=True)) == 6  # nothing relogged, nothing deleted


def test_changed_and_removed_arms_are_resynced(tmp_path, template_db):
    run = _store(tmp_path / "run", template_db)
    first = log_run_to_mlflow(run, experiment="resync")
    r1 = "lora-r1-a2-s0-0000abcd"
    eval_path = run / "arms" / r1 / "eval.json"
    data = json.loads(eval_path.read_text())
    data["datasets"]["arith_chain"]["metrics"]["accuracy"]["value"] = 0.50
    eval_path.write_text(json.dumps(data))
    shutil.rmtree(run / "arms" / "sft-s0-0000abcd")
    second = log_run_to_mlflow(run, experiment="resync")

    uri = default_tracking_uri(run)
    arms = _by_arm(_search(uri, "resync"))
    assert "sft-s0-0000abcd" not in arms and len(arms) == 4 and second[0] == first[0]
    assert arms[r1].data.metrics["arith_chain/accuracy"] == 0.50 and arms[r1].info.run_id not in first
    assert arms[R8].info.run_id in first  # unchanged arm kept as it was
    assert set(second) == {r.info.run_id for r in _search(uri, "resync")}


def test_cli_track_logs_without_importing_torch(tmp_path, template_db):
    run = _store(tmp_path / "run", template_db)
    code = ("import sys; from rankscope.cli import main; rc = main(['track', sys.argv[1], '--experiment', 'cli']); "
            "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    done = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "5 arm run(s)" in done.stdout and "mlflow.db" in done.stdout
    assert len(_by_arm(_search(default_tracking_uri(run), "cli"))) == 5


def test_run_with_tracking_logs_after_the_sweep(tmp_path, template_db, monkeypatch, capsys):
    import rankscope.sweep.runner as runner
    import rankscope.report.terminal as summary
    from rankscope.cli import main

    out = tmp_path / "out"

    def fake_sweep(config, run_dir, announce=print):
        _store(Path(run_dir), template_db, default_arms())
        return runner.SweepOutcome(Path(run_dir), [], ["x"], [], {}, Path(run_dir) / "results.csv", 1.0)

    monkeypatch.setattr(runner, "run_sweep", fake_sweep)
    monkeypatch.setattr(summary, "print_summary", lambda run_dir: None)
    config = tmp_path / "c.yaml"
    config.write_text("name: tracked\ndata:\n  train:\n  - name: arith_chain\n"
                      "tracking:\n  mlflow: true\n  experiment: from-config\n")
    assert main(["run", str(config), "--out", str(out), "--no-report"]) == 0
    assert "4 arm run(s)" in capsys.readouterr().out
    assert len(_by_arm(_search(default_tracking_uri(out), "from-config"))) == 4
