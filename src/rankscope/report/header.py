"""The report's header and legend: what was measured with what, what each column means, and
example predictions, read from the store (run.json, results.csv, arms/*/eval.json; no torch).

run.json is written at sweep time (rankscope.sweep.provenance); a run directory from before it
existed still reports, with "not recorded" in the header.
"""

from __future__ import annotations

import json
from pathlib import Path

from rankscope.runstore.reader import RunStore
from rankscope.report.tables import Table

#: Example predictions shown per evaluated set.
EXAMPLES_PER_SET = 3
#: The library versions named in the header (run.json keeps them all).
HEADER_LIBRARIES = ("rankscope", "torch", "transformers", "peft", "python")

#: Every column of the report's tables: its unit and what it measures.
UNITS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "% of test items", "items answered correctly (mc: the highest-likelihood choice is the gold "
     "one; generative: exact match after normalisation, see docs/config.md); mean over seeds ± standard error"),
    ("seeds", "count", "training seeds averaged in the cell"),
    ("learning rate", "peak rate", "the arm's peak learning rate (linear warm-up, then linear decay); with a "
     "grid (train.lr lists), the rate selected on the validation split"),
    ("alpha", "LoRA alpha", "LoRA's alpha: B @ A is scaled by alpha/r (alpha/sqrt(r) with rsLoRA); — for sft"),
    ("val", "% of validation items (loss: nats per answer token)", "a grid candidate's primary metric on its "
     "training set's validation split, with its mean answer-token loss; picks the learning rate, never the test"),
    ("rate / best SFT rate", "ratio", "this arm's selected rate / the full fine-tuning arm's selected rate"),
    ("selection", "words", "why the rate was selected, or a warning that the best rate is at the grid's edge"),
    ("gain", "percentage points (pp)", "accuracy(arm) − accuracy(base) on an in-domain set"),
    ("forgetting", "percentage points (pp)", "accuracy(base) − accuracy(arm) on an out-of-domain set; positive = lost"),
    ("(sd x)", "percentage points", "standard deviation over seeds, shown after a cell when there are several"),
    ("trainable params", "count", "parameters the arm's optimizer updates (LoRA: A and B; sft: every weight)"),
    ("of total", "%", "trainable params / all parameters of the model"),
    ("wall time (s)", "seconds", "the training loop of one arm (model load, evaluation and analysis excluded)"),
    ("tokens/s", "tokens per second", "non-padding training tokens (prompt + answer) processed per second"),
    ("peak memory (MiB)", "MiB (2^20 bytes)", "CPU: peak resident memory of the whole process while the arm "
     "trained (base model included); CUDA: peak memory allocated by torch on the device"),
    ("arm's own memory (MiB)", "MiB (2^20 bytes)", "peak memory minus what was resident when the arm began "
     "(the resident base model excluded): what the arm itself needed"),
    ("precision", "recipe", "the training recipe: fp32, or bf16-mixed (bf16 compute, fp32 master weights and "
     "AdamW state); every arm is also evaluated under it"),
    ("final loss", "nats per answer token", "cross-entropy on the answer tokens at the last step"),
    ("dataset", "name", "the evaluated set"),
    ("metric", "name", "accuracy, or acc_norm (choice log-likelihood per UTF-8 byte) for multiple choice with "
     "choices of unequal length: the set's primary metric"),
    ("relation", "in | near | far", "the set's relation to the training set: its own test split, a set of the "
     "same kind (transfer), or another kind (forgetting)"),
    ("items", "count", "test items scored (paired: the same items for every arm)"),
    ("agreement with base", "%", "items on which a trained arm and the base model are both right or both wrong "
     "(mean over arms); the more they agree, the smaller the paired error"),
    ("MDE (pp)", "percentage points", "minimum detectable effect: the smallest true difference the paired test "
     "finds with 80% power at this n and agreement, after the Holm correction"),
    ("margin", "nats", "mc: log-likelihood of the gold choice − the best other choice, mean over items"),
)


