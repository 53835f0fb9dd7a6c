"""Per-item records: one line per scored question, ``arms/<arm_id>/items/<dataset>.jsonl.gz``.

Why: a difference between two arms scored on the same questions is a *paired* difference; its
noise depends on how often the arms agree, which only the per-item outcomes show. Keeping them
lets rankscope (and the user, afterwards) run paired tests and recompute any comparison.

The scorers fill :class:`ItemRecord`; whatever extra per-item numbers a scorer has (e.g. a
``truncated`` flag for generation) go in ``extra`` and are written as top-level fields, so the
file grows with the scorers without a format change. Stdlib only: the sweep writes these files
and the report (no torch) reads them.
"""

from __future__ import annotations

import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ITEMS_DIR = "items"
SUFFIX = ".jsonl.gz"


@dataclass(frozen=True)
class ItemRecord:
    """The outcome of one question for one arm.

    correct: 0/1 under the set's raw accuracy (argmax summed log-likelihood for multiple choice,
        exact match for generation).
    correct_norm: multiple choice only: 0/1 under ``acc_norm`` (argmax log-likelihood per UTF-8
        byte of the choice text).
    choice_logprobs / gold: multiple choice only (summed log-likelihood of every choice).
    prediction / extracted: generation only (the generated text; the answer parsed from it:
        the number for numeric sets, the short answer compared for text sets).
    """

    uid: str
    correct: int
    correct_norm: int | None = None
    gold: int | None = None
    choice_logprobs: tuple[float, ...] | None = None
    prediction: str | None = None
    extracted: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"uid": self.uid, "correct": int(self.correct)}
        if self.correct_norm is not None:
            row["correct_norm"] = int(self.correct_norm)
        if self.gold is not None:
            row["gold"] = self.gold
        if self.choice_logprobs is not None:
            row["choice_logprobs"] = [round(float(v), 5) for v in self.choice_logprobs]
        if self.prediction is not None:  # generation: the extracted answer too (null when none parsed)
            row["prediction"] = self.prediction
            row["extracted"] = self.extracted
        for key, value in self.extra.items():
            row.setdefault(key, value)
        return row


# Which item field holds the 0/1 outcome of a results.csv metric (comparisons are made on these).
METRIC_FIELDS = {"accuracy": "correct", "acc_norm": "correct_norm"}


def encode_items(rows: list[dict[str, Any]]) -> bytes:
    """Gzipped JSON lines; mtime 0 so the same items give the same bytes."""
    text = "".join(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n" for row in rows)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:
        handle.write(text.encode("utf-8"))
    return buffer.getvalue()


def items_path(arm_dir: Path, dataset: str) -> Path:
    return Path(arm_dir) / ITEMS_DIR / f"{dataset}{SUFFIX}"


def read_items(path: Path) -> list[dict[str, Any]]:
    """The rows of one item file (``.jsonl.gz`` or plain ``.jsonl``)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def find_items(arm_dir: Path, dataset: str) -> Path | None:
    """The item file of one arm x dataset, gzipped or not; None when absent."""
    for suffix in (SUFFIX, ".jsonl"):
        path = Path(arm_dir) / ITEMS_DIR / f"{dataset}{suffix}"
        if path.is_file():
            return path
    return None
