"""Run one arm end to end: apply it to the shared base model, train, evaluate, analyse, save.

The driver owns the store; this module only returns what the arm produced (``ArmOutput``) plus,
for the in-process executor, writes the heavy weight files into the arm's folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rankscope.analysis import BaseReference, analyze_arm
from rankscope.analysis.probes import Probes
from rankscope.analysis.probes import build_probes as build_analysis_probes
from rankscope.runstore.analysis_rows import ArmAnalysis
from rankscope.analysis.base_cache import BASE_REFERENCE_DIR
from rankscope.data.types import LoadedDataset
from rankscope.evaluate.suite import evaluate_model
from rankscope.models.arms import apply_lora, make_sft_copy, remove_lora
from rankscope.models.weights import ADAPTER_FILE, SFT_WEIGHTS, load_adapter_weights, load_sft_weights, save_sft_weights
from rankscope.models.load import load_base_model
from rankscope.plan.estimate import ArmEstimate
from rankscope.models.resolve import peft_base_reference
from rankscope.sweep.context import SweepContext
from rankscope.runstore.arms import ArmPlan
from rankscope.train.loop import train_model
from rankscope.train.memory import PeakMemory
from rankscope.train.precision import PrecisionRecipe, resolve_precision
from rankscope.sweep.validation import validation_scores

log = logging.getLogger(__name__)


@dataclass
class ArmOutput:
    """What one arm produced. ``items``: dataset -> per-item rows (rankscope.verdicts.items),
    shipped back from a Ray worker with the rest and written by the driver."""

    evaluation: dict
    training: dict | None = None
    analysis: ArmAnalysis | None = None
    items: dict[str, list[dict]] = field(default_factory=dict)


def build_probes(context: SweepContext) -> Probes:
    """Probes for the analysis: dialogues of the evaluated sets' questions and answers, round robin
    (rankscope.analysis.probes); fixed by the data seed, so every arm sees the same."""
    spec = context.config.analysis
    pools = [dataset.test for dataset in context.data.evaluated.values()]
    return build_analysis_probes(context.base.tokenizer, pools, size=spec.probe_size,
                                 max_length=spec.probe_max_length)


class ArmRunner:
    """Runs arms in this process, reusing the base model, tokenized data and base analysis."""

    def __init__(self, context: SweepContext, run_dir: Path | None = None):
        self.context = context
        #: the base reference's weight half is streamed to (and resumed from) here; None: memory
        self.reference_dir = run_dir / "analysis" / BASE_REFERENCE_DIR if run_dir is not None else None
        self._reference_timed = False
        self._probes: Probes | None = None
        self._reference: BaseReference | None = None
        self._shape = None
        self._imported = None  # rankscope.sweep.imported.ImportedArmRunner, once an imported arm runs

    @property
    def precision(self) -> PrecisionRecipe:
        return resolve_precision(self.context.config.train.precision, self.context.device)

    def estimate(self, arm: ArmPlan) -> ArmEstimate:
        """The plan's decision for this arm on this process's device: checkpointing, base copy."""
        from rankscope.plan import model_shape, resolve_device, runtime_baseline_gib
        from rankscope.plan.estimate import estimate_arm

        planned = self.context.plan.get(arm.arm_id)
        if planned is None:
            if self._shape is None:
                self._shape = model_shape(self.context.config.model)
            planned = estimate_arm(arm, self._shape, self.context.config, resolve_device(None, measure_peak=False),
                                   runtime_baseline_gib())
            self.context.plan[arm.arm_id] = planned
        return planned

    def _evaluate(self, arm: ArmPlan, model: torch.nn.Module, items: dict[str, list[dict]]) -> dict:
        """Every arm is scored in the recipe's compute dtype, so precision cannot tell arms apart;
        ``items`` receives the per-item records (arms/<id>/items/)."""
        with self.precision.autocast(self.context.device):
            return evaluate_model(model, self.context.tokenizer, self._datasets_for(arm), self.context.config.eval,
                                  items)

    def _datasets_for(self, arm: ArmPlan) -> dict[str, LoadedDataset]:
        data = self.context.data
        if arm.method == "base":
            return data.evaluated
        return {t.dataset: data.evaluated[t.dataset] for t in data.targets[arm.train_set]}

    def _analysis_reference(self) -> BaseReference | None:
        if not self.context.config.analysis.enabled:
            return None
        if self._reference is None:
            self._probes = build_probes(self.context)
            spec = self.context.config.analysis
            self._reference = BaseReference.compute(self.context.base.model, self._probes,
                                                    intruders=spec.intruders,
                                                    batch_size=spec.batch_size,
                                                    spectral_threads=spec.spectral_threads,
                                                    sink_norm_ratio=spec.sink_norm_ratio,
                                                    spec=spec, cache_dir=self.reference_dir,
                                                    key=self.context.config.model.model_dump_json())
        return self._reference

    def _analyze(self, arm: ArmPlan, model: torch.nn.Module) -> ArmAnalysis | None:
        reference = self._analysis_reference()
        if reference is None:
            return None
        analysis = analyze_arm(arm.arm_id, model, reference, self._probes, self.context.config.analysis)
        if not self._reference_timed:  # the once-per-sweep base reference, in the first analysed arm's timings
            analysis.timings.update({f"base_reference_{step}": s for step, s in reference.timings.items()})
            self._reference_timed = True
        return analysis

    @property
    def imported(self):
        """Scores arms trained elsewhere on this runner's base (rankscope.sweep.imported)."""
        if self._imported is None:
            from rankscope.sweep.imported import ImportedArmRunner

            self._imported = ImportedArmRunner(self)
        return self._imported

    def run(self, arm: ArmPlan, arm_dir: Path, weights_dir: Path | None = None) -> ArmOutput:
        """``weights_dir``: where a ``selected`` arm's candidate saved its weights (default
        ``arm_dir``); a selected arm is evaluated from them instead of trained again."""
        if arm.imported:
            done = self.imported.run(arm)
            return ArmOutput(evaluation=done.evaluation, analysis=done.analysis, items=done.items)
        if self._imported is not None:
            self._imported.close()  # the base without imported adapters before a trained arm wraps it
        if arm.method == "base":
            return self._run_base(arm)
        if arm.method == "lora":
            return self._run_lora(arm, arm_dir, weights_dir or arm_dir)
        return self._run_sft(arm, arm_dir, weights_dir or arm_dir)

    def _validate(self, arm: ArmPlan, model: torch.nn.Module) -> dict:
        """A grid candidate's validation scores (rankscope.sweep.validation), in the recipe's dtype."""
        data = self.context.data
        dataset = data.train_sets[arm.train_set]
        primary = next((t.primary_metric for t in data.targets[arm.train_set] if t.dataset == arm.train_set),
                       "accuracy")
        with self.precision.autocast(self.context.device):
            return validation_scores(model, self.context.tokenizer, dataset,
                                     self.context.encoded_validation(arm.train_set), self.context.config.eval,
                                     primary)

    def _score(self, arm: ArmPlan, model: torch.nn.Module, training: dict | None) -> ArmOutput:
        """A candidate is scored on the validation split only (the test split never picks a rate);
        every other arm on its evaluation sets, then analysed."""
        if arm.stage == "candidate":
            validation = self._validate(arm, model)
            return ArmOutput(evaluation={"datasets": {}, "validation": validation,
                                         "eval_time_s": validation["time_s"]}, training=training)
        items: dict[str, list[dict]] = {}
        evaluation = self._evaluate(arm, model, items)
        analysis = self._control(arm, model, evaluation, self._analyze(arm, model))
        return ArmOutput(evaluation=evaluation, training=training, analysis=analysis, items=items)

    def _control(self, arm: ArmPlan, model: torch.nn.Module, evaluation: dict,
                 analysis: ArmAnalysis | None) -> ArmAnalysis | None:
        """``analysis.intruder_control``: scale the intruders vs a uniform shrink, re-evaluate (opt-in)."""
        spec = self.context.config.analysis
        if analysis is None or not spec.intruder_control or self._reference is None:
            return analysis
        from rankscope.sweep.intruder_control import intruder_control

        analysis.control = intruder_control(arm.arm_id, model, self._reference.weights, evaluation,
                                            lambda m: self._evaluate(arm, m, {}), spec.intruder_k,
                                            spec.intruder_threshold)
        return analysis

    def _run_base(self, arm: ArmPlan) -> ArmOutput:
        base = self.context.base
        # Take the base reference before anything can train (sft trains a copy, LoRA adds factors).
        self._analysis_reference()
        items: dict[str, list[dict]] = {}
        evaluation = self._evaluate(arm, base.model, items)
        return ArmOutput(evaluation=evaluation, analysis=self._analyze(arm, base.model), items=items)

    def _train(self, arm: ArmPlan, make_model) -> tuple[torch.nn.Module, dict]:
        """Build the arm's model and train it inside one memory measurement: peak_memory_total_mb
        is the process's peak, peak_memory_arm_mb that minus what was resident before the arm."""
        with PeakMemory(self.context.device) as memory:
            model = make_model()
            result = train_model(
                model,
                self.context.encoded_train(arm.train_set),
                self.context.config.train,
                lr=arm.lr,
                seed=arm.seed,
                pad_token_id=self.context.tokenizer.pad_token_id,
                description=arm.arm_id,
                precision=self.precision,
                gradient_checkpointing=self.estimate(arm).gradient_checkpointing,
            )
        result.peak_memory_total_mb = round(memory.mb, 1)
        result.peak_memory_arm_mb = round(memory.arm_mb, 1)
        return model, result.to_json()

    def _run_lora(self, arm: ArmPlan, arm_dir: Path, weights_dir: Path) -> ArmOutput:
        self._analysis_reference()
        holder: list[torch.nn.Module] = []

        def make_model():
            holder.append(apply_lora(self.context.base.model, self.context.config.arms.lora, arm.rank, arm.seed))
            return holder[0]

        adapter = weights_dir / "adapter" / ADAPTER_FILE
        try:
            if arm.stage == "selected" and adapter.is_file():  # the candidate's trained factors
                model, training = make_model(), None
                load_adapter_weights(model, adapter)
            else:  # selected without saved factors (a remote worker that cannot read them): retrain
                model, training = self._train(arm, make_model)
            output = self._score(arm, model, training)
            if training is not None:
                # a base model reference peft can resolve (the default model's hub id, not its GGUF folder)
                adapter_config = model.peft_config["default"]
                adapter_config.base_model_name_or_path = peft_base_reference(self.context.config.model)
                adapter_config.revision = self.context.config.model.revision
                # rankscope never resizes the vocabulary, so the base embeddings need not be saved; "auto"
                # would ask the hub for the base config to find out (a network call in an offline run).
                model.save_pretrained(arm_dir / "adapter", safe_serialization=True, save_embedding_layers=False)
        finally:
            if holder:
                self.context.replace_base_model(remove_lora(holder[0]))
        return output

    def _sft_model(self, arm: ArmPlan) -> torch.nn.Module:
        """A trainable copy beside the resident base, or, when the plan says the copy does not
        fit, the base freed and the model loaded again straight into fp32 master weights (the
        next arm reloads the base)."""
        if self.estimate(arm).base_resident:
            return make_sft_copy(self.context.base.model)
        spec = self.context.config.model.model_copy(update={"dtype": "float32"})
        self.context.drop_base_model()
        model = load_base_model(spec).model
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        return model

    def _run_sft_sharded(self, arm: ArmPlan, arm_dir: Path, gpus: int) -> ArmOutput:
        """``sweep.sft_gpus: N``: full fine-tuning on N torchrun processes with FSDP2, then scored
        here on the gathered weights like any other arm."""
        import shutil
        import tempfile

        from rankscope.train.fsdp import WEIGHTS_FILE, ShardedJob, launch_sharded

        config = self.context.config
        encoded = self.context.encoded_train(arm.train_set)
        pad = self.context.tokenizer.pad_token_id
        self.context.drop_base_model()  # the ranks need the GPUs the base occupies
        with tempfile.TemporaryDirectory(prefix="rankscope-fsdp-", dir=arm_dir) as out:
            job = ShardedJob(model=config.model.model_dump(mode="json"), train=config.train.model_dump(mode="json"),
                             lr=arm.lr, seed=arm.seed, pad_token_id=pad, precision=self.precision.name,
                             gradient_checkpointing=self.estimate(arm).gradient_checkpointing,
                             encoded=[(e.input_ids, e.labels) for e in encoded], out_dir=out)
            training = launch_sharded(job, gpus)
            model = load_base_model(config.model.model_copy(update={"dtype": "float32"})).model
            load_sft_weights(model, Path(out) / WEIGHTS_FILE)  # tied weights stored once
            if config.sweep.save_weights:
                shutil.move(str(Path(out) / WEIGHTS_FILE), str(arm_dir / "model.safetensors"))
        try:
            return self._score(arm, model, training)
        finally:
            del model

    def _run_sft(self, arm: ArmPlan, arm_dir: Path, weights_dir: Path) -> ArmOutput:
        self._analysis_reference()
        gpus = self.estimate(arm).gpus
        saved = weights_dir / SFT_WEIGHTS
        if gpus > 1 and not (arm.stage == "selected" and saved.is_file()):
            return self._run_sft_sharded(arm, arm_dir, gpus)
        if not self.estimate(arm).base_resident:
            self.context.drop_base_model()  # before measuring: the arm's own memory excludes it
        model = None
        try:
            if arm.stage == "selected" and saved.is_file():  # the candidate's trained weights
                model, training = self._sft_model(arm), None
                load_sft_weights(model, saved)
            else:
                model, training = self._train(arm, lambda: self._sft_model(arm))
            output = self._score(arm, model, training)
            if training is not None and self.context.config.sweep.save_weights:
                save_sft_weights(model, arm_dir / SFT_WEIGHTS)
        finally:
            del model
        return output
