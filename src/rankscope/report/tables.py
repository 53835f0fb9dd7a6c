"""Numbers behind the report: score per arm x dataset, gain, transfer, forgetting and cost tables.

Definitions (docs/architecture.md, "What is measured, and where"; Biderman et al. 2024, "LoRA Learns Less and Forgets Less"), on each set's primary
metric (accuracy, or acc_norm for multiple choice with unequal choice lengths):
- gain on an in-domain set = score(arm) - score(base); transfer, the same on a near set;
- forgetting on a far set = score(base) - score(arm) (positive = the arm lost knowledge);
- gain, transfer and forgetting are *paired* differences on the same items, with the interval of
  the paired (hierarchical) bootstrap from comparisons.csv (rankscope.verdicts). Only a run
  without item records falls back to sqrt(se1^2 + se2^2), which treats the arms as independent;
- a mean over m sets has stderr sqrt(sum se_i^2) / m (sets are scored independently).
Every table shows intervals at the run's confidence (``recommend.confidence``, default 95%).
Seeds: arms that differ only in seed form one group. Its value is the mean over seeds, its
spread the sample standard deviation, and its stderr the larger of the propagated evaluation
stderr, sqrt(sum se_i^2) / k, and the between-seed stderr, sd / sqrt(k) -- the conservative
choice, because two or three seeds estimate the seed variance poorly.
Gain and forgetting are computed within one training set (the base arm is stored once per
training set), so every table and recommendation is per training set ("view").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from scipy.stats import norm

from rankscope.runstore.reader import ArmInfo, RunStore
from rankscope.verdicts.comparisons import ArmRef, Comparison
from rankscope.verdicts.recommend import Recommendation

DOMAIN_ORDER = {"in": 0, "out": 1}
RELATION_ORDER = {"in": 0, "near": 1, "far": 2}
KIND_ORDER = {"reasoning": 0, "recall": 1}
METHOD_ORDER = {"base": 0, "lora": 1, "sft": 2}


@dataclass(frozen=True)
class Estimate:
    """A value with its standard error; ``spread``/``samples`` are set when several seeds exist."""

    value: float
    stderr: float
    n_seeds: int = 1
    spread: float | None = None
    samples: tuple[float, ...] = ()
    ci: tuple[float, float] | None = None  # a paired interval (comparisons.csv), when there is one

    def minus(self, other: "Estimate") -> "Estimate":
        return Estimate(self.value - other.value, math.hypot(self.stderr, other.stderr))

    def interval(self, z: float) -> tuple[float, float]:
        return self.ci if self.ci is not None else (self.value - z * self.stderr, self.value + z * self.stderr)


def mean_of(estimates: list[Estimate]) -> Estimate:
    """Mean over independent estimates (e.g. over datasets); stderr sqrt(sum se^2) / m; paired
    intervals combine their lower and upper half-widths the same way."""
    m = len(estimates)
    value = sum(e.value for e in estimates) / m
    ci = None
    if all(e.ci is not None for e in estimates):
        low = math.sqrt(sum((e.value - e.ci[0]) ** 2 for e in estimates)) / m
        high = math.sqrt(sum((e.ci[1] - e.value) ** 2 for e in estimates)) / m
        ci = (value - low, value + high)
    return Estimate(value, math.sqrt(sum(e.stderr**2 for e in estimates)) / m, ci=ci)


def over_seeds(values: list[float], stderrs: list[float]) -> Estimate:
    """Aggregate one group's per-seed estimates (see module docstring for the stderr choice)."""
    k = len(values)
    mean = sum(values) / k
    propagated = math.sqrt(sum(s**2 for s in stderrs)) / k
    if k == 1:
        return Estimate(mean, propagated, 1, None, tuple(values))
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (k - 1))
    return Estimate(mean, max(propagated, sd / math.sqrt(k)), k, sd, tuple(values))


