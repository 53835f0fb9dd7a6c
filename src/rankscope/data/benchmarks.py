"""The field's benchmarks by name, each declared as data: what it measures, where it lives (hub id
and config), its splits, how its rows read (a field-map :class:`~rankscope.data.fieldmap.Schema`
for the upstream files and one for the hub, see :mod:`rankscope.data.schemas`) and its defaults.

Every benchmark reads its *upstream* schema: the files as their authors publish them (``path:``
to a file or folder) and the Hugging Face hub rows (``datasets`` library). Where the two number
things differently the declaration says so (MedMCQA: upstream files give ``cop`` 1-4, the hub's
ClassLabel gives 0-3 -- checked against the "Ans: X" notes in the upstream dev file). Finding a
split's rows in a folder or on the hub is :mod:`rankscope.data.upstream`'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rankscope.data import schemas
from rankscope.data.fieldmap import Schema
from rankscope.data.types import AnswerType, Format, Kind


@dataclass(frozen=True, kw_only=True)
class Benchmark:
    """One upstream benchmark: what it measures, where it lives, how its rows read.

    file_layout: ``split_files`` -- one data file per split, found by name in a folder;
        ``mmlu_csvs`` -- MMLU's headerless ``<subject>_<split>.csv`` in ``dev/ val/ test/``.
    subject_field: the column ``subjects:`` filters on (None: the set has no subjects).
    hub_config_per_subject: on the hub each subject is its own config (``cais/mmlu``), so
        ``subjects:`` loads those configs instead of filtering the default one.
    """

    name: str
    kind: Kind
    format: Format
    answer_type: AnswerType
    description: str
    notes: str  # schema and answer-extraction notes shown by `rankscope datasets show`
    hub_id: str
    hub_config: str | None
    test_split: str
    train_split: str | None
    file_schema: Schema  # the upstream files' rows
    hub_schema: Schema  # the hub's rows
    file_layout: Literal["split_files", "mmlu_csvs"] = "split_files"
    subject_field: str | None = None
    hub_config_per_subject: bool = False
    # Generation and training lengths the set needs (None: the eval/train defaults). GSM8K's
    # worked-solution targets with SmolLM2's tokenizer: median 85 tokens, p99 222, 0.4% over 256;
    # prompt (chat template) + target: median 173, p99 352, 0.5% over 384. 24 new tokens cut
    # almost every solution off.
    max_new_tokens: int | None = None
    max_length: int | None = None

    def __post_init__(self) -> None:
        for schema in (self.file_schema, self.hub_schema):
            if schema.format != self.format:
                raise ValueError(f"benchmark {self.name}: a {schema.format} schema for a {self.format} set")


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark(
        name="gsm8k", kind="reasoning", format="generative", answer_type="number",
        description="Grade-school math word problems (Cobbe et al. 2021).",
        notes="JSONL question/answer; the answer is a worked solution ending in '#### N'. Example.answer is N; "
              "training teaches the worked solution without calculator annotations, ending in '#### N' "
              "(target: answer trains on N alone). Predictions are scored by the number after '####', else after "
              "'The answer is', else the last number. 256 new tokens and training length 384 by default.",
        hub_id="openai/gsm8k", hub_config="main", test_split="test", train_split="train",
        file_schema=schemas.gsm8k, hub_schema=schemas.gsm8k, max_new_tokens=256, max_length=384),
    Benchmark(
        name="mathqa", kind="reasoning", format="mc", answer_type="text",
        description="Math word problems with 5 options (Amini et al. 2019).",
        notes="JSON array of Problem, options 'a ) 38 , b ) 27.675 , ...', correct 'a'. Choices scored cloze style; "
              "training teaches the choice (target: solution: the Rationale ending in 'The answer is <choice>.').",
        hub_id="allenai/math_qa", hub_config=None, test_split="test", train_split="train",
        file_schema=schemas.mathqa, hub_schema=schemas.mathqa),
    Benchmark(
        name="mmlu", kind="recall", format="mc", answer_type="text",
        description="57-subject knowledge exam (Hendrycks et al. 2021).",
        notes="Headerless CSV per subject: question,A,B,C,D,answer letter, in dev/ val/ test/ folders of "
              "<subject>_<split>.csv (or one CSV); hub rows question,subject,choices,answer(0-3). "
              "subjects: filters; split: test (default), validation (val) or dev.",
        hub_id="cais/mmlu", hub_config="all", test_split="test", train_split=None,
        file_schema=schemas.mmlu, hub_schema=schemas.mmlu, file_layout="mmlu_csvs", subject_field="subject",
        hub_config_per_subject=True),
    Benchmark(
        name="medmcqa", kind="recall", format="mc", answer_type="text",
        description="Medical entrance exam questions, 4 options (Pal et al. 2022).",
        notes="JSON Lines question, opa..opd, cop. Upstream files: cop 1-4; hub: cop 0-3 (ClassLabel a-d). "
              "The test split is unlabelled, so the default split is validation (upstream dev.json). "
              "subjects: filters on subject_name.",
        hub_id="openlifescienceai/medmcqa", hub_config=None, test_split="validation", train_split="train",
        file_schema=schemas.medmcqa_file, hub_schema=schemas.medmcqa_hub, subject_field="subject_name"),
    Benchmark(
        name="arc_easy", kind="reasoning", format="mc", answer_type="text",
        description="AI2 Reasoning Challenge, easy set: grade-school science (Clark et al. 2018).",
        notes="hub question/choices{text,label}/answerKey; original AI2 JSONL question{stem,choices}/answerKey; "
              "llm-foundry reformat query/choices/gold index. Labels may be A-D or 1-4.",
        hub_id="allenai/ai2_arc", hub_config="ARC-Easy", test_split="test", train_split="train",
        file_schema=schemas.labeled_choices, hub_schema=schemas.labeled_choices),
    Benchmark(
        name="arc_challenge", kind="reasoning", format="mc", answer_type="text",
        description="AI2 Reasoning Challenge, challenge set (Clark et al. 2018).",
        notes="Same schemas as arc_easy.",
        hub_id="allenai/ai2_arc", hub_config="ARC-Challenge", test_split="test", train_split="train",
        file_schema=schemas.labeled_choices, hub_schema=schemas.labeled_choices),
    Benchmark(
        name="triviaqa", kind="recall", format="generative", answer_type="text",
        description="Trivia questions with answer aliases (Joshi et al. 2017), closed book.",
        notes="Shared file: context 'Question: ...\\nAnswer:', answer, aliases[]; hub (rc.nocontext): question, "
              "answer{value, aliases}. SQuAD-normalized exact match against any alias.",
        hub_id="mandarjoshi/trivia_qa", hub_config="rc.nocontext", test_split="validation", train_split="train",
        file_schema=schemas.triviaqa, hub_schema=schemas.triviaqa),
    Benchmark(
        name="nq_open", kind="recall", format="generative", answer_type="text",
        description="Natural Questions, open-domain (Lee et al. 2019).",
        notes="JSONL question, answer[] (any listed answer counts). SQuAD-normalized exact match.",
        hub_id="google-research-datasets/nq_open", hub_config="nq_open", test_split="validation",
        train_split="train", file_schema=schemas.nq_open, hub_schema=schemas.nq_open),
    Benchmark(
        name="commonsense_qa", kind="reasoning", format="mc", answer_type="text",
        description="CommonsenseQA, 5 options (Talmor et al. 2019).",
        notes="hub question/choices{label,text}/answerKey; original JSONL question{stem,choices}/answerKey. "
              "The test split is unlabelled; the default split is validation (dev_rand_split.jsonl).",
        hub_id="tau/commonsense_qa", hub_config=None, test_split="validation", train_split="train",
        file_schema=schemas.labeled_choices, hub_schema=schemas.labeled_choices),
)}
