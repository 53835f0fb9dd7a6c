"""Loading a sweep config: YAML, ``key=value`` overrides (list items too), path resolution, and
one-line errors that name the key and the fix (the specs themselves are in :mod:`.specs`)."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from rankscope.config.specs import DatasetSpec, RankscopeConfig, check_unique_names
from rankscope.errors import ConfigError


def _format_location(location: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in location:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            text = str(item)
            # a key that is not a plain word (a newline, a dot, a space) is shown quoted, so the
            # place stays on one line and reads unambiguously
            shown = text if text and all(ch.isalnum() or ch in "_-" for ch in text) else repr(text)
            parts.append(("." if parts else "") + shown)
    return "".join(parts) or "<root>"


_FIXES = {
    "extra_forbidden": "remove it or check its spelling",
    "missing": "add this key",
    "greater_than": "use a larger value",
    "greater_than_equal": "use a larger value",
    "less_than": "use a smaller value",
    "literal_error": "use one of the allowed values",
    "too_short": "give at least one item",
}


def _spec_at(location: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The spec class that holds the last key of ``location`` (list indices skipped)."""
    model: type[BaseModel] = root
    for part in location[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = _nested_spec(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _nested_spec(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _nested_spec(arg)
        if found is not None:
            return found
    return None


def did_you_mean(word: str, known: list[str] | tuple[str, ...]) -> str | None:
    """The closest known name to a misspelt one (difflib), or None when nothing is close."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return close[0] if close else None


def _unknown_key_fix(location: tuple[Any, ...], root: type[BaseModel]) -> str:
    spec = _spec_at(location, root)
    if spec is None:
        return _FIXES["extra_forbidden"]
    known = list(spec.model_fields)
    guess = did_you_mean(str(location[-1]), known)
    if guess:
        return f"did you mean {guess!r}? (allowed here: {', '.join(known)})"
    return f"remove it; allowed here: {', '.join(known)}"


def first_error(error: ValidationError, source: str, root: type[BaseModel] | None = None) -> ConfigError:
    """One ConfigError (place, problem, fix) from pydantic's errors; ``root`` is the validated
    spec (the whole config by default), used to suggest the key a misspelt one meant."""
    details = error.errors()[0]
    location = tuple(p for p in details["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    key = _format_location(location)
    message = details["msg"].removeprefix("Value error, ")
    if details["type"] == "extra_forbidden":
        message = "unknown key"
    got = details.get("input")
    if details["type"] not in {"extra_forbidden", "missing"} and not isinstance(got, (dict, list)):
        message += f" (got {got!r})"
    extra = f" and {len(error.errors()) - 1} more problem(s)" if len(error.errors()) > 1 else ""
    fix = _unknown_key_fix(location, root or RankscopeConfig) if details["type"] == "extra_forbidden" else _FIXES.get(details["type"])
    return ConfigError(f"{source}: {key}", message + extra, fix)


def config_from_dict(raw: Any, source: str = "config") -> RankscopeConfig:
    if not isinstance(raw, dict):
        raise ConfigError(source, f"top level must be a mapping of keys, got {type(raw).__name__}",
                          "start the file with keys such as model:, data:, arms:")
    try:
        config = RankscopeConfig.model_validate(raw)
    except ValidationError as error:
        raise first_error(error, source) from None
    check_unique_names(config, source)
    return config


_PART = re.compile(r"^([^\[\]]+)((?:\[\d+\])*)$")


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``train.steps=10`` -> (["train", "steps"], 10); ``data.train[0].n_train=5`` ->
    (["data", "train", 0, "n_train"], 5). The value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}", "expected key=value", "write e.g. train.steps=10")
    key, _, value = text.partition("=")
    path: list[str | int] = []
    for part in (p for p in key.strip().split(".") if p):
        match = _PART.match(part)
        if match is None:
            raise ConfigError(f"override {text!r}", f"cannot read key part {part!r}",
                              "write keys like data.train[0].n_train=10")
        path.append(match.group(1))
        path.extend(int(i) for i in re.findall(r"\[(\d+)\]", match.group(2)))
    if not path:
        raise ConfigError(f"override {text!r}", "empty key", "write e.g. train.steps=10")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        parsed = value
    return path, parsed


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set each ``key=value`` in the raw YAML mapping; ``[i]`` reaches item i of a list."""
    for text in overrides:
        path, value = parse_override(text)
        node: Any = raw
        for depth, part in enumerate(path):
            last = depth == len(path) - 1
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    size = len(node) if isinstance(node, list) else 0
                    where = _format_location(tuple(path[:depth]))
                    raise ConfigError(f"override {text!r}", f"{where} has {size} item(s), no [{part}]",
                                      f"use an index below {size}, or add the item in the YAML file")
            elif not isinstance(node, dict):
                raise ConfigError(f"override {text!r}", f"{_format_location(tuple(path[:depth]))} is not a mapping",
                                  "check the key path")
            if last:
                node[part] = value
            elif isinstance(part, int) or isinstance(node.get(part), (dict, list)):
                node = node[part]
            else:
                node[part] = {}
                node = node[part]
    return raw


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "config file not found", "check the path, or run `rankscope demo` for a preset")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(where, f"invalid YAML ({getattr(error, 'problem', error)})", "fix the YAML syntax") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> RankscopeConfig:
    raw = read_yaml(path)
    if isinstance(raw, dict) and overrides:
        raw = apply_overrides(raw, overrides)
    config = config_from_dict(raw, source=str(path))
    return resolve_paths(config, Path(path).resolve().parent)


def resolve_spec_paths(spec: DatasetSpec, base_dir: Path) -> DatasetSpec:
    """One dataset's ``path`` and ``data_files`` made absolute relative to ``base_dir`` (its
    config's folder); hub ids (``source: hub, path: org/name``) and lm-eval tasks stay as written."""

    def absolute(path: str) -> str:
        return path if Path(path).is_absolute() else str((base_dir / path).resolve())

    if isinstance(spec.data_files, str):
        spec = spec.model_copy(update={"data_files": absolute(spec.data_files)})
    elif spec.data_files:
        spec = spec.model_copy(update={"data_files": {k: absolute(v) for k, v in spec.data_files.items()}})
    if spec.path is None or Path(spec.path).is_absolute() or spec.path.startswith("lmeval:") \
            or spec.source == "hub":  # source: hub, path: org/name is a hub id, not a file
        return spec
    return spec.model_copy(update={"path": absolute(spec.path)})


def resolve_paths(config: RankscopeConfig, base_dir: Path) -> RankscopeConfig:
    """Make dataset file paths absolute relative to the config file, so a run directory is
    self-contained; hub ids and lm-eval tasks stay as written."""
    data = config.data.model_copy(update={
        "train": [resolve_spec_paths(d, base_dir) for d in config.data.train],
        "eval": [resolve_spec_paths(d, base_dir) for d in config.data.eval],
    })
    update: dict[str, Any] = {"data": data}
    nll = config.eval.nll
    if nll.path is not None and not Path(nll.path).is_absolute():
        update["eval"] = config.eval.model_copy(
            update={"nll": nll.model_copy(update={"path": str((base_dir / nll.path).resolve())})})
    if config.arms.imported:  # imported adapter / checkpoint folders, relative to the config file too
        update["arms"] = config.arms.model_copy(update={"imported": [
            spec if Path(spec.path).is_absolute() else
            spec.model_copy(update={"path": str((base_dir / spec.path).expanduser().resolve())})
            for spec in config.arms.imported]})
    return config.model_copy(update=update)


def dump_config(config: RankscopeConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
