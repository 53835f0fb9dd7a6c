"""Log a run directory (the store, docs/run-store.md) to MLflow: one run per arm under a sweep run.

Two modules with one job each: :mod:`.snapshot` reads the run directory into what is logged
(no mlflow), :mod:`.mlflow_sync` writes it to MLflow.

Optional extra: ``pip install 'rankscope[mlflow]'`` (mlflow-skinny plus alembic, enough for the
SQLite tracking store and local artifacts; install the full ``mlflow`` package for ``mlflow ui``).
Like the report, this reads *only* the run directory -- no torch -- so a copied run directory
can be logged from a laptop.

What is logged
    sweep run (parent)  params from config.yaml (model, data, arms, train); metrics n_arms, n_done,
                        n_failed, n_unfinished; tags status (done | failed), run_dir; artifacts
                        config.yaml, results.csv, report.html, summary.md and figures/*.png when present.
    arm run (child)     params arm_id, method, rank, alpha, seed, train_set, lr, targets (a missing
                        value, e.g. the base arm's rank, is left out); metrics ``<dataset>/<metric>``
                        (accuracy, margin) with ``<dataset>/<metric>_stderr``, ``<dataset>/gain`` on
                        in-domain and ``<dataset>/forgetting`` on out-of-domain sets (accuracy vs the
                        base arm, as in the report: gain = arm - base, forgetting = base - arm),
                        mean_gain, mean_forgetting, trainable_params, total_params, steps,
                        wall_time_s, tokens_per_s, peak_memory_mb, final_loss, eval_time_s and the
                        loss curve as the step metric ``train/loss``; tags status and, for a failed
                        arm, error; artifacts arm.json, train.json, eval.json. MLflow status
                        FINISHED, or FAILED for a failed arm. Unfinished arms are not logged.

Defaults: tracking URI ``sqlite:///<run_dir>/mlflow.db`` (MLflow's own default is a SQLite
store too; its file store is deprecated), artifacts in ``<run_dir>/mlartifacts`` (for any SQLite
URI: ``mlartifacts/`` beside the database file), experiment = the sweep's ``name``.

Idempotent (a sync, not an append): every run is tagged ``rankscope.fingerprint`` (a hash of
the run directory's absolute path: the same directory is the same sweep, however often it is
resumed), ``rankscope.arm_id`` and ``rankscope.content_hash`` (a hash of the files the run was
logged from). Logging again keeps a run whose content is unchanged (same run id, nothing
written), replaces (deletes and relogs) an arm run whose files changed, deletes the runs of arms
no longer in the directory, and recreates everything when config.yaml changed (params cannot
change in MLflow). Deleted runs are MLflow soft deletes (``mlflow gc`` purges them). A copy of
the directory at another path is another sweep.
"""
from rankscope.tracking.mlflow_sync import default_tracking_uri, log_run_to_mlflow, require_mlflow
from rankscope.tracking.snapshot import ArmRecord, StoreSnapshot, arm_metrics, base_accuracy, read_store

__all__ = ["ArmRecord", "StoreSnapshot", "arm_metrics", "base_accuracy", "default_tracking_uri",
           "log_run_to_mlflow", "read_store", "require_mlflow"]
