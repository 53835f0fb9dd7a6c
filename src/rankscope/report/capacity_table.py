"""Capacity: the training step at which a LoRA rank's loss falls behind full fine-tuning for good.

Schulman et al. 2025 ("LoRA Without Regret") find LoRA's training loss tracks full fine-tuning's
until the adapter runs out of capacity, then falls behind; the step where that happens says how
much data a rank can absorb. Every arm trains on the same batches in the same order
(rankscope.train.loop), so the loss difference at one logged step is paired on one batch and the
batch's own difficulty cancels.

Definition: for a LoRA arm and the sft arm of the same training set and seed, with losses ``L`` at
their common logged steps (train.json ``loss_curve``, nats per answer token), the capacity step is
the first logged step ``s`` with ``L_lora(t) - L_sft(t) > delta`` for every logged ``t >= s``
("behind by more than delta from then on"); "never" when the last logged step is not behind.
``delta`` = :data:`CAPACITY_DELTA`. Torch-free: reads train.json through the run store.
"""

from __future__ import annotations

from rankscope.report.tables import Table
from rankscope.runstore.reader import ArmInfo, RunStore

#: nats per answer token: about 5% of a typical early loss of ~1 nat, larger than the step-to-step
#: difference of two identical arms (0: same batches), small enough to show a rank that stalls.
CAPACITY_DELTA = 0.05


def capacity_step(lora: tuple[tuple[float, float], ...], sft: tuple[tuple[float, float], ...],
                  delta: float = CAPACITY_DELTA) -> tuple[int | None, float | None, float | None]:
    """``(step, final gap, max gap)``: the first logged step from which LoRA stays behind SFT by more
    than ``delta`` (None: never), and the gaps ``L_lora - L_sft`` at the end and at their largest."""
    sft_at = {int(s): v for s, v in sft}
    paired = [(int(s), v - sft_at[int(s)]) for s, v in lora if int(s) in sft_at]
    if not paired:
        return None, None, None
    step = None
    for s, gap in reversed(paired):  # walk back from the end while the gap stays above delta
        if gap > delta:
            step = s
        else:
            break
    return step, paired[-1][1], max(gap for _, gap in paired)


def capacity_table(store: RunStore, delta: float = CAPACITY_DELTA) -> Table | None:
    """One row per LoRA arm that has an sft arm of the same training set and seed, both with curves."""
    done = [a for a in store.arms.values() if a.status == "done" and a.train and a.train.loss_curve]
    sft: dict[tuple[str | None, int | None], ArmInfo] = {(a.train_set, a.seed): a for a in done if a.method == "sft"}
    rows = []
    for arm in sorted((a for a in done if a.method == "lora"), key=lambda a: (a.train_set or "", a.seed or 0, a.rank or 0)):
        reference = sft.get((arm.train_set, arm.seed))
        if reference is None:
            continue
        step, final, largest = capacity_step(arm.train.loss_curve, reference.train.loss_curve, delta)
        if final is None:
            continue
        rows.append([arm.train_set or "—", f"lora r{arm.rank}", str(arm.seed),
                     "never" if step is None else str(step), f"{final:+.3f}", f"{largest:+.3f}",
                     str(arm.train.steps or "—")])
    if not rows:
        return None
    return Table(f"Capacity: where a rank's training loss falls behind full fine-tuning (delta = {delta:g} nats)",
                 ["trained on", "arm", "seed", "behind SFT from step", "gap at the end (nats)", "largest gap (nats)",
                  "steps"], rows,
                 f"gap = LoRA loss - SFT loss on the same batch (nats per answer token, at the logged steps); the step "
                 f"is the first from which the gap stays above {delta:g} to the end (Schulman et al. 2025: a rank "
                 "that runs out of capacity falls behind full fine-tuning). Negative gaps: LoRA ahead.")


__all__ = ["CAPACITY_DELTA", "capacity_step", "capacity_table"]
