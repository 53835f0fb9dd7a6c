"""Old vs new verdicts on one finished run: every in-domain gain with the old unpaired interval
and the new paired one, and the old and new recommendation.

The old numbers come from the report code of a git ref (default ``main`` before issue 11): its
``report/tables.py`` and ``report/recommend.py`` are read with ``git show`` and run on the same
run directory (gain ± hypot(se_arm, se_base), the one-standard-error rule). The new ones are
this checkout's (paired intervals from the item files, the non-inferiority rule).

    python bench/verdicts_old_vs_new.py RUN_DIR [--ref main]

Run it from the repository root; the run directory needs item files (a run by this version).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import subprocess
import sys
import tempfile
from pathlib import Path


def load_old(ref: str, folder: Path):
    """The ref's tables.py and recommend.py as modules old_tables / old_recommend."""
    modules = {}
    for name in ("tables", "recommend"):
        source = subprocess.run(["git", "show", f"{ref}:src/rankscope/report/{name}.py"], check=True,
                                capture_output=True, text=True).stdout
        source = source.replace("from rankscope.report.tables import", "from old_tables import")
        source = source.replace("from rankscope.report.store import", "from rankscope.runstore.reader import")
        path = folder / f"old_{name}.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location(f"old_{name}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"old_{name}"] = module
        spec.loader.exec_module(module)
        modules[name] = module
    return modules["tables"], modules["recommend"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--ref", default="main", help="git ref with the old report code (default: main)")
    args = parser.parse_args()

    from rankscope.report import build_views, load_run, recommend

    store = load_run(Path(args.run_dir))
    with tempfile.TemporaryDirectory() as tmp:
        old_tables, old_recommend = load_old(args.ref, Path(tmp))
        old_views = {v.train_set: v for v in old_tables.build_views(store, "accuracy")}
        z = 1.959964
        for view in build_views(store):
            old = old_views.get(view.train_set)
            print(f"== trained on {view.train_set} ==")
            print(f"{'arm':<14} {'set':<14} {'metric':<9} {'gain':>7}  {'old ±1se':>9}  {'old 95% [lo, hi]':>19}  "
                  f"{'new 95% paired [lo, hi]':>24}  {'width new/old':>13}  test")
            for g in view.groups:
                if g.method == "base":
                    continue
                for d in view.in_domain:
                    info = next(x for x in view.datasets if x.name == d)
                    new = view.gain(g, d)
                    row = view.paired(g, d)
                    old_group = next((k for k in (old.groups if old else []) if k.label == g.label), None)
                    prior = old.gain(old_group, d) if old and old_group else None
                    if new is None or new.ci is None or prior is None:
                        print(f"{g.label:<14} {d:<14} (missing: item records or old numbers)")
                        continue
                    old_lo, old_hi = prior.value - z * prior.stderr, prior.value + z * prior.stderr
                    ratio = (new.ci[1] - new.ci[0]) / (old_hi - old_lo) if old_hi > old_lo else math.nan
                    print(f"{g.label:<14} {d:<14} {info.metric:<9} {100 * new.value:>+7.1f}  {100 * prior.stderr:>9.1f}  "
                          f"[{100 * old_lo:+6.1f}, {100 * old_hi:+6.1f}]  "
                          f"      [{100 * new.ci[0]:+6.1f}, {100 * new.ci[1]:+6.1f}]  {ratio:>13.2f}  {row.result.test}")
                    if info.metric != "accuracy":
                        print(f"{'':<14} {'':<14} (old: accuracy gain {100 * prior.value:+.1f}; new uses {info.metric})")
            if old is not None:
                before = old_recommend.recommend(old)
                print(f"old recommendation: {before.rank if before.decided else 'undecided'} — {before.reason}")
            after = recommend(view)
            print(f"new recommendation: {after.rank if after.decided else 'undecided'} — {after.reason}")
            if after.needed_items:
                print(f"    items per set that would decide it: {after.needed_items}")
            print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
