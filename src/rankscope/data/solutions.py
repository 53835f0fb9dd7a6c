"""Worked-solution training targets for reasoning sets: one implementation the loaders, the
benchmarks in bench/ and the CLI share.

A reasoning set is meant to teach and measure reasoning. Training on the bare final number
(what GSM8K's "#### N" line holds) teaches a tuned arm to answer at once, so its "gain" is
mostly format; the study this tool follows trains on the worked solution. Each target here ends
in one line :func:`rankscope.data.answers.extract_number` reads back as the final answer
("The answer is N."), the convention of arith_chain, of lm-evaluation-harness's flexible
extraction and of chat models; the exported lm-eval task reads it with the same regex.

GSM8K (Cobbe et al. 2021) marks every calculator call as ``<<48/2=24>>`` before its result; the
annotations are tool calls, not prose, and are removed (``48/2 = <<48/2=24>>24`` -> ``48/2 = 24``).
MathQA (Amini et al. 2019) ships a ``Rationale`` per problem; it becomes a target only on request
(``target: solution``), since MathQA is scored as multiple choice, by the likelihood of each choice
right after the prompt, which a model trained to write a rationale first is not asked for.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Literal

from rankscope.data.answers import extract_number
from rankscope.data.types import Example, Format

TargetPolicy = Literal["auto", "solution", "answer"]

_CALCULATOR = re.compile(r"<<[^<>]*>>")
_FINAL_LINE = re.compile(r"\n?\s*####.*\Z", re.DOTALL)


def final_answer_line(answer: str) -> str:
    """The closing line of every worked-solution target."""
    return f"The answer is {answer}."


def clean_gsm8k_solution(solution: str) -> str:
    """GSM8K's worked solution without calculator annotations and without the ``#### N`` line."""
    text = _CALCULATOR.sub("", solution)
    text = _FINAL_LINE.sub("", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def gsm8k_target(solution: str, number: str) -> str:
    """``"Natalia sold 48/2 = <<48/2=24>>24 clips ...\\n#### 72"`` ->
    ``"Natalia sold 48/2 = 24 clips ...\\nThe answer is 72."``."""
    body = clean_gsm8k_solution(solution)
    return f"{body}\n{final_answer_line(number)}" if body else final_answer_line(number)


def mathqa_target(rationale: str, answer: str) -> str:
    """MathQA's rationale (quotes stripped) ending in the gold choice's text."""
    body = rationale.strip().strip('"').strip()
    return f"{body}\n{final_answer_line(answer)}" if body else final_answer_line(answer)


def apply_target_policy(examples: Sequence[Example], fmt: Format, policy: TargetPolicy) -> list[Example]:
    """What training teaches for a loaded set (``DatasetSpec.target``).

    auto: worked solutions for generative sets, the answer itself for multiple-choice sets (they
    are scored on the choice right after the prompt); solution: every worked solution a set has;
    answer: bare answers everywhere (the old behaviour, and the short-target benchmark case).
    """
    keep = policy == "solution" or (policy == "auto" and fmt == "generative")
    if keep:
        return list(examples)
    return [dataclasses.replace(e, target=None) if e.target is not None else e for e in examples]


def target_reads_back(example: Example) -> bool:
    """Whether the answer extractor reads the training target's final answer as the example's answer."""
    if example.target is None:
        return True
    read = extract_number(example.target)
    return read is not None and read == extract_number(example.answer)
