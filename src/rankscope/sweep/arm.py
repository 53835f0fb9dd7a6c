"""Run one arm end to end: apply it to the shared base model, train, evaluate, analyse, save.

The driver owns the store; this module only returns what the arm produced (``ArmOutput``) plus,
for the in-process executor, writes the heavy weight files into the arm's folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from rankscope.analysis import BaseReference, analyze_arm
from rankscope.analysis.base_cache import BASE_REFERENCE_DIR
from rankscope.analysis.rows import ArmAnalysis
from rankscope.data.prompts import render_prompt
from rankscope.data.types import LoadedDataset
from rankscope.evaluate.suite import evaluate_model
from rankscope.models.arms import apply_lora, make_sft_copy, remove_lora
from rankscope.sweep.context import SweepContext
from rankscope.sweep.plan import ArmPlan
from rankscope.train.loop import train_model

log = logging.getLogger(__name__)


@dataclass
class ArmOutput:
    evaluation: dict
    training: dict | None = None
    analysis: ArmAnalysis | None = None


def build_probes(context: SweepContext) -> dict[str, torch.Tensor]:
    """Probe prompts for the analysis: the first questions of every evaluated set, round robin,
    rendered in the sweep's prompt format; fixed by the data seed, so every arm sees the same."""
    spec = context.config.analysis
    tokenizer = context.base.tokenizer
    pools = [dataset.test for dataset in context.data.evaluated.values()]
    questions: list[str] = []
    index = 0
    while len(questions) < spec.probe_size and any(index < len(pool) for pool in pools):
        for pool in pools:
            if index < len(pool) and len(questions) < spec.probe_size:
                questions.append(render_prompt(tokenizer, pool[index].question))
        index += 1
    encoded = tokenizer(questions, add_special_tokens=False, truncation=True, max_length=spec.probe_max_length,
                        padding=True, return_tensors="pt")
    return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}


class ArmRunner:
    """Runs arms in this process, reusing the base model, tokenized data and base analysis."""

    def __init__(self, context: SweepContext, run_dir: Path | None = None):
        self.context = context
        #: the base reference's weight half is streamed to (and resumed from) here; None: memory
        self.reference_dir = run_dir / "analysis" / BASE_REFERENCE_DIR if run_dir is not None else None
        self._probes: dict[str, torch.Tensor] | None = None
        self._reference: BaseReference | None = None
        self._reference_timed = False

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
                                                    spectral_threads=spec.spectral_threads,
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

    def run(self, arm: ArmPlan, arm_dir: Path) -> ArmOutput:
        if arm.method == "base":
            return self._run_base(arm)
        if arm.method == "lora":
            return self._run_lora(arm, arm_dir)
        return self._run_sft(arm, arm_dir)

    def _run_base(self, arm: ArmPlan) -> ArmOutput:
        base = self.context.base
        # Take the base reference before anything can train (sft trains a copy, LoRA adds factors).
        self._analysis_reference()
        evaluation = evaluate_model(base.model, base.tokenizer, self._datasets_for(arm), self.context.config.eval)
        return ArmOutput(evaluation=evaluation, analysis=self._analyze(arm, base.model))

    def _train(self, arm: ArmPlan, model: torch.nn.Module) -> dict:
        base = self.context.base
        result = train_model(
            model,
            self.context.encoded_train(arm.train_set),
            self.context.config.train,
            lr=arm.lr,
            seed=arm.seed,
            pad_token_id=base.tokenizer.pad_token_id,
            description=arm.arm_id,
        )
        return result.to_json()

    def _run_lora(self, arm: ArmPlan, arm_dir: Path) -> ArmOutput:
        base = self.context.base
        self._analysis_reference()
        model = apply_lora(base.model, self.context.config.arms.lora, arm.rank, arm.seed)
        try:
            training = self._train(arm, model)
            evaluation = evaluate_model(model, base.tokenizer, self._datasets_for(arm), self.context.config.eval)
            analysis = self._analyze(arm, model)
            model.save_pretrained(arm_dir / "adapter", safe_serialization=True)
        finally:
            self.context.replace_base_model(remove_lora(model))
        return ArmOutput(evaluation=evaluation, training=training, analysis=analysis)

    def _run_sft(self, arm: ArmPlan, arm_dir: Path) -> ArmOutput:
        base = self.context.base
        self._analysis_reference()
        model = make_sft_copy(base.model)
        try:
            training = self._train(arm, model)
            evaluation = evaluate_model(model, base.tokenizer, self._datasets_for(arm), self.context.config.eval)
            analysis = self._analyze(arm, model)
            if self.context.config.sweep.save_weights:
                # Tied weights (embeddings = output head) are stored once.
                state = {}
                seen: set[int] = set()
                for name, tensor in model.state_dict().items():
                    if tensor.data_ptr() in seen:
                        continue
                    seen.add(tensor.data_ptr())
                    state[name] = tensor.detach().to("cpu").contiguous()
                save_file(state, str(arm_dir / "model.safetensors"), metadata={"format": "pt"})
        finally:
            del model
        return ArmOutput(evaluation=evaluation, training=training, analysis=analysis)
