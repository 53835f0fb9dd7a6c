"""Score a task that brings its own prompt (an lm-eval task) as lm-evaluation-harness's HF model does.

Two pieces of lm-eval's ``HFLM`` (lm-eval 0.4.x, ``lm_eval/api/model.py`` and
``lm_eval/models/huggingface.py``) decide which tokens are scored, so they are reproduced here:

* **Pair encoding** (``TemplateLM._encode_pair``): trailing whitespace of the context moves to the
  continuation, the whole text ``context + continuation`` is encoded once and the continuation is
  what follows the encoded context. The model input is ``context_ids + continuation_ids``.
* **Special tokens** (``HFLM.tok_encode`` with ``add_bos_token`` unset): the tokenizer's own
  default (``add_special_tokens=True``), so a tokenizer that prepends BOS does so here too, except
  when the text already starts with the BOS text. An empty context is the BOS (else EOS) token.

The metrics are lm-eval's ``multiple_choice`` ones (``ConfigurableTask.process_results``):
``acc`` (reported as ``accuracy``), the argmax of summed log-likelihoods, and ``acc_norm``, the
argmax of log-likelihood divided by the choice's length in characters (``len(choice)`` of
``doc_to_choice``, the target delimiter not counted) - Gao et al., "A framework for few-shot
language model evaluation" (lm-evaluation-harness), and its blog note on multiple-choice
normalisation.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerBase

from rankscope.data.types import Example


def _encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """``HFLM.tok_encode``: the tokenizer's default special tokens, unless the text starts with BOS."""
    bos = tokenizer.bos_token
    add_special = not (bos and text.startswith(bos))
    return list(tokenizer.encode(text, add_special_tokens=add_special))


def prefix_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token lm-eval puts before a continuation whose context is empty (BOS, else EOS)."""
    token = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if token is None:
        raise ValueError("the tokenizer has neither a BOS nor an EOS token to start an empty context with")
    return int(token)


def encode_pair(tokenizer: PreTrainedTokenizerBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids) exactly as lm-eval's HF model scores one request."""
    if not context:
        return [prefix_token_id(tokenizer)], _encode(tokenizer, continuation)
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = _encode(tokenizer, context + continuation)
    context_ids = _encode(tokenizer, context)
    return context_ids, whole[len(context_ids):]


def encode_verbatim(tokenizer: PreTrainedTokenizerBase, example: Example) -> tuple[list[int], list[list[int]]]:
    """The prompt ids (shared by all choices, as lm-eval's context) and each choice's continuation ids."""
    assert example.prompt is not None and example.continuations is not None
    pairs = [encode_pair(tokenizer, example.prompt, text) for text in example.continuations]
    prompt = pairs[0][0]  # the context is encoded alone, so it is the same for every choice
    return prompt, [continuation for _, continuation in pairs]


def lm_eval_predictions(examples: list[Example], logprobs: list[list[float]]) -> tuple[list[int], list[int]]:
    """(acc predictions, acc_norm predictions): argmax of ll, and of ll / len(choice) as lm-eval divides.

    Ties go to the first choice, as ``numpy.argmax`` does.
    """
    preds, preds_norm = [], []
    for example, scores in zip(examples, logprobs, strict=True):
        assert example.choices is not None
        normalised = [s / len(c) if c else float("-inf") for s, c in zip(scores, example.choices, strict=True)]
        preds.append(max(range(len(scores)), key=scores.__getitem__))
        preds_norm.append(max(range(len(normalised)), key=normalised.__getitem__))
    return preds, preds_norm
