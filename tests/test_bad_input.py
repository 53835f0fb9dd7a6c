"""Property-based: malformed configs and dataset files end in one clear RankscopeError, never a
traceback of another type, and never a half-written run directory."""

from __future__ import annotations

import json

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rankscope.config import DatasetSpec, FieldMap, config_from_dict
from rankscope.data.registry import load_dataset
from rankscope.errors import RankscopeError

scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=6))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)
KEYS = ["name", "model", "data", "arms", "train", "eval", "analysis", "sweep", "bogus"]


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from(KEYS), values, max_size=5))
def test_random_configs_are_valid_or_one_clear_error(raw):
    try:
        config_from_dict(raw, source="c.yaml")
    except RankscopeError as error:
        message = str(error)
        assert message.startswith("c.yaml") and "\n" not in message


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(values, st.fixed_dictionaries({"q": values, "options": values, "gold": values})),
                max_size=5))
def test_random_jsonl_rows_fail_with_file_and_line(tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("rows")
    path = folder / "data.jsonl"
    path.write_text("\n".join(json.dumps(r, default=str) for r in rows) + "\n")
    spec = DatasetSpec(name="mine", source="file", path=str(path), format="mc", kind="recall",
                       fields=FieldMap(question="q", choices="options", answer="gold"))
    try:
        dataset = load_dataset(spec)
    except RankscopeError as error:
        assert "data.jsonl" in str(error) and "\n" not in str(error)
    else:
        for example in dataset.test:
            assert example.choices and 0 <= example.gold < len(example.choices)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=40))
def test_random_yaml_text_is_valid_or_one_clear_error(tmp_path, text):
    from rankscope.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except RankscopeError as error:
        assert "\n" not in str(error)
    except yaml.YAMLError as error:  # pragma: no cover - must not escape
        raise AssertionError(f"raw YAML error escaped: {error}")
