"""Expand a config into arms with stable ids.

An arm id is derived from every setting that changes what the arm learns (model, training set,
training loop, method, rank, alpha, targets, seed, learning rate), so a rerun of the same config
finds its finished arms and resumes instead of repeating them. Evaluation settings are not in the
id; they are fingerprinted separately (:func:`evaluation_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json

from rankscope.config import DatasetSpec, RankscopeConfig
from rankscope.errors import ConfigError
from rankscope.runstore.arms import ArmPlan, Method
from rankscope.sweep.imported import imported_arms

__all__ = ["ArmPlan", "Method", "base_arm", "evaluation_fingerprint", "plan_arms"]


# Dataset keys that change how results are judged, not what is trained or scored: an arm keeps
# its id and stays finished when they change.
DECISION_ONLY_KEYS = ("primary_metric", "relation")


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _train_identity(config: RankscopeConfig, train_set: DatasetSpec) -> dict:
    return {
        "model": config.model.model_dump(mode="json", exclude={"cache_dir", "device"}),
        "train_set": train_set.model_dump(mode="json", exclude=set(DECISION_ONLY_KEYS)),
        # shared_prefix and gradient_checkpointing change how the loss and gradients are
        # computed, not their values: same arm either way.
        # select_by picks among trained candidates; it changes no arm's training.
        "train": config.train.model_dump(mode="json", exclude={"lr", "log_every", "shared_prefix",
                                                                "gradient_checkpointing", "select_by"}),
    }


def base_arm(config: RankscopeConfig) -> ArmPlan:
    model_identity = config.model.model_dump(mode="json", exclude={"cache_dir", "device"})
    return ArmPlan(arm_id=f"base-{_digest(model_identity)}", method="base")


def _check_grid(config: RankscopeConfig) -> None:
    """A learning-rate grid is chosen on the validation split: every training set needs one."""
    rates = config.train.lr
    for method in ("lora", "sft"):
        trained = config.arms.sft if method == "sft" else config.arms.lora is not None
        if not (trained and rates.tuned(method)):
            continue
        for index, spec in enumerate(config.data.train):
            if spec.n_val == 0:
                raise ConfigError(f"data.train[{index}].n_val", f"is 0, but train.lr.{method} is a grid "
                                  f"{rates.grid(method)} that is chosen on the validation split",
                                  "set n_val > 0 (default 50), or give train.lr one rate")


def plan_arms(config: RankscopeConfig) -> list[ArmPlan]:
    """The base arm first, then per training set and seed: sft, then LoRA by ascending rank.

    With a learning-rate grid (``train.lr.<method>`` a list) an arm is planned once per rate as a
    ``candidate`` (its id names the rate); the sweep later promotes the selected rate's
    candidates (rankscope.verdicts.learning_rates). One rate plans one ``final`` arm, as before.
    The imported arms (full checkpoints, then adapters by rank) come last.
    """
    _check_grid(config)
    arms = [base_arm(config)]
    rates = config.train.lr
    for train_set in config.data.train:
        identity = _train_identity(config, train_set)
        for seed in config.arms.seeds:
            if config.arms.sft:
                stage = "candidate" if rates.tuned("sft") else "final"
                for lr in rates.grid("sft"):
                    digest = _digest({**identity, "method": "sft", "seed": seed, "lr": lr})
                    arms.append(ArmPlan(arm_id=f"sft{_lr_tag(lr, stage)}-s{seed}-{train_set.name}-{digest}",
                                        method="sft", seed=seed, train_set=train_set.name, lr=lr, stage=stage))
            lora = config.arms.lora
            if lora is None:
                continue
            targets = lora.targets if isinstance(lora.targets, str) else ",".join(lora.targets)
            stage = "candidate" if rates.tuned("lora") else "final"
            for rank in sorted(lora.ranks):
                alpha = lora.alpha_for(rank)
                for lr in rates.grid("lora"):
                    digest = _digest({**identity, "method": "lora", "seed": seed, "lr": lr, "rank": rank,
                                      "alpha": alpha, "alpha_rule": lora.alpha, "targets": targets,
                                      "dropout": lora.dropout})
                    alpha_text = f"{alpha:g}"
                    arms.append(ArmPlan(
                        arm_id=f"lora-r{rank}-a{alpha_text}{_lr_tag(lr, stage)}-s{seed}-{train_set.name}-{digest}",
                        method="lora", rank=rank, alpha=alpha, scaling=lora.scaling_for(rank), seed=seed,
                        train_set=train_set.name, lr=lr, targets=targets, stage=stage))
    return arms + imported_arms(config)  # arms trained elsewhere (rankscope.sweep.imported), last


def _lr_tag(lr: float, stage: str) -> str:
    """Grid candidates name their rate in the id (``-lr0.001``); a single-rate arm keeps its old id."""
    return f"-lr{lr:g}" if stage == "candidate" else ""


def evaluation_fingerprint(config: RankscopeConfig) -> str:
    """Changes when what an arm is evaluated on changes; a finished arm with another fingerprint is redone."""
    return _digest({
        "data": config.data.model_dump(mode="json", exclude={"train": {"__all__": set(DECISION_ONLY_KEYS)},
                                                             "eval": {"__all__": set(DECISION_ONLY_KEYS)}}),
        "eval": config.eval.model_dump(mode="json"),
        "analysis": config.analysis.model_dump(mode="json"),
    })
