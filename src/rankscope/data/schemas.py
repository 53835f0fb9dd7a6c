"""The benchmarks' upstream row schemas, declared as field maps (data, not code).

Each schema says which column holds what in the rows as their authors publish them (the original
files and the Hugging Face hub); :func:`rankscope.data.fieldmap.to_example` reads a row through it,
the same converter a user file goes through. Where a benchmark's published shapes differ (hub vs
original file vs a reformatted copy), its schema lists one field map per shape, told apart by a key
the shape has (``when``), so the same name loads from any of them. What a column name cannot say is
a named transform (:mod:`rankscope.data.transforms`).

A schema is callable: ``gsm8k(row, uid)`` is the Example that row holds.
"""

from __future__ import annotations

from rankscope.data.fieldmap import RowMap, Schema, When
from rankscope.data.transforms import parse_mathqa_options

# parse_mathqa_options is re-exported: MathQA's options are the one packed column a reader of this
# module may want to parse on its own.
__all__ = ["gsm8k", "labeled_choices", "mathqa", "medmcqa_file", "medmcqa_hub", "mmlu", "nq_open",
           "parse_mathqa_options", "triviaqa"]

#: Item ids, where an upstream schema has them (TriviaQA on the hub calls its id ``question_id``).
IDS = ("id", "question_id")

#: GSM8K: ``question``, ``answer`` a worked solution ending in ``#### N``; the answer is N and the
#: target the solution without calculator annotations (transform ``gsm8k_solution``).
gsm8k = Schema(RowMap(question="question", answer="answer", answer_form="gsm8k_solution", id=IDS))

#: MathQA: ``Problem``, ``options`` as ``"a ) 38 , b ) 27.675 , ..."``, ``correct`` a letter; the
#: ``Rationale`` becomes the target on request (``target: solution``).
mathqa = Schema(RowMap(question="Problem", choices="options", choices_form="mathqa_options", answer="correct",
                       gold="letter", solution="Rationale", id=IDS))

#: MMLU: hub rows ``question, choices, answer`` (a 0-3 ClassLabel index); the upstream CSV
#: ``question, A, B, C, D, answer`` (a letter; the file layout names the columns).
mmlu = Schema(
    RowMap(when=When("choices"), question="question", choices="choices", answer="answer", gold="index", id=IDS),
    RowMap(question="question", choices=("A", "B", "C", "D"), answer="answer", gold="letter", id=IDS),
)

_MEDMCQA_OPTIONS = ("opa", "opb", "opc", "opd")

#: MedMCQA's upstream files number the correct option ``cop`` 1-4 ...
medmcqa_file = Schema(RowMap(question="question", choices=_MEDMCQA_OPTIONS, answer="cop", gold="medmcqa_cop_1_4",
                             id=IDS))
#: ... the hub's ClassLabel 0-3 (checked against the "Ans: X" notes in the upstream dev file).
medmcqa_hub = Schema(RowMap(question="question", choices=_MEDMCQA_OPTIONS, answer="cop", gold="medmcqa_cop_0_3",
                            id=IDS))

#: ARC and CommonsenseQA in any of their published shapes: llm-foundry's reformat (the shared ARC
#: file) ``query "Question: ..."``, ``choices [...]``, ``gold`` index; AI2's original JSONL
#: ``question {stem, choices: [{label, text}]}``, ``answerKey``; the hub's ``question``,
#: ``choices {label: [...], text: [...]}``, ``answerKey``. ARC labels are usually A-D but some rows
#: use 1-4, so the key is looked up among the labels.
labeled_choices = Schema(
    RowMap(when=When("query"), question="query", question_transform="strip_prompt", choices="choices",
           answer="gold", id=IDS),
    RowMap(when=When("question", mapping=True), question="question.stem", choices="question.choices",
           choices_form="labeled", answer="answerKey", gold="label", id=IDS),
    RowMap(question="question", choices="choices", choices_form="labeled", answer="answerKey", gold="label", id=IDS),
)

#: TriviaQA: the shared file's ``context "Question: ...\nAnswer:"``, ``answer``, ``aliases``; the
#: hub's (rc.nocontext) ``question``, ``answer {value, aliases}``.
triviaqa = Schema(
    RowMap(when=When("context"), question="context", question_transform="strip_prompt", answer="answer",
           answer_form="text", aliases="aliases", id=IDS),
    RowMap(question="question", answer="answer.value", answer_form="text", aliases="answer.aliases", id=IDS),
)

#: NQ-open: ``question``, ``answer`` a list of acceptable strings (the first canonical).
nq_open = Schema(RowMap(question="question", answer="answer", answer_form="list", id=IDS))
