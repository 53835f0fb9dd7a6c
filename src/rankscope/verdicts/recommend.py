"""The recommended LoRA rank: a non-inferiority rule on paired comparisons, stated in words.

Why non-inferiority: the question is not "which rank scores highest" (on a few hundred items the
top ranks are usually indistinguishable) but "what is the cheapest rank that gives up at most a
stated amount". The user sets that amount (``recommend.gain_margin``, ``forgetting_margin``);
the rule tests it, paired on the same items, corrected for the number of ranks compared (Holm
1979), and judges forgetting against the base model (what the user would lose), not against SFT.
When the data can show neither "good enough" nor "not good enough", the answer is "undecided",
with the number of items per set that would decide it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rankscope.stats import binary_sd_floor, holm, items_to_detect, noninferiority_p
from rankscope.verdicts.comparisons import ArmRef, Comparison
from rankscope.verdicts.settings import RuleSettings


def rule_text(settings: RuleSettings) -> str:
    """The rule in one paragraph, with the configured margins and confidence."""
    return (
        "Among the LoRA ranks, recommend the smallest whose in-domain score is not worse than the best "
        f"arm's by more than the gain margin of {100 * settings.gain_margin:g} points, and whose forgetting "
        f"against the base model on every far out-of-domain set is below the forgetting margin of "
        f"{100 * settings.forgetting_margin:g} points. Each condition is a one-sided paired non-inferiority "
        "test (a paired bootstrap over the items, and over the seeds when there are several) at "
        f"{100 * settings.confidence:g}% confidence after Holm's correction over the ranks compared; the best "
        "arm must itself beat the base model in-domain (McNemar's exact test with one seed, the bootstrap "
        "otherwise, Holm-corrected). The score of a set is its primary metric (acc_norm for multiple-choice "
        "sets whose choices differ in length, else accuracy). Near sets are reported as transfer and do not "
        "decide. When no rank passes and not every rank is shown to fail, the answer is undecided, with the "
        "number of items per set at which a difference as large as the margin would be detected with 80% "
        "power at the observed agreement between the arms."
    )


TEST = ("paired non-inferiority (percentile bootstrap over items and seeds; Koehn 2004), Holm-corrected "
        "over ranks (Holm 1979); gain over base by McNemar's exact test (McNemar 1947) or the bootstrap")


@dataclass(frozen=True)
class Recommendation:
    """``rank`` is None exactly when ``decided`` is False; ``reason`` is plain words.

    needed_items: when undecided, dataset -> items per set that would decide it.
    """

    rank: int | None
    rule: str
    reason: str
    decided: bool
    train_set: str | None = None
    label: str | None = None  # the chosen arm group (comparisons.csv group names)
    test: str = TEST
    gain_margin: float | None = None
    forgetting_margin: float | None = None
    confidence: float | None = None
    needed_items: dict[str, int] = field(default_factory=dict)
    #: about the learning rates behind the arms (rankscope.verdicts.learning_rates): untuned rates,
    #: a best rate at the edge of its grid
    warnings: tuple[str, ...] = ()

    @property
    def headline(self) -> str:
        """One line for reports: the rank, or why there is none."""
        if self.decided:
            return f"Recommended LoRA rank: r={self.rank}"
        if self.needed_items:
            return "No rank recommended yet: undecided (more items would decide)"
        return "No rank recommended"

    def to_json(self) -> dict:
        return {"train_set": self.train_set, "rank": self.rank, "decided": self.decided, "arm_group": self.label,
                "rule": self.rule, "test": self.test, "gain_margin": self.gain_margin,
                "forgetting_margin": self.forgetting_margin, "confidence": self.confidence,
                "reason": self.reason, "needed_items": self.needed_items, "warnings": list(self.warnings)}


def _pp(x: float) -> str:
    return f"{100 * x:+.1f}"


def _interval(c: Comparison) -> str:
    return f"{_pp(c.result.delta)} pp [{_pp(c.result.ci_low)}, {_pp(c.result.ci_high)}]"


@dataclass
class _Check:
    """One condition for one rank on one set: passes, is shown to fail, or neither."""

    dataset: str
    passed: bool
    failed: bool
    text: str
    needed: int


def _noninferiority(rows: list[Comparison], margin: float, settings: RuleSettings, flip: bool,
                    what: str) -> dict[str, _Check]:
    """Holm-corrected one-sided tests over the ranks of one family (one set, one condition).

    flip=False: H0 "a is worse than b by >= margin" (a = the rank; gain vs best).
    flip=True: H0 "delta >= margin" (delta = base - rank = forgetting)."""
    alpha = 1 - settings.confidence
    p = [noninferiority_p(-r.result.boot if flip else r.result.boot, margin) for r in rows]
    checks = {}
    for row, p_holm in zip(rows, holm(p)):
        result = row.result
        failed = result.ci_low > margin if flip else result.ci_high < -margin
        passed = bool(p_holm < alpha)
        needed = items_to_detect(binary_sd_floor(result.sd_diff, result.n_pairs), margin, alpha / len(rows),
                                 two_sided=False)
        group = row.group_b if flip else row.group_a
        checks[group] = _Check(row.dataset, passed, failed, f"{what} on {row.dataset} {_interval(row)}", needed)
    return checks


def recommend(rows: list[Comparison], arms: list[ArmRef], train_set: str | None,
              settings: RuleSettings) -> Recommendation:
    """Apply the rule (:func:`rule_text`) to one training set's group-level primary comparisons."""
    rule = rule_text(settings)
    common = dict(rule=rule, train_set=train_set, gain_margin=settings.gain_margin,
                  forgetting_margin=settings.forgetting_margin, confidence=settings.confidence)

    def undecided(reason: str, needed: dict[str, int] | None = None) -> Recommendation:
        return Recommendation(None, reason=reason, decided=False, needed_items=needed or {}, **common)

    mine = [r for r in rows if r.train_set == train_set and r.level == "group" and r.primary]
    ranks = {a.group: a.rank for a in arms if a.method == "lora" and a.train_set == train_set}
    gain_rows = [r for r in mine if r.comparison == "vs_base" and r.relation == "in"]
    if not gain_rows:
        return undecided("No paired in-domain comparison with the base model exists (no item records, or the "
                         "base arm or every trained arm failed); rerun `rankscope run` to resume.")
    in_sets = sorted({r.dataset for r in gain_rows})
    lora = sorted({r.group_a for r in gain_rows if r.group_a in ranks}, key=lambda g: ranks[g])
    if not lora:
        return undecided("No LoRA arm finished with in-domain item records, so there is no rank to recommend.")
    groups = list(dict.fromkeys(r.group_a for r in gain_rows))  # lora by rank, then sft (a tie keeps the first)
    mean_gain = {g: float(np.mean([r.result.delta for r in gain_rows if r.group_a == g])) for g in groups}
    # the best arm the comparisons were made against (the same choice, made once, when it exists)
    best = next((r.group_b for r in mine if r.comparison == "vs_best"), None) or max(groups, key=mean_gain.__getitem__)
    alpha = 1 - settings.confidence
    best_rows = [r for r in gain_rows if r.group_a == best]
    if not all(r.p_holm < alpha and r.result.delta > 0 for r in best_rows) or len(best_rows) < len(in_sets):
        shown = "; ".join(f"{r.dataset} {_interval(r)}, p_holm={r.p_holm:.3g}" for r in best_rows)
        return undecided(f"No arm beats the base model in-domain at {100 * settings.confidence:g}% confidence "
                         f"(best arm {best}: {shown}), so there is no gain to keep. Train longer or on more data, "
                         "or evaluate on larger sets.")
    checks: dict[str, list[_Check]] = {g: [] for g in lora}
    for dataset in in_sets:
        family = [r for r in mine if r.comparison == "vs_best" and r.dataset == dataset and r.group_a in ranks]
        for group, check in _noninferiority(family, settings.gain_margin, settings, False, "score vs best").items():
            checks.setdefault(group, []).append(check)
    far_sets = sorted({r.dataset for r in mine if r.comparison == "vs_base" and r.relation == "far"})
    for dataset in far_sets:
        family = [r for r in mine if r.comparison == "vs_base" and r.dataset == dataset and r.group_b in ranks]
        for group, check in _noninferiority(family, settings.forgetting_margin, settings, True, "forgetting").items():
            checks.setdefault(group, []).append(check)
    expected = len(in_sets) + len(far_sets)
    rejected, chosen = [], None
    for group in lora:
        mine_checks = checks[group]
        gain_complete = group == best or len([c for c in mine_checks if c.dataset in in_sets]) == len(in_sets)
        if group != best and not gain_complete:
            rejected.append(f"r={ranks[group]} lacks a comparison with the best arm")
            continue
        complete = len(mine_checks) == expected - (len(in_sets) if group == best else 0)
        if complete and all(c.passed for c in mine_checks):
            chosen = group
            break
        failing = [c.text for c in mine_checks if not c.passed]
        rejected.append(f"r={ranks[group]}: " + ("; ".join(failing) if failing else "missing comparisons"))
    near = [r for r in mine if r.comparison == "vs_base" and r.relation == "near"]
    if chosen is None:
        open_checks = [c for g in lora for c in checks[g] if not c.passed and not c.failed]
        if not open_checks and all(any(c.failed for c in checks[g]) for g in lora):
            return undecided("Every LoRA rank is shown to fail the rule: " + "; ".join(rejected) + ".")
        needed: dict[str, int] = {}
        for c in open_checks:
            needed[c.dataset] = max(needed.get(c.dataset, 0), c.needed)
        n_text = ", ".join(f"{d}: about {n:,} items" for d, n in sorted(needed.items()))
        return undecided("Undecided: the intervals are wider than the margins. " + "; ".join(rejected)
                         + (f". Items per set that would decide it: {n_text}." if n_text else "."), needed)
    parts = []
    if chosen == best:
        parts.append(f"r={ranks[chosen]} is the best arm in-domain and no smaller rank is shown to be within "
                     f"{100 * settings.gain_margin:g} points of it")
    else:
        gap = "; ".join(c.text for c in checks[chosen] if c.dataset in in_sets)
        parts.append(f"r={ranks[chosen]} is the smallest LoRA rank shown to be within {100 * settings.gain_margin:g} "
                     f"points of the best arm ({best}): {gap}")
    forgetting = [c.text for c in checks[chosen] if c.dataset in far_sets]
    parts.append("its forgetting against base stays below the margin: " + "; ".join(forgetting)
                 if forgetting else "no far set was scored, so forgetting was not checked")
    transfer = [f"{r.dataset} {_interval(r)}" for r in near if r.group_a == chosen]
    if transfer:
        parts.append("transfer to near sets (not part of the rule): " + "; ".join(transfer))
    reason = "; ".join(parts) + "."
    if rejected:
        reason += " Smaller ranks: " + "; ".join(rejected) + "."
    if ranks[chosen] == min(ranks[g] for g in lora) and ranks[chosen] > 1:
        reason += " It is the smallest rank tried; an even smaller rank may suffice."
    return Recommendation(ranks[chosen], reason=reason, decided=True, label=chosen, **common)


def recommend_all(rows: list[Comparison], arms: list[ArmRef], settings: RuleSettings) -> list[Recommendation]:
    """One recommendation per training set that has comparisons."""
    train_sets = sorted({r.train_set for r in rows}) or sorted({a.train_set for a in arms if a.train_set})
    return [recommend(rows, arms, ts, settings) for ts in train_sets]
