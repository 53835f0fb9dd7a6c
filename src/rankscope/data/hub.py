"""Rows from the Hugging Face hub via the optional ``datasets`` library.

``datasets`` is imported only when a hub dataset is actually loaded, so offline use (builtins,
local files) never needs it. Every failure becomes one DatasetError naming the hub id and split
and suggesting the offline alternative (``path:`` to a local copy in the upstream schema).
"""

from __future__ import annotations

from rankscope.data.rows import Record
from rankscope.errors import DatasetError


def split_hub_id(text: str) -> tuple[str, str | None]:
    """``"org/name:config"`` -> ``("org/name", "config")``."""
    hub_id, _, config = text.partition(":")
    return hub_id, config or None


def hub_label(hub_id: str, config: str | None, split: str) -> str:
    return f"hub:{hub_id}{'/' + config if config else ''}[{split}]"


def load_hub_records(hub_id: str, config: str | None, split: str) -> list[Record]:
    """All rows of one hub split as Records located ``hub:org/name/config[split] row N``."""
    label = hub_label(hub_id, config, split)
    try:
        import datasets  # noqa: PLC0415 - optional dependency, imported on use
    except ImportError:
        raise DatasetError(label, "loading from the hub needs the `datasets` package, which is not installed",
                           "pip install datasets, or set path: to a local copy in the upstream schema") from None
    try:
        rows = datasets.load_dataset(hub_id, config, split=split)
    except Exception as error:  # network, auth, unknown split/config: all user-fixable
        raise DatasetError(label, f"could not load from the hub ({type(error).__name__}: {error})",
                           "check the name, split and network, or set path: to a local copy") from None
    return [Record(f"{label} row {i}", dict(row), i) for i, row in enumerate(rows)]
