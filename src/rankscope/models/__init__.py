"""Loading the base model and applying arms (base, sft, LoRA)."""
