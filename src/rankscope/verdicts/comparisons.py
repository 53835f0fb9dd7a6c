"""Paired comparisons of a sweep's arms, built from their per-item records (comparisons.csv).

One row per (training set, evaluated set, metric, arm a, arm b) for
- every trained arm vs the base model (``comparison = vs_base``): on in-domain and near sets the
  row is "arm vs base" (delta = gain or transfer), on far sets "base vs arm" (delta = forgetting,
  positive = the arm lost knowledge);
- every LoRA arm vs SFT (``vs_sft``) on every set;
- every LoRA arm vs the best arm in-domain (``vs_best``) on in-domain sets.
Rows are made per arm group (the arms that differ only in seed; ``level = group``, seeds pooled by
the hierarchical bootstrap) and, when a group has several seeds, per seed pair too
(``level = seed``). ``p_holm`` is Holm-adjusted within one family (training set, dataset, metric,
comparison, level): the arms compared in one decision. Statistics: rankscope.stats.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rankscope.stats import PairedResult, binary_sd_floor, compare_paired, holm, minimum_detectable_effect
from rankscope.verdicts.items import METRIC_FIELDS

COLUMNS = ["train_set", "dataset", "relation", "metric", "primary", "comparison", "arm_a", "arm_b",
           "group_a", "group_b", "level", "delta", "ci_low", "ci_high", "p_value", "p_holm", "test",
           "n_pairs", "n_seeds", "agreement", "mde"]

ItemLoader = Callable[[str, str], "list[dict] | None"]  # (arm_id, dataset) -> item rows or None


@dataclass(frozen=True)
class ArmRef:
    """One finished arm, as arm.json describes it."""

    arm_id: str
    method: str
    rank: int | None = None
    alpha: float | None = None
    lr: float | None = None
    seed: int | None = None
    train_set: str | None = None
    imported: str | None = None  # an imported arm's name (arms.imported): its own group

    @property
    def group(self) -> str:
        """The arm group (method, rank, alpha, lr): arms that differ only in seed. An imported arm is
        a group of its own, named after it (two adapters at one rank are not seeds of one arm)."""
        if self.method == "base":
            return "base"
        lr = f"-lr{self.lr:g}" if self.lr is not None else ""
        name = f"-imported-{self.imported}" if self.imported else ""
        if self.method == "lora":
            alpha = f"-a{self.alpha:g}" if self.alpha is not None else ""
            return f"lora-r{self.rank}{alpha}{lr}{name}"
        return f"{self.method}{lr}{name}"


@dataclass(frozen=True)
class TargetRef:
    """One evaluated set of a training set: its relation and the metric that drives decisions."""

    dataset: str
    relation: str  # in | near | far
    primary_metric: str = "accuracy"


@dataclass(frozen=True)
class StatsSettings:
    confidence: float = 0.95
    n_boot: int = 2000
    seed: int = 0


@dataclass
class Comparison:
    """One comparisons.csv row plus the paired result behind it (its bootstrap distribution)."""

    train_set: str
    dataset: str
    relation: str
    metric: str
    primary: bool
    comparison: str  # vs_base | vs_sft | vs_best
    arm_a: str
    arm_b: str
    group_a: str
    group_b: str
    level: str  # group | seed
    result: PairedResult
    p_holm: float = float("nan")
    mde: float = float("nan")

    def to_row(self) -> dict:
        r = self.result
        return {"train_set": self.train_set, "dataset": self.dataset, "relation": self.relation,
                "metric": self.metric, "primary": int(self.primary), "comparison": self.comparison,
                "arm_a": self.arm_a, "arm_b": self.arm_b, "group_a": self.group_a, "group_b": self.group_b,
                "level": self.level, "delta": r.delta, "ci_low": r.ci_low, "ci_high": r.ci_high,
                "p_value": r.p_value, "p_holm": self.p_holm, "test": r.test, "n_pairs": r.n_pairs,
                "n_seeds": r.n_seeds, "agreement": r.agreement, "mde": self.mde}


@dataclass
class Outcomes:
    """0/1 outcomes of one arm group on one dataset: ``values`` [seeds, items], columns by ``uids``."""

    arm_ids: list[str]
    uids: list[str]
    values: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> [k, n]


def _outcomes(arms: list[ArmRef], dataset: str, load: ItemLoader) -> Outcomes | None:
    """The group's seeds on the items every seed has (by uid, in the first seed's order)."""
    per_arm = []
    for arm in sorted(arms, key=lambda a: (a.seed if a.seed is not None else -1)):
        rows = load(arm.arm_id, dataset)
        if rows:
            per_arm.append((arm, {str(r["uid"]): r for r in rows}, [str(r["uid"]) for r in rows]))
    if not per_arm:
        return None
    shared = set.intersection(*(set(by_uid) for _, by_uid, _ in per_arm))
    uids = [u for u in per_arm[0][2] if u in shared]
    out = Outcomes([a.arm_id for a, _, _ in per_arm], uids)
    for metric, key in METRIC_FIELDS.items():
        if all(by_uid[u].get(key) is not None for _, by_uid, _ in per_arm for u in uids) and uids:
            out.values[metric] = np.array([[float(by_uid[u][key]) for u in uids] for _, by_uid, _ in per_arm])
    return out


def _aligned(a: Outcomes, b: Outcomes, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Both groups' outcomes on the items both have, in the same order: [k_a, n], [k_b, n]."""
    index_b = {u: i for i, u in enumerate(b.uids)}
    keep_a = [i for i, u in enumerate(a.uids) if u in index_b]
    keep_b = [index_b[a.uids[i]] for i in keep_a]
    return a.values[metric][:, keep_a], b.values[metric][:, keep_b]