@dataclass(frozen=True)
class ArmKey:
    """Arms that differ only in seed; ``label`` is what tables and figures show."""

    method: str
    rank: int | None
    alpha: float | None
    train_set: str | None
    label: str
    lr: float | None = None  # the learning rate every seed of the group trained at (the selected one on a grid)
    imported: str | None = None  # an imported arm's name: a group of its own

    @property
    def order(self) -> tuple:
        return (METHOD_ORDER.get(self.method, 3), self.rank or 0, self.alpha or 0.0, self.method, self.train_set or "",
                self.imported or "")


def arm_keys(store: RunStore) -> dict[str, ArmKey]:
    """Map every arm id to its seed group; labels add alpha / train set only when ambiguous."""
    # a grid candidate that was not selected is scored on validation only: it is no arm of the tables
    arms = [a for a in store.arms.values() if a.status != "failed" and a.stage != "candidate"]
    train_sets = {a.train_set for a in arms if a.method != "base"}
    alphas: dict[int | None, set] = {}
    for a in arms:
        if a.method == "lora":
            alphas.setdefault(a.rank, set()).add(a.alpha)
    keys: dict[str, ArmKey] = {}
    for a in arms:
        label = f"lora r{a.rank}" if a.method == "lora" else a.method
        if a.method == "lora" and len(alphas.get(a.rank, ())) > 1:
            label += f" a{a.alpha:g}" if a.alpha is not None else " a?"
        if a.imported:  # trained elsewhere: the label says so, with the user's name for it
            label = f"{label if a.method == 'lora' else 'full'} · imported {a.imported}"
        if a.method != "base" and len(train_sets) > 1:
            label += f" [{a.train_set}]"
        train_set = None if a.method == "base" else a.train_set
        keys[a.arm_id] = ArmKey(a.method, a.rank, a.alpha if a.method == "lora" else None, train_set, label,
                                None if a.method == "base" else a.lr, a.imported)
    return keys


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str
    domain: str
    relation: str = ""  # in | near | far; "" in runs written before relations existed
    metric: str = "accuracy"  # the primary metric shown for this set

    @property
    def group(self) -> str:
        if self.relation:
            domain = {"in": "in-domain", "near": "near (transfer)", "far": "far (forgetting)"}.get(self.relation,
                                                                                                self.relation)
        else:
            domain = {"in": "in-domain", "out": "out-of-domain"}.get(self.domain, self.domain or "unknown domain")
        return f"{domain} · {self.kind or 'unknown kind'}"


