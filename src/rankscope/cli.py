"""Command line: the only module that reads argv.

Exit codes: 0 all good; 1 the sweep finished but some arm failed; 2 bad input (config, dataset,
model id, file), printed as one line naming the place and the fix; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from importlib import resources
from pathlib import Path

PRESETS = ("smoke", "quick", "paper")


def _quiet_libraries() -> None:
    """Keep the terminal for our own progress: library chatter goes to the debug log."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*generation flags.*")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def preset_path(name: str) -> Path:
    return Path(str(resources.files("rankscope") / "presets" / f"{name}.yaml"))


def _load(config_path: Path, overrides: list[str]):
    from rankscope.config import load_config

    return load_config(config_path, overrides)


def _run(config_path: Path, out: Path, overrides: list[str], executor: str | None, address: str | None,
         report: bool) -> int:
    from rankscope.sweep.runner import run_sweep
    from rankscope.sweep.summary import print_summary

    if executor:
        overrides = [*overrides, f"sweep.executor={executor}"]
    if address:
        overrides = [*overrides, f"sweep.address={address}"]
    config = _load(config_path, overrides)
    if config.tracking.mlflow:  # experiment tracking: fail before the sweep, not hours after it
        from rankscope.tracking import require_mlflow

        require_mlflow()
    out.mkdir(parents=True, exist_ok=True)
    print(f"rankscope: sweep {config.name!r} -> {out}")
    outcome = run_sweep(config, out)
    print_summary(out)
    if report:
        from rankscope.report import write_report

        path = write_report([out])
        print(f"report: {path}")
    print(f"results: {outcome.results_csv}  ({len(outcome.ran)} arm(s) run, {len(outcome.skipped)} reused, "
          f"{outcome.wall_time_s:.1f} s)")
    tracking_failed = False
    if config.tracking.mlflow:  # experiment tracking (rankscope.tracking)
        from rankscope.errors import RankscopeError

        try:
            _track(out, config.tracking.uri, config.tracking.experiment)
        except RankscopeError as error:
            print(f"rankscope: error: {error}; the run directory is complete, retry with "
                  f"`rankscope track {out}`", file=sys.stderr)
            tracking_failed = True
    if outcome.failed:
        print(f"{len(outcome.failed)} arm(s) failed: " + "; ".join(f"{k}: {v}" for k, v in outcome.failed.items()))
        return 1
    return 2 if tracking_failed else 0


# --- experiment tracking (rankscope.tracking) ------------------------------------------------
def _track(run_dir: Path, uri: str | None, experiment: str | None) -> None:
    from rankscope.tracking import default_tracking_uri, log_run_to_mlflow

    ids = log_run_to_mlflow(run_dir, uri, experiment)
    print(f"mlflow: sweep run {ids[0]} with {len(ids) - 1} arm run(s) in {uri or default_tracking_uri(run_dir)}")


def cmd_track(args: argparse.Namespace) -> int:
    _track(Path(args.run_dir), args.uri, args.experiment)
    return 0
# --- end experiment tracking -----------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out or f"runs/demo-{args.preset}")
    return _run(preset_path(args.preset), out, args.overrides, args.executor, args.address, not args.no_report)


