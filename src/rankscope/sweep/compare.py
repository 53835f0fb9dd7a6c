"""``rankscope compare``: the sweep config for "I already trained these; which rank?".

A base model, a datasets file in the format ``rankscope eval`` takes, and adapter or checkpoint
folders become a sweep with no trained arm (``arms.sft: false``, ``arms.lora: null``) and one
imported arm per folder; the run directory, verdicts and report are those of any sweep.

The verdicts need a reference: which set the arms were trained for. The ``--in-domain`` set
(default: the first entry of the datasets file) is that reference; it becomes the run's one
training set (its test split scored like every other set, no training rows needed), so gain is
measured on it, sets of its kind count as near (transfer) and the others as far (forgetting).
"""

from __future__ import annotations

import re
from pathlib import Path

from rankscope.config import DatasetSpec, RankscopeConfig, apply_overrides, config_from_dict
from rankscope.errors import ConfigError


def arm_name(folder: Path) -> str:
    """A folder's arm name: its own name, or its parent's for a folder called ``adapter`` (a
    rankscope arm's ``arms/<id>/adapter``); characters a name may not hold become '_'."""
    folder = Path(folder).expanduser().resolve()
    name = folder.parent.name if folder.name in ("adapter", "checkpoint") else folder.name
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name).lstrip(".") or "arm"
    return name


def compare_config(model: str, datasets: list[DatasetSpec], folders: list[str], in_domain: str | None = None,
                   overrides: list[str] | None = None, name: str = "compare") -> RankscopeConfig:
    """The sweep config ``rankscope compare`` runs (see the module docstring)."""
    if not folders:
        raise ConfigError("compare", "no adapter or checkpoint folder given", "list the folders after the options")
    names = [d.name for d in datasets]
    reference = in_domain or names[0]
    if reference not in names:
        raise ConfigError("compare --in-domain", f"{reference!r} is not in the datasets file",
                          f"use one of {names}")
    imported, seen = [], set()
    for folder in folders:
        base = candidate = arm_name(Path(folder))
        counter = 2
        while candidate in seen:  # two folders named alike (run1/adapter, run2/adapter): number them
            candidate, counter = f"{base}-{counter}", counter + 1
        seen.add(candidate)
        imported.append({"path": str(Path(folder).expanduser().resolve()), "name": candidate})
    dump = [d.model_dump(mode="json", exclude_defaults=True) for d in datasets]
    raw = {
        "name": name,
        "model": {"id": model},
        "data": {"train": [d for d in dump if d["name"] == reference],
                 "eval": [d for d in dump if d["name"] != reference]},
        "arms": {"sft": False, "lora": None, "imported": imported},
    }
    return config_from_dict(apply_overrides(raw, overrides or []), source="compare")