@dataclass
class View:
    """All accuracy numbers of one training set, aggregated over seeds."""

    train_set: str | None
    groups: list[ArmKey]
    datasets: list[DatasetInfo]
    accuracy: dict[tuple[ArmKey, str], Estimate]
    arms: dict[ArmKey, list[ArmInfo]] = field(default_factory=dict)
    comparisons: list[Comparison] = field(default_factory=list)  # this training set's, group level
    recommendation: Recommendation | None = None
    confidence: float = 0.95

    @property
    def z(self) -> float:
        return float(norm.ppf(0.5 + self.confidence / 2))

    @property
    def base(self) -> ArmKey | None:
        return next((g for g in self.groups if g.method == "base"), None)

    def group_name(self, group: ArmKey) -> str | None:
        """The comparisons.csv arm group of a table row."""
        arms = self.arms.get(group) or []
        if not arms:
            return None
        a = arms[0]
        return ArmRef(a.arm_id, a.method, a.rank, a.alpha, a.lr, a.seed, a.train_set, a.imported).group

    def paired(self, group: ArmKey, dataset: str, comparison: str = "vs_base") -> Comparison | None:
        name = self.group_name(group)
        return next((c for c in self.comparisons if c.dataset == dataset and c.comparison == comparison
                     and c.primary and name in (c.group_a, c.group_b)), None)

    def _paired_estimate(self, group: ArmKey, dataset: str, lost: bool) -> Estimate | None:
        """Paired difference arm - base (lost=False) or base - arm (lost=True) with its interval."""
        row = self.paired(group, dataset)
        if row is None:
            return None
        r = row.result
        sign = 1.0 if (row.group_a == "base") == lost else -1.0
        low, high = sorted((sign * r.ci_low, sign * r.ci_high))
        half = (high - low) / (2 * self.z) if self.z > 0 else 0.0
        return Estimate(sign * r.delta, half, r.n_seeds, ci=(low, high))

    @property
    def near(self) -> list[str]:
        return [d.name for d in self.datasets if d.relation == "near"]

    @property
    def far(self) -> list[str]:
        """Sets forgetting is judged on: far ones (every out-of-domain set in runs without relations)."""
        return [d.name for d in self.datasets if d.relation == "far" or (not d.relation and d.domain == "out")]

    @property
    def in_domain(self) -> list[str]:
        return [d.name for d in self.datasets if d.domain == "in"]

    @property
    def out_domain(self) -> list[str]:
        return [d.name for d in self.datasets if d.domain == "out"]

    def gain(self, group: ArmKey, dataset: str) -> Estimate | None:
        paired = self._paired_estimate(group, dataset, lost=False)
        if paired is not None:
            return paired
        a, b = self.accuracy.get((group, dataset)), self.accuracy.get((self.base, dataset)) if self.base else None
        return a.minus(b) if a and b else None

    def forgetting(self, group: ArmKey, dataset: str) -> Estimate | None:
        paired = self._paired_estimate(group, dataset, lost=True)
        if paired is not None:
            return paired
        a, b = self.accuracy.get((group, dataset)), self.accuracy.get((self.base, dataset)) if self.base else None
        return b.minus(a) if a and b else None

    def mean_in(self, group: ArmKey) -> Estimate | None:
        """Mean in-domain accuracy (None unless every in-domain set was scored)."""
        est = [self.accuracy.get((group, d)) for d in self.in_domain]
        return mean_of(est) if est and all(est) else None

    def mean_gain(self, group: ArmKey) -> Estimate | None:
        est = [self.gain(group, d) for d in self.in_domain]
        return mean_of(est) if est and all(est) else None

    def mean_forgetting(self, group: ArmKey) -> Estimate | None:
        """Mean forgetting over the far sets."""
        est = [self.forgetting(group, d) for d in self.far]
        return mean_of(est) if est and all(est) else None

    def mean_transfer(self, group: ArmKey) -> Estimate | None:
        """Mean gain over the near sets."""
        est = [self.gain(group, d) for d in self.near]
        return mean_of(est) if est and all(est) else None


def _stderr(value: float, stderr: float | None, n: int | None) -> float:
    """Stored stderr, else the binomial one sqrt(p(1-p)/n), else 0 (unknown noise)."""
    if stderr is not None:
        return stderr
    if n and 0.0 <= value <= 1.0:
        return math.sqrt(value * (1 - value) / n)
    return 0.0


def _is_shown(row, metric: str) -> bool:
    """``metric="primary"``: the row of each set's primary metric (accuracy in runs that did not
    record one); any other name: that metric."""
    if metric != "primary":
        return row.metric == metric
    return bool(row.primary) if row.primary is not None else row.metric == "accuracy"


def build_views(store: RunStore, metric: str = "primary") -> list[View]:
    """One View per training set; base rows with no train_set join every view."""
    keys = arm_keys(store)
    rows = [r for r in store.results if _is_shown(r, metric) and r.value is not None and r.arm_id in keys]
    train_sets = sorted({r.train_set for r in rows if r.train_set is not None}) or [None]
    views = []
    for ts in train_sets:
        mine = [r for r in rows if r.train_set == ts or (r.train_set is None and keys[r.arm_id].method == "base")]
        samples: dict[tuple[ArmKey, str], list[tuple[float, float]]] = {}
        datasets: dict[str, DatasetInfo] = {}
        arms: dict[ArmKey, list[ArmInfo]] = {}
        for r in mine:
            key = keys[r.arm_id]
            samples.setdefault((key, r.dataset), []).append((r.value, _stderr(r.value, r.stderr, r.n)))
            datasets.setdefault(r.dataset, DatasetInfo(r.dataset, r.kind, r.domain, r.relation, r.metric))
            if store.arms[r.arm_id] not in arms.setdefault(key, []):
                arms[key].append(store.arms[r.arm_id])
        accuracy = {k: over_seeds([v for v, _ in s], [e for _, e in s]) for k, s in samples.items()}
        groups = sorted(arms, key=lambda g: g.order)
        ordered = sorted(datasets.values(), key=lambda d: (DOMAIN_ORDER.get(d.domain, 2), RELATION_ORDER.get(d.relation, 3), KIND_ORDER.get(d.kind, 2), d.name))
        comparisons = [c for c in store.comparisons if c.train_set == ts and c.level == "group"]
        rec = next((r for r in store.recommendations if r.train_set == ts), None)
        views.append(View(ts, groups, ordered, accuracy, arms, comparisons, rec, store.rule.confidence))
    return views


