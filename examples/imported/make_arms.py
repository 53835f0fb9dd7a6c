"""Make a tiny base model and arms trained outside rankscope, plus a sweep config that mixes them
with a trained LoRA arm (docs/imported.md). Runs in about a minute on 2 CPU cores, offline.

    python examples/imported/make_arms.py runs/imported-demo
    rankscope run runs/imported-demo/mixed.yaml --out runs/imported-demo/run

The arms stand for what TRL / axolotl / a full fine-tuning script leave behind: two LoRA adapters
(r=2, and r=8 with rsLoRA) and a full checkpoint, each trained with transformers' Trainer (+ peft
for the adapters) and saved with save_pretrained as safetensors. Nothing here imports rankscope.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Trainer, TrainingArguments)

CORPUS = ["What is 12 + 7? The answer is 19.", "Sam has 4 pens and gets 5 more. 9",
          "The capital of France is Paris.", "0 1 2 3 4 5 6 7 8 9 10 20 30 40 50 100 + - = ?"]
CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_base(folder: Path) -> Path:
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.train_from_iterator(CORPUS * 8, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="<|im_end|>",
                                        pad_token="<pad>", bos_token="<|im_start|>")
    tokenizer.chat_template = CHAT
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                         max_position_embeddings=256, tie_word_embeddings=True))
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def train(base: Path, out: Path, lora: dict | None, lr: float) -> Path:
    tokenizer = PreTrainedTokenizerFast.from_pretrained(base)
    model = LlamaForCausalLM.from_pretrained(base)
    if lora is not None:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", **lora))
    rows = []
    for text in CORPUS:
        ids = torch.tensor(tokenizer(text, max_length=24, truncation=True, padding="max_length")["input_ids"])
        labels = ids.masked_fill(ids == tokenizer.pad_token_id, -100)
        rows.append({"input_ids": ids, "attention_mask": (ids != tokenizer.pad_token_id).long(), "labels": labels})
    args = TrainingArguments(output_dir=str(out / "trainer"), max_steps=8, per_device_train_batch_size=2,
                             learning_rate=lr, report_to=[], save_strategy="no", logging_strategy="no",
                             use_cpu=True, seed=0, disable_tqdm=True)
    Trainer(model=model, args=args, train_dataset=rows).train()
    model.save_pretrained(out, safe_serialization=True)
    if lora is None:
        tokenizer.save_pretrained(out)
    return out


def main(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    base = tiny_base(root / "base")
    train(base, root / "trl-r2", {"r": 2, "lora_alpha": 4, "target_modules": ["q_proj", "v_proj"]}, 5e-2)
    train(base, root / "axolotl-r8-rslora", {"r": 8, "lora_alpha": 16, "use_rslora": True,
                                             "target_modules": "all-linear"}, 5e-2)
    train(base, root / "full-ft", None, 1e-2)
    config = {
        "name": "imported-demo",
        "model": {"id": str(base.resolve())},
        "data": {"train": [{"name": "arith_chain", "n_train": 64, "n_test": 40}],
                 "eval": [{"name": "arith_mc", "n_test": 40}, {"name": "capitals", "n_test": 40}]},
        "arms": {"sft": False, "lora": {"ranks": [4]},
                 "imported": [{"path": "trl-r2", "name": "trl_r2"},
                              {"path": "axolotl-r8-rslora", "name": "axolotl_r8"},
                              {"path": "full-ft", "name": "full_ft"}]},
        "train": {"steps": 20, "batch_size": 8, "max_length": 64},
        "eval": {"batch_size": 16, "max_new_tokens": 8},
        "analysis": {"probe_size": 4, "probe_max_length": 48},
    }
    (root / "mixed.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"wrote {root / 'mixed.yaml'}; run: rankscope run {root / 'mixed.yaml'} --out {root / 'run'}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/imported-demo"))
