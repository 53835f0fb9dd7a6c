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

PRESETS = ("smoke", "quick", "tuned", "paper")
#: Wall time of each preset on 2 CPU cores with the model cache warm, quoted by `demo --help` and,
#: word for word, by the README (tests/test_cli_docs.py). quick: measured 12:46 (4.24 GiB peak RSS) on an idle
#: 2-core machine with /usr/bin/time -v, after the item records, generic-text NLL and longer probes.
#: tuned: 36:48 (4.30 GiB) measured back to back with quick (14:51) on the same machine: 2.48x.
PRESET_TIMES = {"smoke": "~2-3 min", "quick": "~13 min", "tuned": "~37 min", "paper": "GPU"}


def _quiet_libraries(verbose: bool = False, quiet: bool = False) -> None:
    """Keep the terminal for our own progress: library chatter goes to the debug log.

    The terminal handler has its own level (warnings; errors with -q; everything with -v), so
    rankscope's INFO lines (training steps) reach run.log without flooding the terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if quiet:
        os.environ.setdefault("TQDM_DISABLE", "1")  # no progress bars
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*generation flags.*")
    root = logging.getLogger()
    ours = not root.handlers  # a host that configured logging (pytest, an application) keeps its handlers
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    for handler in root.handlers if ours else ():
        handler.setLevel(level)
    if verbose:
        logging.getLogger().setLevel(logging.DEBUG)
    logging.getLogger("rankscope").setLevel(logging.DEBUG if verbose else logging.INFO)


def _log_to_file(run_dir: Path) -> logging.Handler:
    """``RUN_DIR/run.log``: rankscope's INFO lines (arms, training steps and losses), appended on
    every rerun; written whether or not a terminal is attached (nohup, Slurm)."""
    handler = logging.FileHandler(run_dir / "run.log", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("rankscope").addHandler(handler)
    return handler


def preset_path(name: str) -> Path:
    return Path(str(resources.files("rankscope") / "presets" / f"{name}.yaml"))


def _load(config_path: Path, overrides: list[str]):
    from rankscope.config import load_config

    return load_config(config_path, overrides)


def _run(config_path: Path, out: Path, overrides: list[str], executor: str | None, address: str | None,
         report: bool, quiet: bool = False) -> int:
    if executor:
        overrides = [*overrides, f"sweep.executor={executor}"]
    if address:
        overrides = [*overrides, f"sweep.address={address}"]
    return _run_config(_load(config_path, overrides), out, report, quiet)


def _run_config(config, out: Path, report: bool, quiet: bool = False) -> int:
    """The sweep of a loaded config, then the terminal summary, report and tracking (run, demo, compare)."""
    from rankscope.sweep.preflight import check_model
    from rankscope.sweep.runner import run_sweep
    from rankscope.report.terminal import print_summary

    if config.tracking.mlflow:  # experiment tracking: fail before the sweep, not hours after it
        from rankscope.tracking import require_mlflow

        require_mlflow()
    resolved, _ = check_model(config)  # an unreachable model id or a LoRA target it lacks: refused before any arm
    out.mkdir(parents=True, exist_ok=True)
    handler = _log_to_file(out)
    log = logging.getLogger("rankscope.cli")

    def announce(message: str) -> None:
        log.info(message)
        if not quiet:
            print(message, flush=True)

    from rankscope.sweep.provenance import utc_now, write_run_json

    try:
        announce(f"rankscope: sweep {config.name!r} -> {out}")
        started = utc_now()
        outcome = run_sweep(config, out, announce=announce)
        write_run_json(out, config, resolved, started, outcome.wall_time_s, len(outcome.ran), len(outcome.skipped),
                       len(outcome.failed))
    finally:
        logging.getLogger("rankscope").removeHandler(handler)
        handler.close()
    if not quiet:
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
    return _run(preset_path(args.preset), out, args.overrides, args.executor, args.address, not args.no_report,
                args.quiet)


def cmd_run(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    out = Path(args.out) if args.out else Path("runs") / config_path.stem
    return _run(config_path, out, args.overrides, args.executor, args.address, not args.no_report, args.quiet)


def cmd_validate(args: argparse.Namespace) -> int:
    """``run``'s own pre-flight (rankscope.sweep.preflight): model, LoRA targets, every dataset."""
    config = _load(Path(args.config), args.overrides)
    from rankscope.sweep.preflight import preflight, print_preflight

    checked = preflight(config)
    if args.json:
        print(json.dumps({"config": args.config, "valid": True, **checked.to_json()}, indent=2))
        return 0
    if not args.quiet:
        print_preflight(checked)
    print(f"{args.config}: valid; {len(checked.arms)} arm(s)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Per-arm memory, step time and verdict without loading weights (rankscope.plan)."""
    config = _load(Path(args.config), args.overrides)
    from rankscope.plan import plan_config, render_plan
    from rankscope.sweep.plan import plan_arms

    device, shape, estimates = plan_config(config, plan_arms(config), args.device)
    if args.json:
        print(json.dumps([e.to_json() for e in estimates], indent=1))
    else:
        print(render_plan(device, shape, estimates))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from rankscope.report import write_report

    run_dirs = [Path(p) for p in args.run_dirs]
    for run_dir in run_dirs:
        if not (run_dir / "results.csv").is_file():
            from rankscope.errors import RankscopeError

            raise RankscopeError(str(run_dir), "no results.csv here", "pass a run directory written by `rankscope run`")
    path = write_report(run_dirs, Path(args.out) if args.out else None)
    if getattr(args, "json", False):
        # stdout carries only the JSON (one object per run x training set), so it can be piped.
        from rankscope.report import load_run

        payload = [{"run_dir": str(d), **rec.to_json()} for d in run_dirs for rec in load_run(d).recommendations]
        print(f"report: {path}", file=sys.stderr)
        print(json.dumps(payload, indent=2))
        return 0
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
        return _export_dataset(args, _dataset_spec(name=name, path=path, format=args.format, kind=args.kind,
                                                   n_test=args.n))
    n = 3 if args.n is None else args.n
    if n < 0:
        from rankscope.errors import ConfigError

        raise ConfigError("datasets show -n", f"{n} examples", "give 0 (sizes only) or more")
    spec = _dataset_spec(name=name, path=path, format=args.format, kind=args.kind)
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


def _dataset_spec(**values):
    """A DatasetSpec from command-line values; a bad value is one line naming the option."""
    from pydantic import ValidationError

    from rankscope.config import DatasetSpec, first_error

    try:
        return DatasetSpec(**values)
    except ValidationError as error:
        raise first_error(error, "datasets", DatasetSpec) from None


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
    from rankscope.report.terminal import print_eval_table

    job = EvalJob(model=args.model, datasets=read_dataset_list(Path(args.datasets)), limit=args.limit,
                  seed=args.seed, adapter=args.adapter)
    out = Path(args.out or "runs/eval")
    path = run_eval(job, out, EvalSpec(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens))
    print_eval_table(path)
    print(f"results: {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Adapters and checkpoints trained elsewhere, compared on one base (rankscope.sweep.compare)."""
    from rankscope.evaluate.standalone import read_dataset_list
    from rankscope.sweep.compare import compare_config

    overrides = list(args.set or [])
    datasets = read_dataset_list(Path(args.datasets))
    if args.limit is not None:
        datasets = [d.model_copy(update={"n_test": min(args.limit, d.n_test or args.limit)}) for d in datasets]
    config = compare_config(args.model, datasets, args.dirs, args.in_domain, overrides)
    return _run_config(config, Path(args.out or "runs/compare"), not args.no_report, args.quiet)


COMPARE_HELP = (
    "score adapters and checkpoints trained elsewhere against the base and each other; no sweep YAML")
COMPARE_EPILOG = (
    "Each DIR is a PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors: rank, alpha, "
    "rsLoRA and targets are read from it) or a full checkpoint folder (*.safetensors) of the same "
    "architecture as --model; safetensors only. The verdicts need a reference: the --in-domain set "
    "(default: the first entry of the datasets file) is where gain is measured; sets of its kind count as "
    "near (transfer), the rest as far (forgetting). The run directory and report are those of `rankscope run`; "
    "rerunning the same command resumes. docs/imported.md has the details.")


def build_parser() -> argparse.ArgumentParser:
    from rankscope import __version__

    # -v/-q are accepted before or after the verb: the verb's copies default to SUPPRESS, so they
    # only set the flag when given there and never reset one given before the verb.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show debug logging and tracebacks")
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="print only errors and the final result line")
    parser = argparse.ArgumentParser(prog="rankscope", description="How much LoRA rank is too much? "
                                     "Controlled LoRA rank sweeps vs full fine-tuning and the base model.")
    parser.add_argument("--version", action="version", version=f"rankscope {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only errors and the final result line")
    sub = parser.add_subparsers(dest="command", required=True)

    def verb(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kwargs)

    def sweep_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", help="run directory (a rerun into it resumes)")
        p.add_argument("--executor", choices=["local", "ray"], help="where arms run (default: the config's)")
        p.add_argument("--address", help="Ray cluster address (with --executor ray)")
        p.add_argument("--no-report", action="store_true", help="skip the HTML report at the end")
        p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.steps=10")

    demo = verb("demo", help="run a preset sweep on the offline default model")
    demo.add_argument("--preset", choices=PRESETS, default="quick",
                      help=", ".join(f"{name} ({time})" for name, time in PRESET_TIMES.items()) + " on 2 CPU cores")
    sweep_options(demo)
    demo.set_defaults(func=cmd_demo)

    run = verb("run", help="run the sweep described by a YAML config")
    run.add_argument("config")
    sweep_options(run)
    run.set_defaults(func=cmd_run)

    validate = verb("validate", help="run's pre-flight: load every dataset, resolve the model, "
                              "check LoRA targets, list the arms")
    validate.add_argument("config")
    validate.add_argument("--json", action="store_true", help="the checks as JSON (for scripts)")
    validate.add_argument("overrides", nargs="*", metavar="key=value")
    validate.set_defaults(func=cmd_validate)

    plan = verb("plan", help="per-arm memory, step time and whether it fits, from the config alone")
    plan.add_argument("config")
    plan.add_argument("--device", choices=["cpu", "a100-80gb", "h100", "h200"],
                      help="size for this device (default: where the sweep would run)")
    plan.add_argument("--json", action="store_true", help="one JSON array of per-arm objects")
    plan.add_argument("overrides", nargs="*", metavar="key=value")
    plan.set_defaults(func=cmd_plan)

    from rankscope.predict.command import add_predict_verb  # torch-free: torch loads when the verb runs

    add_predict_verb(verb)

    report = verb("report", help="write report.html for one run, or compare several")
    report.add_argument("run_dirs", nargs="+")
    report.add_argument("--out", help="folder for the comparison report of several runs")
    report.add_argument("--json", action="store_true",
                        help="print the recommendation(s) as JSON (rank, rule, test, margins, decided, reason)")
    report.set_defaults(func=cmd_report)

    track = verb("track", help="log a run directory to MLflow (pip install 'rankscope[mlflow]')")
    track.add_argument("run_dir")
    track.add_argument("--uri", help="MLflow tracking URI (default sqlite:///RUN_DIR/mlflow.db)")
    track.add_argument("--experiment", help="MLflow experiment (default: the sweep's name)")
    track.set_defaults(func=cmd_track)

    evaluate = verb("eval", help="evaluate one model on a list of datasets")
    evaluate.add_argument("--model", default="default",
                          help="default | hub id | directory | file.gguf | RUN_DIR/arms/ARM_ID")
    evaluate.add_argument("--adapter", help="a PEFT LoRA adapter folder (safetensors) applied to --model")
    evaluate.add_argument("--datasets", required=True, help="YAML list of dataset specs")
    evaluate.add_argument("--limit", type=int, help="seeded sample of at most N items per dataset")
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--batch-size", type=int, default=16)
    evaluate.add_argument("--max-new-tokens", type=int, default=32,
                          help="new tokens for generative sets without their own (a set's max_new_tokens, "
                               "or GSM8K's default of 256, wins)")
    evaluate.add_argument("--out", help="output folder (default runs/eval)")
    evaluate.set_defaults(func=cmd_eval)

    compare = verb("compare", help=COMPARE_HELP, description=COMPARE_HELP + ".", epilog=COMPARE_EPILOG)
    compare.add_argument("--model", default="default",
                         help="the base model the folders were trained from: default | hub id | directory | file.gguf")
    compare.add_argument("--datasets", required=True, help="YAML list of dataset specs (as `rankscope eval` takes)")
    compare.add_argument("--in-domain", metavar="NAME",
                         help="the set the arms were trained for (default: the first in the datasets file)")
    compare.add_argument("--limit", type=int, help="seeded sample of at most N items per dataset")
    compare.add_argument("--out", help="run directory (default runs/compare; a rerun into it resumes)")
    compare.add_argument("--no-report", action="store_true", help="skip the HTML report at the end")
    compare.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="a config override, e.g. --set analysis.enabled=false (repeatable)")
    compare.add_argument("dirs", nargs="+", metavar="DIR", help="adapter or full checkpoint folders")
    compare.set_defaults(func=cmd_compare)

    datasets = verb("datasets", help="list datasets, show rendered examples, or export one")
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


def error_root(error) -> type | None:
    """The spec class a pydantic error came from (for "did you mean"), when it is one of ours."""
    from rankscope import config as specs

    candidate = getattr(specs, str(error.title), None)
    return candidate if isinstance(candidate, type) and issubclass(candidate, specs.Spec) else None


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
    _quiet_libraries(args.verbose, args.quiet)
    from pydantic import ValidationError

    from rankscope.errors import RankscopeError

    try:
        return args.func(args)
    except RankscopeError as error:
        if args.verbose:
            raise
        print(f"rankscope: error: {error}", file=sys.stderr)
        return 2
    except ValidationError as error:  # input that reached a spec without a friendlier check
        if args.verbose:
            raise
        from rankscope.config import first_error

        print(f"rankscope: error: {first_error(error, args.command, error_root(error))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rankscope ... | head`: the reader left; no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("rankscope: interrupted; finished arms are kept, rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
