"""The ``recommend:`` section of a run's config.yaml: margins, confidence and bootstrap settings
shared by the comparisons and the recommendation (defaults when absent: an older run)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from rankscope.verdicts.comparisons import StatsSettings


@dataclass(frozen=True)
class RuleSettings:
    """The ``recommend:`` section of config.yaml (defaults when absent: an older run)."""

    gain_margin: float = 0.02
    forgetting_margin: float = 0.02
    confidence: float = 0.95
    bootstrap: int = 2000
    seed: int = 0

    @property
    def stats(self) -> StatsSettings:
        return StatsSettings(self.confidence, self.bootstrap, self.seed)


def rule_settings(run_dir: Path) -> RuleSettings:
    try:
        config = yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    section = config.get("recommend") if isinstance(config, dict) else None
    if not isinstance(section, dict):
        return RuleSettings()
    known = {k: section[k] for k in RuleSettings.__dataclass_fields__ if k in section}
    return RuleSettings(**known)
