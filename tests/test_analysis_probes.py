"""Analysis probes: question-and-answer dialogues whose template tokens are masked."""

from __future__ import annotations

import pytest
import torch
from conftest import build_tokenizer

from rankscope.analysis.probes import Probes, build_probes, render_dialogue
from rankscope.data.types import Example

POOLS = [
    [Example(question=f"Mia has {i} apples and buys 7 more. How many apples?", answer=str(i + 7), uid=f"a{i}")
     for i in range(6)],
    [Example(question="What is the capital of France?", answer="Paris", uid=f"c{i}") for i in range(6)],
]


def _pieces(tokenizer, probes: Probes, row: int, content: bool) -> list[str]:
    ids = probes.input_ids[row][probes.attention_mask[row].bool()]
    flags = probes.content()[row][probes.attention_mask[row].bool()]
    return [tokenizer.decode([int(t)]) for t, f in zip(ids, flags) if bool(f) == content]


def test_chat_template_tokens_are_masked():
    tokenizer = build_tokenizer(chat=True)
    probes = build_probes(tokenizer, POOLS, size=2, max_length=48)
    assert probes.input_ids.shape[0] == 2
    for row in range(2):
        real = int(probes.attention_mask[row].sum())
        template = _pieces(tokenizer, probes, row, content=False)
        content = _pieces(tokenizer, probes, row, content=True)
        assert len(template) + len(content) == real
        # every role marker and turn delimiter of the chat template is masked ...
        ids = probes.input_ids[row][:real].tolist()
        for special in ("<|im_start|>", "<|im_end|>"):
            positions = [i for i, t in enumerate(ids) if t == tokenizer.convert_tokens_to_ids(special)]
            assert positions and all(int(probes.content_mask[row, i]) == 0 for i in positions)
        assert "user" in "".join(template) and "assistant" in "".join(template)
        # ... and what is kept is exactly the questions and answers, in order
        kept = "".join(content)
        assert kept.startswith("Mia has 0 apples" if row == 0 else kept[:3])
        assert "user" not in kept and "<|im_" not in kept
    # probes are packed to the length the model is asked for (the first one is full)
    assert int(probes.attention_mask[0].sum()) == 48


def test_content_positions_match_the_template_rendering():
    """Template positions are where the chat template puts its own tokens: rendering the
    dialogue with every content replaced by nothing leaves exactly the template tokens."""
    tokenizer = build_tokenizer(chat=True)
    pairs = [("What is the capital of France?", "Paris"), ("Mia has 12 apples", "19")]
    text, spans = render_dialogue(tokenizer, pairs)
    assert [text[s:e] for s, e in spans] == [p for pair in pairs for p in pair]
    probes = build_probes(tokenizer, [[Example(question=q, answer=a) for q, a in pairs]], size=1, max_length=200)
    n_template = int((probes.attention_mask.bool() & ~probes.content()).sum())
    empty = tokenizer.apply_chat_template(
        [m for _ in pairs for m in ({"role": "user", "content": ""}, {"role": "assistant", "content": ""})],
        tokenize=False)
    assert n_template == len(tokenizer(empty, add_special_tokens=False)["input_ids"])


def test_plain_frame_masks_the_question_and_answer_labels():
    tokenizer = build_tokenizer(chat=False)
    probes = build_probes(tokenizer, POOLS, size=1, max_length=40)
    template = "".join(_pieces(tokenizer, probes, 0, content=False))
    assert "Question:" in template and "Answer:" in template
    assert "Question" not in "".join(_pieces(tokenizer, probes, 0, content=True))


def test_probes_are_deterministic_round_robin_and_stop_when_examples_run_out():
    tokenizer = build_tokenizer(chat=True)
    a = build_probes(tokenizer, POOLS, size=3, max_length=80)
    b = build_probes(tokenizer, POOLS, size=3, max_length=80)
    assert a.equals(b)
    first = "".join(_pieces(tokenizer, a, 0, content=True))
    assert first.index("Mia has 0") < first.index("capital")  # round robin: set 1, then set 2
    few = build_probes(tokenizer, [POOLS[1][:2]], size=5, max_length=500)
    assert few.input_ids.shape[0] == 1  # both examples fit in one probe; nothing left for more
    with pytest.raises(ValueError, match="no test examples"):
        build_probes(tokenizer, [[]], size=2, max_length=32)


def test_probes_of_keeps_or_defaults_the_content_mask():
    ids = torch.ones(2, 4, dtype=torch.long)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    plain = Probes.of((ids, mask))
    assert torch.equal(plain.content(), mask.bool())
    content = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1]])
    masked = Probes.of({"input_ids": ids, "attention_mask": mask, "content_mask": content})
    assert masked.content().tolist() == [[False, True, True, True], [False, True, False, False]]
    assert not masked.equals(plain)
