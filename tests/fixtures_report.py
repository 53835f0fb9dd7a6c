"""Build synthetic run directories (docs/run-store.md layout) for the report tests.

No torch and no training: numbers are chosen so the expected recommendation is known, and
every file is written in the documented schema, so the tests also pin the store contract.
"""

from __future__ import annotations

import csv
import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

RESULT_COLUMNS = ["arm_id", "method", "rank", "alpha", "seed", "train_set", "dataset", "kind", "domain",
                  "relation", "format", "metric", "value", "n", "stderr", "primary", "status"]
DEFAULT_DATASETS = {"arith_chain": ("reasoning", "in"), "capitals": ("recall", "out")}


@dataclass
class Arm:
    """One synthetic arm; ``acc`` maps dataset name -> accuracy."""

    method: str
    rank: int | None = None
    seed: int = 0
    acc: dict[str, float] = field(default_factory=dict)
    status: str = "done"
    error: str | None = None

    @property
    def alpha(self) -> float | None:
        return float(2 * self.rank) if self.rank else None

    @property
    def arm_id(self) -> str:
        if self.method == "lora":
            return f"lora-r{self.rank}-a{2 * self.rank}-s{self.seed}-0000abcd"
        return f"{self.method}-s{self.seed}-0000abcd" if self.method != "base" else "base-0000abcd"


def default_arms(train_set: str = "arith_chain", out_set: str = "capitals") -> list[Arm]:
    """base, sft, lora r1 and r8: r1 trails sft by ~3 stderr, r8 ties it and forgets less -> r=8."""
    return [
        Arm("base", acc={train_set: 0.20, out_set: 0.90}),
        Arm("sft", acc={train_set: 0.60, out_set: 0.70}),
        Arm("lora", 1, acc={train_set: 0.45, out_set: 0.89}),
        Arm("lora", 8, acc={train_set: 0.58, out_set: 0.86}),
    ]


def _stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")


def _trainable(arm: Arm) -> int:
    return 134_515_008 if arm.method == "sft" else arm.rank * 2 * 576 * 7 * 30


def item_outcomes(dataset: str, acc: float, n: int) -> list[int]:
    """0/1 outcomes on n items with mean round(acc * n) / n. Every arm ranks the items of a set by
    the same hidden difficulty, so two arms agree on all but |acc_a - acc_b| of the items."""
    order = np.random.default_rng(zlib.crc32(dataset.encode())).permutation(n)
    k = round(acc * n)
    return [int(order[i] < k) for i in range(n)]


def _relation(name: str, datasets: dict[str, tuple[str, str]]) -> str:
    kind, domain = datasets[name]
    if domain == "in":
        return "in"
    return "near" if any(k == kind and d == "in" for k, d in datasets.values()) else "far"


def _write_items(folder: Path, arm: Arm, datasets: dict[str, tuple[str, str]], n: int) -> None:
    for name in datasets:
        rows = [{"uid": f"{name}-{i}", "correct": c} for i, c in enumerate(item_outcomes(name, arm.acc[name], n))]
        path = folder / "items" / f"{name}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _write_arm(root: Path, arm: Arm, train_set: str, datasets: dict[str, tuple[str, str]], n: int,
               items: bool = True) -> None:
    folder = root / "arms" / arm.arm_id
    if arm.status == "done" and items:
        _write_items(folder, arm, datasets, n)
    if arm.status == "done":
        _write_json(folder / "eval.json", {"datasets": {
            name: {"kind": kind, "format": "mc" if kind == "recall" else "generative", "domain": domain,
                   "metrics": {"accuracy": {"value": arm.acc[name], "n": n, "stderr": _stderr(arm.acc[name], n)}}}
            for name, (kind, domain) in datasets.items()}, "eval_time_s": 1.0})
    if arm.method != "base" and arm.status == "done":
        steps = 20
        _write_json(folder / "train.json", {
            "trainable_params": _trainable(arm), "total_params": 134_515_008, "steps": steps,
            "wall_time_s": 80.0 if arm.method == "sft" else 50.0 + arm.rank, "tokens_per_s": 400.0,
            "peak_memory_mb": 2950.0 if arm.method == "sft" else 1500.0 + arm.rank,
            "final_loss": 0.4, "loss_curve": [[s, 2.3 * math.exp(-s / (8 + (arm.rank or 16)))] for s in range(1, steps + 1, 4)],
        })
    _write_json(folder / "arm.json", {
        "arm_id": arm.arm_id, "method": arm.method, "rank": arm.rank, "alpha": arm.alpha, "seed": arm.seed,
        "train_set": None if arm.method == "base" else train_set, "targets": "all-linear",
        "lr": None if arm.method == "base" else 1e-3, "status": arm.status, "error": arm.error,
    })


