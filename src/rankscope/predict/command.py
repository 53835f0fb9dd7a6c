"""The ``rankscope predict`` verb: its arguments (torch-free, so ``rankscope --help`` stays fast)
and the command, which loads rankscope.predict.run (torch) only when it runs."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def predict_command(args: argparse.Namespace) -> int:
    """``rankscope predict CONFIG [--out RUN_DIR]``: the run directory defaults to `run`'s, runs/<config stem>."""
    from rankscope.config import load_config
    from rankscope.predict.run import predict

    config_path = Path(args.config)
    run_dir = Path(args.out) if args.out else Path("runs") / config_path.stem
    prediction = predict(load_config(config_path, args.overrides), run_dir, probe_steps=args.probe_steps,
                         announce=lambda line: print(line, flush=True))
    print(f"prediction: {run_dir / 'prediction.json'}  ({prediction.total_s:.1f} s in all, model load included)")
    return 0


def add_predict_verb(verb: Callable[..., argparse.ArgumentParser]) -> None:
    """Register the verb with the CLI's ``verb(name, help=...)`` factory."""
    parser = verb("predict", help="predict a rank interval per training set from cheap signals, before the sweep")
    parser.add_argument("config")
    parser.add_argument("--out", help="run directory for prediction.json (default: run's, runs/<config stem>)")
    parser.add_argument("--probe-steps", type=int, default=10, help="full fine-tuning probe steps (1-10)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    parser.set_defaults(func=predict_command)


__all__ = ["add_predict_verb", "predict_command"]
