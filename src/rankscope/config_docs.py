"""docs/config.md's key reference, generated from the pydantic schema in :mod:`rankscope.config`.

Every key of the config, with its type, default, allowed values and one line of why. The line
comes from the code, in this order: the field's ``Field(description=...)`` or attribute
docstring; a ``#`` comment on the field's line or on the lines just above it; a ``key: why``
line in its spec class's docstring. A key with none of these is an error, so a new key cannot
reach docs/config.md undocumented.

Regenerate after changing a spec (tests/test_config_docs.py fails until you do)::

    python -m rankscope.config_docs --write docs/config.md

Only the block between the BEGIN/END markers is rewritten; the hand-written sections around it
stay. Without ``--write`` the generated block is printed.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import io
import re
import sys
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from rankscope.config import RankscopeConfig

BEGIN = "<!-- BEGIN GENERATED: python -m rankscope.config_docs --write docs/config.md -->"
END = "<!-- END GENERATED -->"
COMMAND = "python -m rankscope.config_docs --write docs/config.md"


@dataclass(frozen=True)
class KeyDoc:
    """One row of the reference."""

    key: str  # dotted, with [] for list items: data.train[].n_train
    type: str
    default: str
    allowed: str
    why: str


class UndocumentedKey(ValueError):
    """A config key without a description anywhere the generator looks."""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "choice"
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        text = " or ".join(dict.fromkeys(names))
        return text + (" or null" if type(None) in args else "")
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return getattr(annotation, "__name__", str(annotation))


def _literals(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    found: list[str] = []
    for arg in typing.get_args(annotation):
        found += _literals(arg)
    return found


def _bounds(field: FieldInfo) -> list[str]:
    out = []
    for item in field.metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("min_length", "items >=")):
            value = getattr(item, attr, None)
            if value is not None:
                out.append(f"{sign} {value}")
    return out


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "(section)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"`{value}`"


@functools.lru_cache(maxsize=None)
def _source_comments(model: type[BaseModel]) -> dict[str, str]:
    """``# why`` comments by field name: on the field's own line or the comment lines above it."""
    try:
        source = textwrap.dedent(inspect.getsource(model))
    except (OSError, TypeError):
        return {}
    comments: dict[str, str] = {}
    pending: list[str] = []
    field_line = re.compile(r"^\s{4}(\w+)\s*:")
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    by_line: dict[int, str] = {t.start[0]: t.string.lstrip("#").strip() for t in tokens if t.type == tokenize.COMMENT}
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            pending.append(by_line.get(number, stripped.lstrip("#").strip()))
            continue
        match = field_line.match(line)
        if match:
            trailing = by_line.get(number)
            text = " ".join(pending) if pending else ""
            if trailing:
                text = f"{text} {trailing}".strip() if text else trailing
            if text:
                comments[match.group(1)] = text
        pending = []
    return comments


@functools.lru_cache(maxsize=None)
def _docstring_lines(model: type[BaseModel]) -> dict[str, str]:
    """``key: why`` (or ``a / b: why``) lines of the class docstring, with their continuation lines."""
    doc = inspect.cleandoc(model.__doc__ or "")
    found: dict[str, str] = {}
    current: list[str] = []
    keys: list[str] = []
    head = re.compile(r"^([a-z_][a-z0-9_]*(?:\s*/\s*[a-z_][a-z0-9_]*)*):\s+(.*)$")

    def flush() -> None:
        for key in keys:
            found.setdefault(key, " ".join(current))

    for line in doc.splitlines():
        match = head.match(line)
        if match and match.group(1).replace(" ", "").split("/")[0] in model.model_fields:
            flush()
            keys = [k.strip() for k in match.group(1).split("/")]
            current = [match.group(2).strip()]
        elif keys and line.strip():  # continuation, indented or not, until a blank line
            current.append(line.strip())
        else:
            flush()
            keys, current = [], []
    flush()
    return found


def _why(model: type[BaseModel], name: str, field: FieldInfo) -> str:
    text = field.description
    for owner in (c for c in model.__mro__ if isinstance(c, type) and issubclass(c, BaseModel)):
        if text or name not in getattr(owner, "__annotations__", {}):
            continue  # look where the key is declared (a subclass inherits its parent's keys)
        text = _source_comments(owner).get(name) or _docstring_lines(owner).get(name)
    nested, _ = _nested(field.annotation)
    if not text and nested is not None and nested.__doc__:  # a section: its spec's first line
        text = inspect.cleandoc(nested.__doc__).split("\n\n")[0]
    if not text:
        raise UndocumentedKey(f"{model.__name__}.{name} has no description: add Field(description=...), a "
                              f"docstring under the field, or a '# why' comment, then run `{COMMAND}`")
    return " ".join(text.split()).replace("``", "`").replace("|", "\\|")


def _nested(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The spec class inside an annotation, and whether it sits in a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    for arg in typing.get_args(annotation):
        found, in_list = _nested(arg)
        if found is not None:
            return found, in_list or typing.get_origin(annotation) is list
    return None, False


def key_docs(model: type[BaseModel] = RankscopeConfig, prefix: str = "",
             seen: dict[type, str] | None = None) -> list[KeyDoc]:
    """Every key under ``model``, depth first, in the order the spec declares them; a spec met a
    second time (data.eval[] after data.train[]) points to its first listing."""
    seen = {} if seen is None else seen
    rows: list[KeyDoc] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        nested, in_list = _nested(field.annotation)
        key += "[]" if in_list else ""
        allowed = ", ".join(f"`{v}`" for v in _literals(field.annotation))
        bounds = ", ".join(_bounds(field))
        why = _why(model, name, field)
        if nested is not None and nested in seen:
            why += f" Same keys as `{seen[nested]}`."
        rows.append(KeyDoc(key=key, type=_type_name(field.annotation), default=_default(field),
                           allowed="; ".join(x for x in (allowed, bounds) if x), why=why))
        if nested is not None and nested not in seen:
            seen[nested] = key
            rows += key_docs(nested, f"{key}.", seen)
    return rows


def generate(model: type[BaseModel] = RankscopeConfig) -> str:
    """The generated block, markers included."""
    lines = [BEGIN, "", "| key | type | default | allowed | why |", "|---|---|---|---|---|"]
    for row in key_docs(model):
        lines.append(f"| `{row.key}` | {row.type} | {row.default} | {row.allowed or '-'} | {row.why} |")
    lines += ["", END]
    return "\n".join(lines)


def replace_block(text: str, block: str) -> str:
    """``text`` with its generated block replaced (appended when the markers are missing)."""
    if BEGIN in text and END in text:
        start = text.index(BEGIN)
        end = text.index(END) + len(END)
        return text[:start] + block + text[end:]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rankscope.config_docs", description=__doc__.splitlines()[0])
    parser.add_argument("--write", metavar="FILE", help="rewrite the generated block of FILE (docs/config.md)")
    args = parser.parse_args(argv)
    block = generate()
    if args.write is None:
        print(block)
        return 0
    path = Path(args.write)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    path.write_text(replace_block(old, block), encoding="utf-8")
    print(f"{path}: {len(key_docs())} keys")
    return 0


if __name__ == "__main__":
    sys.exit(main())