def _results_rows(arm: Arm, train_set: str, datasets: dict[str, tuple[str, str]], n: int) -> list[dict]:
    common = {"arm_id": arm.arm_id, "method": arm.method, "rank": arm.rank or "", "alpha": arm.alpha or "",
              "seed": arm.seed, "train_set": train_set}
    if arm.status == "failed":
        return [{**common, "dataset": "", "kind": "", "domain": "", "format": "", "metric": "failed",
                 "value": "", "n": "", "stderr": "", "status": arm.error}]
    return [{**common, "dataset": name, "kind": kind, "domain": domain, "relation": _relation(name, datasets),
             "format": "mc" if kind == "recall" else "generative", "metric": "accuracy",
             "value": arm.acc[name], "n": n, "stderr": _stderr(arm.acc[name], n), "primary": 1, "status": "done"}
            for name, (kind, domain) in datasets.items()]


def _write_analysis(root: Path, arms: list[Arm], layers: int = 4, heads: int = 3) -> None:
    rng = np.random.default_rng(0)
    spectral, representation, attention = [], [], []
    singular, maps = {}, {}
    for arm in arms:
        if arm.status != "done":
            continue
        width = arm.rank or 32
        for layer in range(layers):
            if arm.method != "base":
                for module in ("q_proj", "v_proj"):
                    sv = np.sort(rng.uniform(0.1, 1.0, width))[::-1] * np.exp(-np.arange(width) / 4.0)
                    singular[f"{arm.arm_id}/{layer}/{module}"] = sv.astype(np.float32)
                    p = sv / sv.sum()
                    spectral += [[arm.arm_id, layer, module, "effective_rank", float(np.exp(-(p * np.log(p)).sum()))],
                                 [arm.arm_id, layer, module, "stable_rank", float((sv**2).sum() / sv[0] ** 2)],
                                 [arm.arm_id, layer, module, "intruder_dimensions", float(min(width, 3) if arm.method == "lora" else 0)]]
                representation.append([arm.arm_id, layer, "cka", 1.0 - 0.02 * layer * (1 + (arm.rank or 40) / 10)])
            representation.append([arm.arm_id, layer, "effective_rank", 10.0 + layer])
            logits = rng.normal(size=(heads, 6, 6)) + np.tril(np.zeros((6, 6))) - np.triu(np.full((6, 6), 1e9), 1)
            attn = np.exp(logits - logits.max(-1, keepdims=True))
            maps[f"{arm.arm_id}/{layer}"] = (attn / attn.sum(-1, keepdims=True)).astype(np.float32)
            for head in range(heads):
                entropy = 1.5 + 0.1 * head - (0.0 if arm.method == "base" else 0.05 * layer)
                attention.append([arm.arm_id, layer, head, "entropy", entropy])
                if arm.method != "base":
                    attention.append([arm.arm_id, layer, head, "entropy_change", -0.05 * layer])
    folder = root / "analysis"
    folder.mkdir(parents=True, exist_ok=True)
    for name, header, rows in (("spectral", ["arm_id", "layer", "module", "metric", "value"], spectral),
                               ("representation", ["arm_id", "layer", "metric", "value"], representation),
                               ("attention", ["arm_id", "layer", "head", "metric", "value"], attention)):
        with (folder / f"{name}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    save_file(singular, str(folder / "singular_values.safetensors"))
    save_file(maps, str(folder / "attention_maps.safetensors"))


def build_run_store(root: Path, arms: list[Arm] | None = None, *, train_set: str = "arith_chain",
                    datasets: dict[str, tuple[str, str]] | None = None, n: int = 200, analysis: bool = True,
                    name: str = "synthetic", results_csv: bool = True, items: bool = True,
                    margins: tuple[float, float] = (0.05, 0.08)) -> Path:
    """Write a complete run directory under ``root`` and return it."""
    datasets = datasets or DEFAULT_DATASETS
    arms = arms if arms is not None else default_arms(*datasets)
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(f"name: {json.dumps(name)}\nmodel:\n  id: default\n"
                                      f"data:\n  train:\n  - name: {json.dumps(train_set)}\n"
                                      # the default margins are those under which default_arms() recommends r=8
                                      f"recommend:\n  gain_margin: {margins[0]}\n  forgetting_margin: {margins[1]}\n",
                                      encoding="utf-8")
    rows = []
    for arm in arms:
        _write_arm(root, arm, train_set, datasets, n, items)
        rows += _results_rows(arm, train_set, datasets, n)
    if results_csv:
        with (root / "results.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=RESULT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    if analysis:
        _write_analysis(root, arms)
    return root
