"""docs/config.md's key reference is generated from the schema and must match the code."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from rankscope import config_docs
from rankscope.config import RankscopeConfig, Spec, TrainSpec

DOC = Path(__file__).resolve().parents[1] / "docs" / "config.md"


def _keys(model=RankscopeConfig) -> set[str]:
    return {row.key for row in config_docs.key_docs(model)}


def test_docs_config_md_matches_the_schema():
    text = DOC.read_text(encoding="utf-8")
    assert config_docs.replace_block(text, config_docs.generate()) == text, (
        f"docs/config.md is out of date with rankscope.config: run `{config_docs.COMMAND}` and commit it")


def test_every_key_of_the_schema_has_a_row_with_its_default():
    text = DOC.read_text(encoding="utf-8")
    for row in config_docs.key_docs():
        assert f"| `{row.key}` |" in text
    defaults = {row.key: row.default for row in config_docs.key_docs()}
    assert defaults["train.steps"] == f"`{TrainSpec().steps}`"
    assert defaults["data.train[]"] == "required"
    assert "`data.train[].fields.choices`" in text and "`data.eval[]`" in text


def test_a_new_key_changes_the_reference_so_a_stale_doc_fails():
    class Extended(RankscopeConfig):
        new_knob: int = Field(default=3, description="a knob added after the docs were generated")

    assert _keys(Extended) - _keys() == {"new_knob"}
    text = DOC.read_text(encoding="utf-8")
    assert config_docs.replace_block(text, config_docs.generate(Extended)) != text


def test_a_key_without_a_description_is_refused():
    class Undocumented(Spec):
        """A spec whose docstring says nothing about its key."""

        mystery: int = 1

    with pytest.raises(config_docs.UndocumentedKey, match="Undocumented.mystery"):
        config_docs.key_docs(Undocumented)


def test_descriptions_come_from_comments_docstrings_and_fields():
    class Sources(Spec):
        """Three ways to say why.

        from_docstring: said in the class docstring,
            over two lines.
        """

        from_field: int = Field(default=1, description="said by Field")
        # said in a comment
        # above the key
        from_comment: int = 2
        trailing: int = 3  # said on the key's line
        attribute: int = 4
        """said in an attribute docstring"""
        from_docstring: int = 5

    why = {row.key: row.why for row in config_docs.key_docs(Sources)}
    assert why == {"from_field": "said by Field", "from_comment": "said in a comment above the key",
                   "trailing": "said on the key's line", "attribute": "said in an attribute docstring",
                   "from_docstring": "said in the class docstring, over two lines."}


def test_the_write_command_keeps_the_hand_written_sections(tmp_path):
    target = tmp_path / "config.md"
    target.write_text("# Intro\n\nhand-written\n\n" + config_docs.BEGIN + "\nSTALE-BLOCK\n" + config_docs.END + "\n\n## After\n")
    assert config_docs.main(["--write", str(target)]) == 0
    text = target.read_text()
    assert text.startswith("# Intro\n\nhand-written\n\n") and text.endswith("\n\n## After\n")
    assert "STALE-BLOCK" not in text and "| `train.steps` |" in text