def build_comparisons(arms: list[ArmRef], targets: dict[str, list[TargetRef]], load: ItemLoader,
                      settings: StatsSettings = StatsSettings()) -> list[Comparison]:
    """Every paired comparison of the sweep (see the module docstring)."""
    base = [a for a in arms if a.method == "base"]
    rows: list[Comparison] = []
    for train_set, sets in targets.items():
        trained = [a for a in arms if a.method in ("lora", "sft") and a.train_set == train_set]
        groups: dict[str, list[ArmRef]] = {}
        for arm in trained:
            groups.setdefault(arm.group, []).append(arm)
        cache: dict[tuple[str, str], Outcomes | None] = {}

        def outcomes(group: str, dataset: str) -> Outcomes | None:
            if (group, dataset) not in cache:
                members = base if group == "base" else groups[group]
                cache[(group, dataset)] = _outcomes(members, dataset, load) if members else None
            return cache[(group, dataset)]

        best = _best_group(groups, [t for t in sets if t.relation == "in"], outcomes)
        # the vs_sft reference: rankscope's own full fine-tuning, else an imported full checkpoint
        sft = next((g for g, members in groups.items() if members[0].method == "sft" and not members[0].imported),
                   None) or next((g for g, members in groups.items() if members[0].method == "sft"), None)
        for target in sets:
            for metric in METRIC_FIELDS:
                pairs: list[tuple[str, str, str]] = []  # (comparison, group_a, group_b)
                for group in sorted(groups, key=lambda g: _order(groups[g][0])):
                    pairs.append(("vs_base", "base", group) if target.relation == "far" else ("vs_base", group, "base"))
                    if sft is not None and group != sft and groups[group][0].method == "lora":
                        pairs.append(("vs_sft", group, sft))
                    if target.relation == "in" and best is not None and group != best \
                            and groups[group][0].method == "lora":
                        pairs.append(("vs_best", group, best))
                for comparison, group_a, group_b in pairs:
                    a, b = outcomes(group_a, target.dataset), outcomes(group_b, target.dataset)
                    if a is None or b is None or metric not in a.values or metric not in b.values:
                        continue
                    rows += _compare(train_set, target, metric, comparison, group_a, group_b, a, b, settings)
    _adjust(rows, settings)
    return rows


def _order(arm: ArmRef) -> tuple:
    return ({"base": 0, "lora": 1, "sft": 2}.get(arm.method, 3), arm.rank or 0, arm.alpha or 0.0, arm.lr or 0.0,
            arm.imported or "")


def _best_group(groups: dict[str, list[ArmRef]], in_sets: list[TargetRef], outcomes) -> str | None:
    """The trained group with the highest mean in-domain primary score (every in set scored)."""
    best, best_score = None, -np.inf
    for group in sorted(groups, key=lambda g: _order(groups[g][0])):
        scores = []
        for target in in_sets:
            o = outcomes(group, target.dataset)
            if o is None or target.primary_metric not in o.values:
                break
            scores.append(float(o.values[target.primary_metric].mean()))
        if in_sets and len(scores) == len(in_sets) and np.mean(scores) > best_score:
            best, best_score = group, float(np.mean(scores))
    return best


def _compare(train_set, target, metric, comparison, group_a, group_b, a: Outcomes, b: Outcomes,
             settings: StatsSettings) -> list[Comparison]:
    x, y = _aligned(a, b, metric)
    if x.shape[1] == 0:
        return []
    common = dict(train_set=train_set, dataset=target.dataset, relation=target.relation, metric=metric,
                  primary=metric == target.primary_metric, comparison=comparison, group_a=group_a, group_b=group_b)
    name_a = a.arm_ids[0] if len(a.arm_ids) == 1 else group_a
    name_b = b.arm_ids[0] if len(b.arm_ids) == 1 else group_b
    out = [Comparison(arm_a=name_a, arm_b=name_b, level="group",
                      result=compare_paired(x, y, settings.confidence, settings.n_boot, settings.seed), **common)]
    if len(a.arm_ids) > 1 or len(b.arm_ids) > 1:
        for i, arm_a in enumerate(a.arm_ids):
            j = min(i, len(b.arm_ids) - 1)  # seed i against seed i (the base arm has one)
            out.append(Comparison(arm_a=arm_a, arm_b=b.arm_ids[j], level="seed", **common,
                                  result=compare_paired(x[i], y[j], settings.confidence, settings.n_boot,
                                                        settings.seed)))
    return out


def _adjust(rows: list[Comparison], settings: StatsSettings) -> None:
    """Holm within each family; the MDE at 80% power for the family's size and each row's agreement."""
    families: dict[tuple, list[Comparison]] = {}
    for row in rows:
        families.setdefault((row.train_set, row.dataset, row.metric, row.comparison, row.level), []).append(row)
    alpha = 1 - settings.confidence
    for family in families.values():
        for row, p in zip(family, holm([r.result.p_value for r in family])):
            row.p_holm = float(p)
            sd = binary_sd_floor(row.result.sd_diff, row.result.n_pairs)
            row.mde = minimum_detectable_effect(sd, row.result.n_pairs, alpha / len(family))


def comparisons_csv(rows: list[Comparison]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: csv_cell(v) for k, v in row.to_row().items()})
    return buffer.getvalue()


def csv_cell(value: object) -> object:
    """One CSV cell as results.csv and comparisons.csv write it: empty for None, floats to 6 significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value
