"""The recommended LoRA rank ("sweet spot"), by a stated rule that respects measurement noise.

Why a rule with standard errors: on evaluation sets of a few hundred questions two arms a few
points apart are often indistinguishable, and a recommendation that picks the arg-max would chase
noise. The rule is a one-standard-error rule (Breiman et al. 1984, as used for model selection):
prefer the cheapest model that is statistically as good as the best, and additionally require
that it does not forget more than full fine-tuning does (Biderman et al. 2024 find that LoRA
"forgets less"; a rank that forgets more than SFT has lost LoRA's main advantage).
When the data cannot support a choice, the recommendation says so (``decided=False``) and why,
rather than returning a number the data do not back.
"""

from __future__ import annotations

from dataclasses import dataclass

from rankscope.report.tables import ArmKey, Estimate, View

RULE = (
    "Among LoRA ranks that beat the base model in-domain by more than one standard error, "
    "recommend the smallest rank whose mean in-domain accuracy is within one standard error "
    "(of the difference) of the best arm's (best over LoRA and SFT), and whose mean forgetting "
    "across out-of-domain sets is no worse than SFT's plus one standard error (of the difference). "
    "Standard errors of differences are sqrt(se1^2 + se2^2); with several seeds each arm is the "
    "mean over seeds."
)


@dataclass(frozen=True)
class Recommendation:
    """``rank`` is None exactly when ``decided`` is False; ``reason`` is plain words."""

    rank: int | None
    rule: str
    reason: str
    decided: bool
    train_set: str | None = None
    label: str | None = None


def _pp(e: Estimate) -> str:
    return f"{100 * e.value:.1f} ± {100 * e.stderr:.1f} pp"


def _undecided(view: View, reason: str) -> Recommendation:
    return Recommendation(None, RULE, reason, False, view.train_set)


def recommend(view: View) -> Recommendation:
    """Apply RULE to one training set's numbers (see the module docstring for why)."""
    lora = [g for g in view.groups if g.method == "lora" and g.rank is not None and view.mean_in(g)]
    trained = [g for g in view.groups if g.method in ("lora", "sft") and view.mean_in(g)]
    if not view.in_domain:
        return _undecided(view, "No in-domain evaluation set was scored, so gain cannot be measured; "
                                "evaluate on the training set's test split.")
    if view.base is None or view.mean_in(view.base) is None:
        return _undecided(view, "The base model has no in-domain accuracy, so gain and forgetting "
                                "cannot be measured; the base arm must finish.")
    if not lora:
        return _undecided(view, "No LoRA arm finished with in-domain results, so there is no rank to recommend.")
    if len({g.rank for g in lora}) < 2:
        return _undecided(view, f"Only one LoRA rank (r={lora[0].rank}) finished; a sweet spot needs at least "
                                "two ranks to compare. Add ranks to the sweep.")
    gains = {g: view.mean_gain(g) for g in trained}
    helped = [g for g in trained if gains[g] is not None and gains[g].value > gains[g].stderr]
    if not helped:
        best_gain = max((gains[g] for g in trained if gains[g]), key=lambda e: e.value)
        return _undecided(view, "No arm beats the base model in-domain by more than one standard error "
                                f"(largest mean gain {_pp(best_gain)}): the differences are within noise. "
                                "Train longer or on more data, or evaluate on larger sets.")
    best = max(trained, key=lambda g: view.mean_in(g).value)
    best_acc = view.mean_in(best)
    sft = next((g for g in view.groups if g.method == "sft" and view.mean_forgetting(g)), None)
    checks_forgetting = bool(view.out_domain) and sft is not None
    rejected: list[str] = []
    chosen: ArmKey | None = None
    for g in sorted(lora, key=lambda g: (g.rank, g.alpha or 0.0)):
        if g not in helped:
            rejected.append(f"r={g.rank} does not beat base beyond its stderr")
            continue
        gap = best_acc.minus(view.mean_in(g))
        if gap.value > gap.stderr:
            rejected.append(f"r={g.rank} trails {best.label} by {_pp(gap)}")
            continue
        if checks_forgetting:
            extra = view.mean_forgetting(g).minus(view.mean_forgetting(sft))
            if extra.value > extra.stderr:
                rejected.append(f"r={g.rank} forgets {_pp(extra)} more than sft")
                continue
        chosen = g
        break
    if chosen is None:
        return _undecided(view, "No LoRA rank satisfies the rule: " + "; ".join(rejected) + ".")
    if chosen == best:
        parts = [f"r={chosen.rank} is the best arm in-domain ({_pp(best_acc)}) and no smaller rank comes "
                 "within one standard error of it"]
    else:
        parts = [f"r={chosen.rank} is the smallest LoRA rank within one standard error of the best arm "
                 f"({best.label}, in-domain accuracy {_pp(best_acc)}; r={chosen.rank}: {_pp(view.mean_in(chosen))})"]
    if checks_forgetting:
        parts.append(f"its mean forgetting ({_pp(view.mean_forgetting(chosen))}) is no worse than sft's "
                     f"({_pp(view.mean_forgetting(sft))}) within one standard error")
    elif not view.out_domain:
        parts.append("no out-of-domain set was scored, so forgetting was not checked")
    else:
        parts.append("there is no sft arm with out-of-domain results, so the forgetting condition was not applied")
    reason = "; ".join(parts) + "."
    if rejected:
        reason += " Smaller ranks were ruled out: " + "; ".join(rejected) + "."
    smallest, largest = min(g.rank for g in lora), max(g.rank for g in lora)
    if chosen.rank == smallest and smallest > 1:
        reason += (f" It is the smallest rank tried, so an even smaller rank may suffice; "
                   f"add ranks below {smallest} to find the lower edge.")
    if chosen == best and chosen.rank == largest:  # still climbing at the edge of the sweep
        reason += (" It is the largest rank tried, so accuracy may still rise with rank; "
                   f"add ranks above {largest} to see where it levels off.")
    return Recommendation(chosen.rank, RULE, reason, True, view.train_set, chosen.label)
