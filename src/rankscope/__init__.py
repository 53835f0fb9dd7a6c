"""rankscope: how much LoRA rank is too much?

Runs a controlled rank sweep (base model, full fine-tuning, LoRA at many ranks), evaluates every
arm in- and out-of-domain, measures gain and forgetting, looks inside the network and reports a
recommended rank. See README.md and DESIGN notes for the pipeline.
"""

__version__ = "0.1.0"