def cmd_run(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    out = Path(args.out) if args.out else Path("runs") / config_path.stem
    return _run(config_path, out, args.overrides, args.executor, args.address, not args.no_report)


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load(Path(args.config), args.overrides)
    from rankscope.sweep.plan import plan_arms

    arms = plan_arms(config)
    print(f"{args.config}: valid; {len(arms)} arm(s): " + ", ".join(arm.arm_id for arm in arms))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rankscope.report import write_report

    run_dirs = [Path(p) for p in args.run_dirs]
    for run_dir in run_dirs:
        if not (run_dir / "results.csv").is_file():
            from rankscope.errors import RankscopeError

            raise RankscopeError(str(run_dir), "no results.csv here", "pass a run directory written by `rankscope run`")
    path = write_report(run_dirs, Path(args.out) if args.out else None)
    print(f"report: {path}")
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from rankscope.data.registry import list_datasets

    if args.action == "list":
        entries = list_datasets()
        if args.json:
            print(json.dumps([entry.to_json() for entry in entries], indent=2))
            return 0
        from rich.console import Console
        from rich.table import Table

        table = Table(title="rankscope datasets")
        for column in ("name", "source", "kind", "format", "size", "description"):
            table.add_column(column)
        for entry in entries:
            row = entry.to_json()
            table.add_row(*(str(row.get(c) if row.get(c) is not None else "-") for c in
                            ("name", "source", "kind", "format", "size", "description")))
        Console().print(table)
        return 0
    from rankscope.config import DatasetSpec
    from rankscope.data.registry import load_dataset
    from rankscope.errors import DatasetError

    if not args.name:
        from rankscope.errors import ConfigError

        raise ConfigError(f"datasets {args.action}", "no dataset name given",
                          f"run `rankscope datasets {args.action} NAME`")
    name, path = args.name, args.path
    if name.startswith("lmeval:"):  # an lm-eval task: the task goes in path:, the name stays a plain key
        from rankscope.data.lm_eval_bridge import lmeval_dataset_name

        name, path = lmeval_dataset_name(name), name
    if args.action == "export":
        return _export_dataset(args, DatasetSpec(name=name, path=path, format=args.format, kind=args.kind,
                                                 n_test=args.n))
    n = 3 if args.n is None else args.n
    spec = DatasetSpec(name=name, path=path, format=args.format, kind=args.kind, n_test=n, n_train=n)
    try:  # the rows training would use (a set without a train split is divided 80/20, as in a sweep)
        dataset = load_dataset(spec, seed=0, for_training=True)
    except DatasetError:
        dataset = load_dataset(spec, seed=0)
    info = dataset.info
    print(f"{info.name}: {info.kind}, {info.format}, answer type {info.answer_type}, "
          f"{len(dataset.train)} train / {len(dataset.test)} test rows")
    for split, rows in (("train", dataset.train), ("test", dataset.test)):
        for example in rows[:n]:
            print(f"--- {split} {example.uid}")
            print(f"Q: {example.question}")
            if example.choices:
                for j, choice in enumerate(example.choices):
                    print(f"   {'*' if j == example.gold else ' '} {choice}")
            print(f"A: {example.answer}" + (f"  (also: {', '.join(example.aliases)})" if example.aliases else ""))
            if split == "train":
                print("training target:\n" + "\n".join("  " + line for line in example.training_text.splitlines()))
    return 0


def _export_dataset(args: argparse.Namespace, spec) -> int:
    """``datasets export NAME --to lm-eval --out DIR``: the test split as an lm-eval task folder."""
    from rankscope.data.lm_eval_bridge import export_lm_eval_task
    from rankscope.data.registry import load_dataset
    from rankscope.errors import ConfigError

    if not args.out:
        raise ConfigError("datasets export", "no output folder given", "add --out DIR")
    dataset = load_dataset(spec, seed=0)
    exported = export_lm_eval_task(dataset, Path(args.out))
    print(f"{exported.task}: {exported.rows} rows -> {exported.yaml_path} + {exported.jsonl_path.name}")
    print(f"run: lm_eval --model hf --model_args pretrained=MODEL --include_path {args.out} --tasks {exported.task}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from rankscope.config import EvalSpec
    from rankscope.evaluate.standalone import EvalJob, read_dataset_list, run_eval
    from rankscope.sweep.summary import print_eval_table

    job = EvalJob(model=args.model, datasets=read_dataset_list(Path(args.datasets)), limit=args.limit,
                  seed=args.seed)
    out = Path(args.out or "runs/eval")
    path = run_eval(job, out, EvalSpec(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens))
    print_eval_table(path)
    print(f"results: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rankscope", description="How much LoRA rank is too much? "
                                     "Controlled LoRA rank sweeps vs full fine-tuning and the base model.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def sweep_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", help="run directory (a rerun into it resumes)")
        p.add_argument("--executor", choices=["local", "ray"], help="where arms run (default: the config's)")
        p.add_argument("--address", help="Ray cluster address (with --executor ray)")
        p.add_argument("--no-report", action="store_true", help="skip the HTML report at the end")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.steps=10")

    demo = sub.add_parser("demo", help="run a preset sweep on the offline default model")
    demo.add_argument("--preset", choices=PRESETS, default="quick", help="smoke (~3 min), quick (~20 min), paper (GPU)")
    sweep_options(demo)
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser("run", help="run the sweep described by a YAML config")
    run.add_argument("config")
    sweep_options(run)
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check a config and list the arms it plans")
    validate.add_argument("config")
    validate.add_argument("overrides", nargs="*", metavar="key=value")
    validate.set_defaults(func=cmd_validate)

    report = sub.add_parser("report", help="write report.html for one run, or compare several")
    report.add_argument("run_dirs", nargs="+")
    report.add_argument("--out", help="folder for the comparison report of several runs")
    report.set_defaults(func=cmd_report)

    track = sub.add_parser("track", help="log a run directory to MLflow (pip install 'rankscope[mlflow]')")
    track.add_argument("run_dir")
    track.add_argument("--uri", help="MLflow tracking URI (default sqlite:///RUN_DIR/mlflow.db)")
    track.add_argument("--experiment", help="MLflow experiment (default: the sweep's name)")
    track.set_defaults(func=cmd_track)

    evaluate = sub.add_parser("eval", help="evaluate one model on a list of datasets")
    evaluate.add_argument("--model", default="default",
                          help="default | hub id | directory | file.gguf | RUN_DIR/arms/ARM_ID")
    evaluate.add_argument("--datasets", required=True, help="YAML list of dataset specs")
    evaluate.add_argument("--limit", type=int, help="seeded sample of at most N items per dataset")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--max-new-tokens", type=int, default=32,
                          help="new tokens for generative sets without their own (a set's max_new_tokens, "
                               "or GSM8K's default of 256, wins)")
    evaluate.add_argument("--out", help="output folder (default runs/eval)")
    evaluate.set_defaults(func=cmd_eval)

    datasets = sub.add_parser("datasets", help="list datasets, show rendered examples, or export one")
    datasets.add_argument("action", choices=["list", "show", "export"])
    datasets.add_argument("name", nargs="?")
    datasets.add_argument("--json", action="store_true", help="list as JSON")
    datasets.add_argument("--path", help="local file or folder in the upstream schema")
    datasets.add_argument("--format", choices=["mc", "generative"], help="for user files")
    datasets.add_argument("--kind", choices=["reasoning", "recall"], help="for user files")
    datasets.add_argument("-n", type=int, help="examples to show (default 3); export: seeded sample of N test rows")
    datasets.add_argument("--to", choices=["lm-eval"], default="lm-eval", help="export format")
    datasets.add_argument("--out", help="export: output folder for NAME.yaml and NAME.jsonl")
    datasets.set_defaults(func=cmd_datasets)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may follow options (`run c.yaml --out d train.steps=3`): argparse stops
    # collecting positionals at the first option, so gather the rest here.
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and all("=" in item and not item.startswith("-") for item in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _quiet_libraries()
    if args.verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    from rankscope.errors import RankscopeError

    try:
        return args.func(args)
    except RankscopeError as error:
        if args.verbose:
            raise
        print(f"rankscope: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rankscope: interrupted; finished arms are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
