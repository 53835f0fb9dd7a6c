"""Arms trained outside rankscope, the way a user's own script makes them: transformers' Trainer with
a peft LoraConfig (adapters) or on every weight (a full checkpoint), saved with save_pretrained.
Nothing here imports rankscope: these folders stand for TRL/axolotl/unsloth output."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

TEXTS = ["What is 2 + 3? 5", "What is 7 + 1? 8", "Mia has 12 apples and buys 7 more. 19",
         "What is the capital of France? Paris"]


def _rows(tokenizer, length: int = 24) -> list[dict]:
    rows = []
    for text in TEXTS:
        ids = tokenizer(text, truncation=True, max_length=length, padding="max_length")["input_ids"]
        ids = torch.tensor(ids)
        labels = ids.clone()
        labels[ids == tokenizer.pad_token_id] = -100
        rows.append({"input_ids": ids, "attention_mask": (ids != tokenizer.pad_token_id).long(), "labels": labels})
    return rows


def _train(model, tokenizer, out: Path, lr: float) -> None:
    args = TrainingArguments(output_dir=str(out / "trainer"), max_steps=4, per_device_train_batch_size=2,
                             learning_rate=lr, report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=True, seed=0, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=_rows(tokenizer)).train()


def train_adapter(base_dir: Path, out: Path, rank: int, alpha: float, rslora: bool = False,
                  targets: list[str] | None = None) -> Path:
    """A LoRA adapter trained by peft + Trainer (B moves off zero), saved as safetensors."""
    from peft import LoraConfig, get_peft_model

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    torch.manual_seed(rank)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=rank, lora_alpha=alpha, use_rslora=rslora, task_type="CAUSAL_LM",
                        target_modules=targets or ["q_proj", "v_proj", "down_proj"])
    model = get_peft_model(model, config)
    _train(model, tokenizer, out, lr=5e-2)
    model.save_pretrained(out, safe_serialization=True)
    return out


def train_full(base_dir: Path, out: Path) -> Path:
    """A full fine-tune by Trainer, saved with its config and tokenizer (a complete checkpoint)."""
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    _train(model, tokenizer, out, lr=1e-2)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
