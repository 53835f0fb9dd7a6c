"""Generic English text for the continuous forgetting measure (per-token NLL vs the base model).

The shipped sample is built offline from the ``mendeleev`` package (MIT licence, already a
dependency for the element recall sets): the encyclopedic description and the "uses" note of
every element in its database, in atomic-number order (~51k characters, ~12.5k tokens with
SmolLM2's tokenizer; ``eval.nll.max_tokens`` scores the first 2048 by default). It is plain
expository prose no sweep trains on, but it is about chemistry, so it overlaps the
``element_symbols`` recall set: an arm that forgets element facts moves both. For a sample
unrelated to any of your sets, point ``eval.nll.path`` at a UTF-8 text file of your own (e.g. a
few pages of Wikipedia or of your domain's held-out prose).
"""

from __future__ import annotations

import functools
from pathlib import Path

from rankscope.errors import ConfigError, DatasetError

SHIPPED_SOURCE = "mendeleev element descriptions and uses (MIT licence)"


@functools.lru_cache(maxsize=1)
def shipped_text() -> str:
    """The shipped sample (see the module docstring); the same text on every machine."""
    try:
        from mendeleev.fetch import fetch_table  # noqa: PLC0415 (imports pandas and sqlalchemy: slow)
    except ImportError as error:  # pragma: no cover - mendeleev is a core dependency
        raise DatasetError("eval.nll", f"the shipped sample needs mendeleev ({error})",
                           "pip install mendeleev, or set eval.nll.path to a text file") from None
    table = fetch_table("elements").sort_values("atomic_number")
    paragraphs: list[str] = []
    for _, row in table.iterrows():
        for column in ("description", "uses"):
            value = row.get(column)
            if isinstance(value, str) and value.strip():
                paragraphs.append(" ".join(value.split()))
    return "\n\n".join(paragraphs)


def read_generic_text(path: str | None) -> tuple[str, str]:
    """(text, source): the user's file when ``path`` is set, else the shipped sample."""
    if path is None:
        return shipped_text(), SHIPPED_SOURCE
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"eval.nll.path: {path}", "file not found",
                          "point it at a UTF-8 text file, or remove it to use the shipped sample")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"eval.nll.path: {path}", "not UTF-8 text", "save the file as UTF-8 plain text") from None
    if not text.strip():
        raise ConfigError(f"eval.nll.path: {path}", "the file is empty", "give it some prose (a few thousand words)")
    return text, file.name
