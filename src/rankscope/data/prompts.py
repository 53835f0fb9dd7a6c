"""The one prompt format used for training and for every evaluation.

Arms must never differ in prompt format (a comparison with two formats is confounded), so both
the training loop and the scorers call :func:`render_prompt` and :func:`training_target`.
With a chat model the question is the user turn and the answer is the assistant turn; without a
chat template a plain ``Question: ...\\nAnswer:`` frame is used.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer: PreTrainedTokenizerBase, question: str) -> str:
    """Everything the model sees before its answer."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    return f"Question: {question}\nAnswer:"


def continuation(tokenizer: PreTrainedTokenizerBase, answer: str) -> str:
    """The answer text as it follows the prompt (a leading space in the plain frame)."""
    return answer if has_chat_template(tokenizer) else " " + answer


def training_target(tokenizer: PreTrainedTokenizerBase, answer: str) -> str:
    """What the loss is computed on: the answer and the end-of-turn token, so the model learns to stop."""
    return continuation(tokenizer, answer) + (tokenizer.eos_token or "")


def adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer starts a sequence with BOS when asked for special tokens (Llama: yes;
    GPT-2 and SmolLM2: no)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def with_bos(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[int]:
    """``ids`` starting with BOS exactly once where the plain frame needs it (see the module docstring)."""
    if has_chat_template(tokenizer) or not adds_bos(tokenizer):
        return ids
    if ids and ids[0] == tokenizer.bos_token_id:
        return ids
    return [tokenizer.bos_token_id, *ids]


def prompt_ids(tokenizer: PreTrainedTokenizerBase, question: str) -> list[int]:
    """Token ids of :func:`render_prompt`, BOS as the tokenizer intends; used by training and every scorer."""
    ids = tokenizer(render_prompt(tokenizer, question), add_special_tokens=False)["input_ids"]
    return with_bos(tokenizer, ids)
