"""Numbers behind the report: accuracy per arm x dataset, gain, forgetting and cost tables.

Definitions (docs/architecture.md, "What is measured, and where"; Biderman et al. 2024, "LoRA Learns Less and Forgets Less"):
- gain on an in-domain set = acc(arm) - acc(base);
- forgetting on an out-of-domain set = acc(base) - acc(arm) (positive = the arm lost knowledge);
- the stderr of a difference of two independent estimates is sqrt(se1^2 + se2^2);
- a mean over m sets has stderr sqrt(sum se_i^2) / m (sets are scored independently).
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

from rankscope.runstore.reader import ArmInfo, RunStore

DOMAIN_ORDER = {"in": 0, "out": 1}
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

    def minus(self, other: "Estimate") -> "Estimate":
        return Estimate(self.value - other.value, math.hypot(self.stderr, other.stderr))


def mean_of(estimates: list[Estimate]) -> Estimate:
    """Mean over independent estimates (e.g. over datasets); stderr sqrt(sum se^2) / m."""
    m = len(estimates)
    return Estimate(sum(e.value for e in estimates) / m, math.sqrt(sum(e.stderr**2 for e in estimates)) / m)


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

    @property
    def order(self) -> tuple:
        return (METHOD_ORDER.get(self.method, 3), self.rank or 0, self.alpha or 0.0, self.method, self.train_set or "")


def arm_keys(store: RunStore) -> dict[str, ArmKey]:
    """Map every arm id to its seed group; labels add alpha / train set only when ambiguous."""
    arms = [a for a in store.arms.values() if a.status != "failed"]
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
        if a.method != "base" and len(train_sets) > 1:
            label += f" [{a.train_set}]"
        train_set = None if a.method == "base" else a.train_set
        keys[a.arm_id] = ArmKey(a.method, a.rank, a.alpha if a.method == "lora" else None, train_set, label)
    return keys


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str
    domain: str

    @property
    def group(self) -> str:
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

    @property
    def base(self) -> ArmKey | None:
        return next((g for g in self.groups if g.method == "base"), None)

    @property
    def in_domain(self) -> list[str]:
        return [d.name for d in self.datasets if d.domain == "in"]

    @property
    def out_domain(self) -> list[str]:
        return [d.name for d in self.datasets if d.domain == "out"]

    def gain(self, group: ArmKey, dataset: str) -> Estimate | None:
        a, b = self.accuracy.get((group, dataset)), self.accuracy.get((self.base, dataset)) if self.base else None
        return a.minus(b) if a and b else None

    def forgetting(self, group: ArmKey, dataset: str) -> Estimate | None:
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
        est = [self.forgetting(group, d) for d in self.out_domain]
        return mean_of(est) if est and all(est) else None


def _stderr(value: float, stderr: float | None, n: int | None) -> float:
    """Stored stderr, else the binomial one sqrt(p(1-p)/n), else 0 (unknown noise)."""
    if stderr is not None:
        return stderr
    if n and 0.0 <= value <= 1.0:
        return math.sqrt(value * (1 - value) / n)
    return 0.0


def build_views(store: RunStore, metric: str = "accuracy") -> list[View]:
    """One View per training set; base rows with no train_set join every view."""
    keys = arm_keys(store)
    rows = [r for r in store.results if r.metric == metric and r.value is not None and r.arm_id in keys]
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
            datasets.setdefault(r.dataset, DatasetInfo(r.dataset, r.kind, r.domain))
            if store.arms[r.arm_id] not in arms.setdefault(key, []):
                arms[key].append(store.arms[r.arm_id])
        accuracy = {k: over_seeds([v for v, _ in s], [e for _, e in s]) for k, s in samples.items()}
        groups = sorted(arms, key=lambda g: g.order)
        ordered = sorted(datasets.values(), key=lambda d: (DOMAIN_ORDER.get(d.domain, 2), KIND_ORDER.get(d.kind, 2), d.name))
        views.append(View(ts, groups, ordered, accuracy, arms))
    return views


@dataclass(frozen=True)
class Table:
    """Pre-formatted cells; renderers (html, markdown) escape them. ``groups``: header spans."""

    title: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    groups: list[tuple[str, int]] = field(default_factory=list)


def pct(e: Estimate | None, signed: bool = False) -> str:
    """Accuracy-like numbers in percentage points with their stderr, e.g. '62.0 ± 4.9'."""
    if e is None:
        return "—"
    text = f"{100 * e.value:+.1f}" if signed else f"{100 * e.value:.1f}"
    text += f" ± {100 * e.stderr:.1f}"
    if e.spread is not None:
        text += f" (sd {100 * e.spread:.1f})"
    return text


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


def accuracy_table(view: View) -> Table:
    rows = [[g.label, str(max((e.n_seeds for (k, _), e in view.accuracy.items() if k == g), default=0))]
            + [pct(view.accuracy.get((g, d.name))) for d in view.datasets] for g in view.groups]
    return Table(f"Accuracy (%){_suffix(view)}", ["arm", "seeds"] + [d.name for d in view.datasets], rows,
                 "mean ± stderr in percentage points; (sd x) after a value = standard deviation over seeds",
                 [("", 2)] + _spans(view.datasets))


def gain_forgetting_table(view: View) -> Table:
    ins, outs = view.in_domain, view.out_domain
    cols = ["arm"] + [f"gain {d}" for d in ins] + [f"forgetting {d}" for d in outs]
    cols += ["mean forgetting"] if len(outs) > 1 else []
    rows = []
    for g in view.groups:
        if g.method == "base":
            continue
        row = [g.label] + [pct(view.gain(g, d), True) for d in ins] + [pct(view.forgetting(g, d), True) for d in outs]
        rows.append(row + ([pct(view.mean_forgetting(g), True)] if len(outs) > 1 else []))
    note = ("gain = acc(arm) − acc(base) on in-domain sets; forgetting = acc(base) − acc(arm) on "
            "out-of-domain sets (positive = lost); stderr = sqrt(se_arm² + se_base²)")
    if view.base is None:
        note = "no finished base arm: gain and forgetting cannot be computed"
    return Table(f"Gain and forgetting vs base (pp){_suffix(view)}", cols, rows, note)


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
        rows.append([g.label, f"{params:,.0f}" if params is not None else "—", share]
                    + ["—" if c is None else f"{c:,.1f}" if i < 4 else f"{c:.3f}" for i, c in enumerate(cells)]
                    + [", ".join(recipes) or "—"])
    return Table(f"Cost{_suffix(view)}", ["arm", "trainable params", "of total", "wall time (s)", "tokens/s",
                                          "peak memory (MiB)", "arm's own memory (MiB)", "final loss", "precision"],
                 rows, "mean over seeds")


def failed_table(store: RunStore) -> Table:
    rows = [[a.arm_id, a.method, "" if a.rank is None else str(a.rank), a.error or "(no message)"]
            for a in store.failed_arms()]
    return Table("Failed arms", ["arm id", "method", "rank", "error"], rows)


def view_tables(view: View) -> list[Table]:
    """The tables of one training set, in reading order."""
    return [accuracy_table(view), gain_forgetting_table(view), cost_table(view)]