@dataclass(frozen=True)
class Table:
    """Pre-formatted cells; renderers (html, markdown) escape them. ``groups``: header spans."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    groups: list[tuple[str, int]] = field(default_factory=list)


def pct(e: Estimate | None, signed: bool = False, z: float = 1.959964) -> str:
    """Accuracy-like numbers in percentage points with their interval: '62.0 ± 9.6' (a symmetric
    normal interval, z x stderr) or '+5.0 [+1.0, +9.0]' (a paired bootstrap interval)."""
    if e is None:
        return "—"
    text = f"{100 * e.value:+.1f}" if signed else f"{100 * e.value:.1f}"
    if e.ci is not None:
        text += f" [{100 * e.ci[0]:+.1f}, {100 * e.ci[1]:+.1f}]"
    else:
        text += f" ± {100 * z * e.stderr:.1f}"
    if e.spread is not None:
        text += f" (sd {100 * e.spread:.1f})"
    return text


#: Every table with one row per arm shows these beside the arm's name (issue: a rank compared at
#: another learning rate or alpha is not the same comparison).
ARM_COLUMNS = ["arm", "learning rate", "alpha"]


def rate_text(lr: float | None) -> str:
    return "—" if lr is None else f"{lr:.2g}"


def arm_cells(group: ArmKey) -> list[str]:
    """The arm's name, learning rate and alpha (LoRA only; alpha/r or alpha/sqrt(r) scales B @ A)."""
    return [group.label, rate_text(group.lr), "—" if group.alpha is None else f"{group.alpha:g}"]


def _spans(datasets: list[DatasetInfo]) -> list[tuple[str, int]]:
    spans: list[tuple[str, int]] = []
    for d in datasets:
        if spans and spans[-1][0] == d.group:
            spans[-1] = (d.group, spans[-1][1] + 1)
        else:
            spans.append((d.group, 1))
    return spans


def _suffix(view: View) -> str:
    return f" (trained on {view.train_set})" if view.train_set else ""


def _conf(view: View) -> str:
    return f"{100 * view.confidence:g}%"


def _header(d: DatasetInfo) -> str:
    return d.name if d.metric == "accuracy" else f"{d.name} ({d.metric})"


def accuracy_table(view: View) -> Table:
    rows = [arm_cells(g) + [str(max((e.n_seeds for (k, _), e in view.accuracy.items() if k == g), default=0))]
            + [pct(view.accuracy.get((g, d.name)), z=view.z) for d in view.datasets] for g in view.groups]
    return Table(f"Score (%){_suffix(view)}", ARM_COLUMNS + ["seeds"] + [_header(d) for d in view.datasets], rows,
                 f"each set's primary metric (accuracy, or acc_norm where named); mean ± half-width of the "
                 f"{_conf(view)} interval in percentage points; sd = spread over seeds",
                 [("", len(ARM_COLUMNS) + 1)] + _spans(view.datasets))


