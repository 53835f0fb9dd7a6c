"""The base class of every config spec (kept apart so spec modules can share it without a cycle)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Spec(BaseModel):
    """Base for every spec: unknown keys are errors, specs are immutable once validated."""

    # use_attribute_docstrings: a docstring under a field is its description (docs/config.md).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)
