"""The data contract every dataset source produces and every consumer reads.

A dataset is a list of :class:`Example` rows plus a :class:`TaskInfo` saying what it measures.
Prompt rendering (chat template) and scoring live elsewhere, so an Example stays plain text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["reasoning", "recall"]
Format = Literal["mc", "generative"]
AnswerType = Literal["number", "text"]


@dataclass(frozen=True)
class Example:
    """One question.

    question: the full user-turn text (for mc sets the choices are *not* listed; they are scored
        as continuations, cloze style).
    answer: the canonical target text; training teaches exactly this string. For mc it equals
        ``choices[gold]``.
    choices / gold: multiple-choice options and the index of the correct one (mc only).
    aliases: extra accepted answers for generative exact match (the answer itself always counts).
    uid: stable id within its dataset (used for seeded sampling and probe selection).
    prompt / continuations: set only for a task that defines its own prompt (an lm-eval task):
        the verbatim context and the text scored after it for each choice (target delimiter
        included). The multiple-choice scorer then uses them as they are (no chat template, no
        frame) and tokenizes as lm-evaluation-harness does, so its numbers compare with lm-eval's.
    target: what training teaches when it differs from ``answer``: a worked solution that ends in
        a line the answer extractor reads (GSM8K's "... #### 72"), so a tuned arm learns
        the reasoning, not only the final number. None = train on ``answer``.
    """

    question: str
    answer: str
    choices: tuple[str, ...] | None = None
    gold: int | None = None
    aliases: tuple[str, ...] = ()
    uid: str = ""
    prompt: str | None = None
    continuations: tuple[str, ...] | None = None
    target: str | None = None

    @property
    def training_text(self) -> str:
        """The text the training loss is computed on (see ``target``)."""
        return self.target if self.target is not None else self.answer

    def accepted_answers(self) -> tuple[str, ...]:
        return (self.answer, *self.aliases)


@dataclass(frozen=True)
class TaskInfo:
    """What a dataset measures and how it is scored."""

    name: str
    kind: Kind
    format: Format
    answer_type: AnswerType = "text"
    description: str = ""
    source: str = "builtin"  # builtin | hub | file
    # The set's own generation and training lengths (a worked solution needs far more than a bare
    # answer); None = the eval.max_new_tokens / train.max_length defaults.
    max_new_tokens: int | None = None
    max_length: int | None = None

    def new_tokens(self, default: int) -> int:
        return self.max_new_tokens if self.max_new_tokens is not None else default

    def train_length(self, default: int) -> int:
        return self.max_length if self.max_length is not None else default


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset with its splits. ``train`` may be empty for evaluation-only sets; ``validation``
    (training sets only) picks the learning rate and shares no uid or question with the others."""

    info: TaskInfo
    train: list[Example] = field(default_factory=list)
    test: list[Example] = field(default_factory=list)
    validation: list[Example] = field(default_factory=list)