def gain_forgetting_table(view: View) -> Table:
    ins, near, far = view.in_domain, view.near, view.far
    cols = (ARM_COLUMNS + [f"gain {d}" for d in ins] + [f"transfer {d}" for d in near]
            + [f"forgetting {d}" for d in far])
    cols += ["mean forgetting"] if len(far) > 1 else []
    rows = []
    for g in view.groups:
        if g.method == "base":
            continue
        row = (arm_cells(g) + [pct(view.gain(g, d), True, view.z) for d in ins]
               + [pct(view.gain(g, d), True, view.z) for d in near]
               + [pct(view.forgetting(g, d), True, view.z) for d in far])
        rows.append(row + ([pct(view.mean_forgetting(g), True, view.z)] if len(far) > 1 else []))
    if view.comparisons:
        how = (f"paired differences on the same items with their {_conf(view)} paired-bootstrap interval "
               "[low, high] (comparisons.csv)")
    else:
        how = (f"no item records: ± the {_conf(view)} half-width of sqrt(se_arm² + se_base²), which treats the "
               "arms as independent and overstates the noise")
    note = ("gain = score(arm) − score(base) on in-domain sets; transfer, the same on near sets; forgetting = "
            f"score(base) − score(arm) on far sets (positive = lost); {how}")
    if view.base is None:
        note = "no finished base arm: gain and forgetting cannot be computed"
    return Table(f"Gain, transfer and forgetting vs base (pp){_suffix(view)}", cols, rows, note)


def mde_table(view: View) -> Table:
    """Per set: the smallest difference vs base a paired test finds with 80% power (Holm over the
    arms compared), at the median agreement between the trained arms and the base model."""
    rows = []
    for d in view.datasets:
        found = [c for c in view.comparisons if c.dataset == d.name and c.comparison == "vs_base" and c.primary]
        if not found:
            continue
        mde = sorted(c.mde for c in found)[len(found) // 2]
        agreement = [c.result.agreement for c in found if c.result.agreement is not None]
        rows.append([d.name, d.relation or d.domain, d.metric, str(found[0].result.n_pairs),
                     f"{100 * sorted(agreement)[len(agreement) // 2]:.0f}%" if agreement else "—",
                     f"{100 * mde:.1f}"])
    return Table(f"Minimum detectable effect{_suffix(view)}",
                 ["dataset", "relation", "metric", "items", "agreement with base", "MDE (pp)"], rows,
                 "the smallest true difference vs base a paired test finds with 80% power at "
                 f"{_conf(view)} confidence (Holm over the arms compared), at the median agreement of the "
                 "trained arms with the base model; a smaller effect needs more items")


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def cost_table(view: View) -> Table:
    rows = []
    for g in view.groups:
        infos = [a.train for a in view.arms.get(g, []) if a.train is not None]
        if not infos:
            continue
        params = _mean([t.trainable_params for t in infos])
        total = _mean([t.total_params for t in infos])
        share = f"{100 * params / total:.3g}%" if params and total else "—"
        cells = [_mean([t.wall_time_s for t in infos]), _mean([t.tokens_per_s for t in infos]),
                 _mean([t.peak_memory_mb for t in infos]), _mean([t.peak_memory_arm_mb for t in infos]),
                 _mean([t.final_loss for t in infos])]
        recipes = sorted({t.precision for t in infos if t.precision})
        rows.append(arm_cells(g) + [f"{params:,.0f}" if params is not None else "—", share]
                    + ["—" if c is None else f"{c:,.1f}" if i < 4 else f"{c:.3f}" for i, c in enumerate(cells)]
                    + [", ".join(recipes) or "—"])
    return Table(f"Cost{_suffix(view)}", ARM_COLUMNS + ["trainable params", "of total", "wall time (s)", "tokens/s",
                                          "peak memory (MiB)", "arm's own memory (MiB)", "final loss", "precision"],
                 rows, "mean over seeds")


def failed_table(store: RunStore) -> Table:
    rows = [[a.arm_id, a.method, "" if a.rank is None else str(a.rank), a.error or "(no message)"]
            for a in store.failed_arms()]
    return Table("Failed arms", ["arm id", "method", "rank", "error"], rows)


def view_tables(view: View) -> list[Table]:
    """The tables of one training set, in reading order."""
    tables = [accuracy_table(view), gain_forgetting_table(view)]
    mde = mde_table(view)
    if mde.rows:
        tables.append(mde)
    return tables + [cost_table(view)]
