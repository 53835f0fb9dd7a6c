"""Predict a rank interval per training set before the sweep, and time every signal.

One pass per training set on the base model of the config (rankscope.predict.probe), the rules of
rankscope.predict.signals, then ``prediction.json`` in the run directory (rankscope.runstore.
prediction) for the report, which sets each interval beside the realised knee after the sweep.

Signals (``lo``/``hi``: median/max over the LoRA-targeted block projections, except data_capacity):

- ``sft_energy_90`` / ``sft_energy_99``: energy rank (90% / 99%) of each module's update after the
  full fine-tuning probe (``probe_steps`` <= 10 steps of the sweep's sft recipe);
- ``grad_energy_90``: energy rank (90%) of each module's mean gradient at the base weights;
- ``grad_noise_edge``: ``max{r : sigma_r(G0)^2 >= C / n}``, ``C = v (sqrt(d_out) + sqrt(d_in))^2``;
- ``data_capacity``: the smallest rank whose adapter could store the training answers' information
  at 2 bits per parameter (lo: what the probe learned; hi: the base's loss).

A signal's time is the wall time of its own measurement and SVDs (the shared model load is in
``total_s``): a signal that reuses another's measurement is charged that measurement too.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from rankscope.analysis.pipeline import torch_threads
from rankscope.analysis.spectral import block_linear_modules
from rankscope.config import RankscopeConfig
from rankscope.data.registry import load_dataset
from rankscope.errors import ConfigError, DatasetError
from rankscope.models.arms import resolve_targets
from rankscope.models.load import load_base_model
from rankscope.predict.probe import MAX_PROBE_STEPS, gradient_at_init, sft_probe
from rankscope.predict.signals import capacity_interval, energy_interval, gradient_rule_interval
from rankscope.runstore.prediction import Prediction, SignalInterval, write_prediction
from rankscope.train.loop import encode_examples
from rankscope.train.precision import resolve_precision

DEFINITIONS = {
    "sft_energy_90": "energy rank 90% of the full fine-tuning probe's update dW per module; [median, max] over modules",
    "sft_energy_99": "energy rank 99% of the full fine-tuning probe's update dW per module; [median, max] over modules",
    "grad_energy_90": "energy rank 90% of the mean gradient G0 at the base weights per module; [median, max] over modules",
    "grad_noise_edge": "max{r : sigma_r(G0)^2 >= C/n}, C = v (sqrt(d_out) + sqrt(d_in))^2 (noise edge, Bai-Yin); "
                       "[median, max] over modules",
    "data_capacity": "smallest r with 2 bits/param x r x sum(d_in + d_out) >= answer tokens trained x loss in bits "
                     "(lo: the probe's loss drop; hi: the base loss)",
}


def _first(value):
    """The learning rate of a method (a grid of rates: its first)."""
    return value[0] if isinstance(value, (list, tuple)) else value


def _svdvals(matrices: dict[str, Tensor], threads: int | None) -> dict[str, Tensor]:
    """Singular values per module, on ``analysis.spectral_threads`` threads (1 by default: multi-threaded
    LAPACK on small matrices under a shared CPU is many times slower; rankscope.analysis.pipeline)."""
    with torch_threads(threads):
        return {name: torch.linalg.svdvals(m.to(torch.float32)) for name, m in matrices.items()}


def targeted_modules(model: nn.Module, config: RankscopeConfig) -> dict[str, nn.Linear]:
    """The block projections a LoRA arm of this config adapts (all-linear when the config has none)."""
    targets = config.arms.lora.targets if config.arms.lora is not None else "all-linear"
    chosen = {m.name for m in resolve_targets(model, targets)}
    modules = {name: module for name, module in block_linear_modules(model) if name in chosen}
    if not modules:
        raise ConfigError("arms.lora.targets", "no targeted block projection to predict from",
                           "target linear modules inside the decoder blocks")
    return modules


def predict_set(model: nn.Module, modules: dict[str, nn.Linear], encoded, config: RankscopeConfig, *,
                probe_steps: int, groups: int, pad_token_id: int, precision) -> list[SignalInterval]:
    """Every signal for one training set; leaves the model trained by the probe (the caller restores it)."""
    spec, seed = config.train, config.arms.seeds[0]
    shapes = {name: (m.out_features, m.in_features) for name, m in modules.items()}
    started = time.perf_counter()
    moments = gradient_at_init(model, modules, encoded, spec.batch_size, groups, seed, pad_token_id, precision)
    grad_spectra = _svdvals(moments.mean, config.analysis.spectral_threads)
    grad_s = time.perf_counter() - started
    del moments.mean

    W0 = {name: m.weight.detach().to(device="cpu", dtype=torch.float32).clone() for name, m in modules.items()}
    started = time.perf_counter()
    result = sft_probe(model, encoded, spec, probe_steps, float(_first(spec.lr.sft)), seed, pad_token_id, precision)
    probe_train_s = time.perf_counter() - started
    update_spectra = _svdvals({name: m.weight.detach().to(device="cpu", dtype=torch.float32) - W0.pop(name)
                               for name, m in modules.items()}, config.analysis.spectral_threads)
    probe_s = time.perf_counter() - started

    losses = [loss for _, loss in result.loss_curve]
    base_loss = losses[0]  # step 1's loss is taken at the base weights
    drop = base_loss - statistics.fmean(losses[-3:])
    seen = min(len(encoded), spec.steps * spec.batch_size)  # distinct examples the sweep trains on
    answer_tokens = statistics.fmean(e.n_predicted for e in encoded) * seen
    width = sum(d_out + d_in for d_out, d_in in shapes.values())

    def signal(name: str, interval: tuple[int, int, dict], seconds: float) -> SignalInterval:
        lo, hi, detail = interval
        return SignalInterval(name, lo, hi, round(seconds, 2), DEFINITIONS[name], detail)

    noise = {name: moments.noise_var[name] for name in modules}
    edge = gradient_rule_interval(grad_spectra, noise, shapes)
    edge[2].update({"examples": moments.examples, "groups": groups})
    capacity = capacity_interval(answer_tokens, base_loss, drop, width)
    capacity[2].update({"base_loss": base_loss, "probe_drop": drop, "probe_steps": probe_steps})
    return [
        signal("sft_energy_90", energy_interval(update_spectra, 0.90), probe_s),
        signal("sft_energy_99", energy_interval(update_spectra, 0.99), probe_s),
        signal("grad_energy_90", energy_interval(grad_spectra, 0.90), grad_s),
        signal("grad_noise_edge", edge, grad_s),
        signal("data_capacity", capacity, probe_train_s),
    ]


def predict(config: RankscopeConfig, run_dir: Path, *, probe_steps: int = MAX_PROBE_STEPS, groups: int = 4,
            announce: Callable[[str], None] = print) -> Prediction:
    """Predict every training set of ``config``; print one line per set and signal; write prediction.json."""
    if not 1 <= probe_steps <= MAX_PROBE_STEPS:
        raise ConfigError("predict --probe-steps", f"{probe_steps} steps",
                           f"give 1 to {MAX_PROBE_STEPS}: the probe must stay cheap")
    started = time.perf_counter()
    loaded = load_base_model(config.model)
    model, tokenizer = loaded.model, loaded.tokenizer
    precision = resolve_precision(config.train.precision, loaded.device)
    modules = targeted_modules(model, config)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    prediction = Prediction(model=config.model.id, probe_steps=probe_steps, grad_examples=groups * config.train.batch_size)
    for spec in config.data.train:
        dataset = load_dataset(spec, seed=config.data.seed, for_training=True)
        if not dataset.train:
            raise DatasetError(f"data.train: {spec.name}", "has no training rows",
                               "use a dataset with a train split, or list it under data.eval")
        encoded = encode_examples(tokenizer, dataset.train, dataset.info.train_length(config.train.max_length))
        try:
            signals = predict_set(model, modules, encoded, config, probe_steps=probe_steps, groups=groups,
                                  pad_token_id=tokenizer.pad_token_id, precision=precision)
        finally:
            model.load_state_dict(state)  # the next set starts from the base again
        prediction.sets[spec.name] = signals
        for s in signals:
            announce(f"{spec.name} {s.line}")
    prediction.total_s = time.perf_counter() - started
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    write_prediction(Path(run_dir), prediction)
    return prediction


__all__ = ["DEFINITIONS", "predict", "predict_set", "targeted_modules"]
