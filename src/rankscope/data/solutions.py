"""Worked-solution training targets for reasoning sets: one implementation the loaders, the
benchmarks in bench/ and the CLI share.

A reasoning set is meant to teach and measure reasoning. Training on the bare final number
(what GSM8K's "#### N" line holds) teaches a tuned arm to answer at once, so its "gain" is
mostly format; the study this tool follows trains on the worked solution. Each GSM8K target ends
in GSM8K's own final line ``#### N``, which :func:`rankscope.data.answers.extract_number` reads
first (as does lm-evaluation-harness's gsm8k "strict-match"; the exported lm-eval task reads it
with the same regex). "The answer is N." would be ambiguous: some upstream solutions already say
"the final answer is 15 gallons * 8 pints / gallon = 120" in their body, and the first such
phrase wins.

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
    """The closing line of a worked-solution target scored as multiple choice (MathQA's rationale)."""
    return f"The answer is {answer}."


def clean_gsm8k_solution(solution: str) -> str:
    """GSM8K's worked solution without calculator annotations and without the ``#### N`` line."""
    text = _CALCULATOR.sub("", solution)
    text = _FINAL_LINE.sub("", text)
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def gsm8k_target(solution: str, number: str) -> str:
    """``"Natalia sold 48/2 = <<48/2=24>>24 clips ...\n#### 72"`` ->
    ``"Natalia sold 48/2 = 24 clips ...\n#### 72"`` (the number canonical: no thousands commas)."""
    body = clean_gsm8k_solution(solution)
    return f"{body}\n#### {number}" if body else f"#### {number}"


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