def read_run_json(path: Path) -> dict | None:
    try:
        return json.loads((path / "run.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d} (h:mm:ss)"


def _weights(model: dict) -> str:
    if model.get("commit") or model.get("revision"):
        return f"revision {model.get('revision')}" + (f", commit {model['commit']}" if model.get("commit") else "")
    for key in ("sha256", "folder_sha256"):
        if model.get(key):
            return f"{key} {model[key][:16]}…" + (f" of {model['file']}" if model.get("file") else "")
    return "—"


def items_per_set(store: RunStore) -> str:
    """Test items per evaluated set, from results.csv's ``n`` (the most any arm was scored on)."""
    n: dict[str, int] = {}
    for row in store.results:
        if row.metric == "accuracy" and row.n is not None:
            n[row.dataset] = max(n.get(row.dataset, 0), row.n)
    return ", ".join(f"{name} {count}" for name, count in n.items()) or "—"


def seeds_of(store: RunStore) -> list[int]:
    return sorted({a.seed for a in store.arms.values() if a.method != "base" and a.seed is not None})


def one_seed_warning(store: RunStore) -> str | None:
    """Said beside the recommendation when every trained arm ran with a single seed."""
    if len(seeds_of(store)) != 1:
        return None
    return ("The recommendation rests on one training seed: differences between ranks may be "
            "seed-to-seed noise. Add seeds (arms.seeds: [0, 1, 2]) to measure it.")


def run_header(store: RunStore) -> Table:
    """Model, weights, device, dtype, versions, dates, total wall time, items per set, seeds."""
    info = read_run_json(store.path)
    rows: list[list[str]] = []
    if info is None:
        rows.append(["recorded", "not recorded (no run.json: the sweep ran before rankscope wrote it)"])
    else:
        model = info.get("model", {})
        libraries = info.get("libraries", {})
        runs = info.get("invocations", [])
        rows += [
            ["model", f"{model.get('id', '—')} ({model.get('where', '?')}: {model.get('location', '?')})"],
            ["weights", _weights(model)],
            ["device, dtype", f"{info.get('device', '—')}, {info.get('dtype', '—')}"],
            ["libraries", ", ".join(f"{k} {libraries[k]}" for k in HEADER_LIBRARIES if k in libraries)],
            ["date (UTC)", f"{info.get('started', '—')} → {info.get('finished', '—')}"],
            ["total wall time", _duration(info.get("total_wall_time_s", 0.0))
             + (f" over {len(runs)} invocations (resumed)" if len(runs) > 1 else "")],
        ]
    seeds = seeds_of(store)
    rows += [["test items per set", items_per_set(store)],
             ["seeds", ", ".join(map(str, seeds)) or "—"]]
    return Table("Run", ["", "value"], rows, "recorded at sweep time in run.json")


def units_table() -> Table:
    return Table("What the columns mean", ["column", "unit", "meaning"], [list(u) for u in UNITS])


def _samples(store: RunStore, arm_id: str) -> dict[str, list[dict]]:
    try:
        stored = json.loads((store.path / "arms" / arm_id / "eval.json").read_text())["datasets"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return {}
    return {name: scores.get("samples") or [] for name, scores in stored.items() if isinstance(scores, dict)}


def example_predictions(store: RunStore) -> list[Table]:
    """The first stored samples of every set, side by side for each finished arm (eval.json)."""
    arms = [a for _, a in sorted(store.arms.items(), key=lambda item: (item[1].method != "base", item[0]))
            if a.status == "done"]
    per_arm = {a.arm_id: _samples(store, a.arm_id) for a in arms}
    datasets = list(dict.fromkeys(name for samples in per_arm.values() for name in samples))
    tables = []
    for name in datasets:
        shown = [a for a in arms if per_arm[a.arm_id].get(name)]
        if not shown:
            continue
        first = per_arm[shown[0].arm_id][name][:EXAMPLES_PER_SET]
        rows = []
        for sample in first:
            uid = sample.get("uid")
            row = [str(uid), str(sample.get("answer", "—"))]
            for arm in shown:
                match = next((s for s in per_arm[arm.arm_id][name] if s.get("uid") == uid), None)
                if match is None:
                    row.append("—")
                    continue
                mark = "✓" if match.get("correct") else "✗"
                if "prediction" in match:
                    row.append(f"{mark} {' '.join(str(match['prediction']).split())[:80]}")
                else:
                    row.append(f"{mark} margin {match.get('margin', float('nan')):+.2f}")
            rows.append(row)
        tables.append(Table(f"Example predictions: {name}", ["item", "gold answer"] + [a.arm_id for a in shown],
                            rows, "✓ correct, ✗ wrong; generative: the generated text; mc: the gold choice's margin"))
    return tables
