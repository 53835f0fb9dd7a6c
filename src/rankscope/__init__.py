"""rankscope: how much LoRA rank is too much?

Runs a controlled rank sweep (base model, full fine-tuning, LoRA at many ranks), evaluates every
arm in- and out-of-domain, measures gain and forgetting, looks inside the network and reports a
recommended rank. The pipeline, what each package owns and the direction of imports are in
docs/architecture.md; the run directory is described in docs/run-store.md.
"""

__version__ = "0.1.0"
