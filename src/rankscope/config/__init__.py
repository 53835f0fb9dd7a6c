"""Typed sweep configuration: YAML -> validated pydantic specs, with ``key=value`` overrides.

Every user mistake becomes a :class:`~rankscope.errors.ConfigError` whose message names the key
(dotted path) and the fix, so the CLI can print one line and exit 2. :mod:`.specs` holds the specs
(the schema docs/config.md is generated from), :mod:`.loading` reads, overrides and resolves them.
"""

from rankscope.config.loading import (
    did_you_mean,
    first_error,
    config_from_dict,
    parse_override,
    apply_overrides,
    read_yaml,
    load_config,
    resolve_spec_paths,
    resolve_paths,
    dump_config,
)
from rankscope.config.specs import (
    AlphaRule,
    TargetPreset,
    Relation,
    Spec,
    ModelSpec,
    FieldMap,
    DatasetSpec,
    DataSpec,
    LoraSpec,
    ArmsSpec,
    LearningRates,
    TrainSpec,
    NllSpec,
    EvalSpec,
    AnalysisSpec,
    SweepSpec,
    RecommendSpec,
    TrackingSpec,
    RankscopeConfig,
    check_unique_names,
)

__all__ = [
    "AlphaRule",
    "AnalysisSpec",
    "ArmsSpec",
    "DataSpec",
    "DatasetSpec",
    "EvalSpec",
    "FieldMap",
    "LearningRates",
    "LoraSpec",
    "ModelSpec",
    "NllSpec",
    "RankscopeConfig",
    "RecommendSpec",
    "Relation",
    "Spec",
    "SweepSpec",
    "TargetPreset",
    "TrackingSpec",
    "TrainSpec",
    "apply_overrides",
    "check_unique_names",
    "config_from_dict",
    "did_you_mean",
    "dump_config",
    "first_error",
    "load_config",
    "parse_override",
    "read_yaml",
    "resolve_paths",
    "resolve_spec_paths",
]
